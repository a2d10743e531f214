"""Experiment analysis -> SQL: exposures and one metric's per-variation summary statistics.

Exposures are `$experiment_viewed` events (`experiment_id`, `variation_id`). A unit's
variation is the one of its first exposure; a unit seen in more than one variation is
excluded (and counted). A metric is computed per unit over (t0, t0 + window] after its first
exposure t0, and the same metric over [t0 − window, t0) is its pre-exposure covariate (CUPED).
The query answers, per variation: n, Σy, Σy², Σx, Σx², Σxy, and for ratios the denominator's
Σd, Σd², Σyd — everything the statistics need, nothing per unit.
"""

from __future__ import annotations

from datetime import datetime

from traction.analytics.compile.params import PERSON, RESOLVED_FROM, Params, matcher_sql
from traction.analytics.domain.specs import EventMatcher
from traction.billing.domain.revenue import CHANGE_EVENTS
from traction.experiments.domain import Metric

EXPOSURE = "$experiment_viewed"
DAY_US = 86_400_000_000


def _unit(unit: str) -> str:
    return PERSON if unit == "person" else "e.account_id"


def exposures_cte(
    p: Params, workspace_id: str, key: str, unit: str, start: datetime | None, stop: datetime | None
) -> str:
    when = ""
    if start is not None:
        when += f" AND e.timestamp >= {p.add(start)}"
    if stop is not None:
        when += f" AND e.timestamp < {p.add(stop)}"
    u = _unit(unit)
    return (
        f"exposed AS (SELECT {u} AS unit, "
        "arg_min(json_extract_string(e.properties, '$.variation_id'), (e.timestamp, e.seq)) AS variation, "
        "min(e.timestamp) AS t0, "
        "count(DISTINCT json_extract_string(e.properties, '$.variation_id')) AS seen "
        f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} AND e.name = {p.add(EXPOSURE)} "
        f"AND json_extract_string(e.properties, '$.experiment_id') = {p.add(key)} AND {u} IS NOT NULL{when} "
        "GROUP BY 1), units AS (SELECT * FROM exposed WHERE seen = 1)"
    )


def compile_exposures(
    workspace_id: str, key: str, unit: str, start: datetime | None, stop: datetime | None
) -> tuple[str, dict[str, object]]:
    """(variation, units, first exposure, last exposure) per variation, and a row with
    variation NULL counting the units excluded for seeing several."""
    p = Params()
    sql = (
        f"WITH {exposures_cte(p, workspace_id, key, unit, start, stop)} "
        "SELECT variation, count(*), min(t0), max(t0) FROM units GROUP BY 1 "
        "UNION ALL SELECT NULL, count(*), NULL, NULL FROM exposed WHERE seen > 1"
    )
    return sql, p.values


def _events_cte(p: Params, name: str, workspace_id: str, unit: str, m: EventMatcher | None,
                revenue: bool = False) -> str:  # fmt: skip
    u = _unit(unit)
    if revenue:
        cond = f"e.name IN (SELECT unnest({p.add(list(CHANGE_EVENTS))}::VARCHAR[])) AND e.user_id IS NOT NULL"
        value = ("greatest(TRY_CAST(json_extract_string(e.properties, '$.mrr_after') AS DOUBLE) - "
                 "TRY_CAST(json_extract_string(e.properties, '$.mrr_before') AS DOUBLE), 0)")  # fmt: skip
    else:
        cond = matcher_sql(m, p, "e.name", "e.properties") if m is not None else "true"
        value = "1.0"
    return (f"{name} AS (SELECT {u} AS unit, e.timestamp AS ts, e.properties, {value} AS v "
            f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} AND {cond} "
            f"AND {u} IN (SELECT unit FROM units))")  # fmt: skip


def compile_metric(
    workspace_id: str, key: str, unit: str, start: datetime | None, stop: datetime | None, m: Metric
) -> tuple[str, dict[str, object]]:
    p = Params()
    ctes = [exposures_cte(p, workspace_id, key, unit, start, stop)]
    ctes.append(_events_cte(p, "ev", workspace_id, unit, m.event, revenue=m.kind == "revenue"))
    if m.kind == "sum" or (m.kind == "ratio" and m.property):
        amount = f"COALESCE(TRY_CAST(json_extract_string(ev.properties, {p.add('$.' + (m.property or ''))}) AS DOUBLE), 0)"
    else:
        amount = "ev.v"
    if m.kind != "retention":  # (a parameter DuckDB is given must be used)
        window = f"to_microseconds({p.add(int(m.window_days * DAY_US))})"
        after = "ev.ts > u.t0 AND ev.ts <= u.t0 + " + window
        before = "ev.ts >= u.t0 - " + window + " AND ev.ts < u.t0"
    if m.kind == "conversion":
        y, x = (
            f"max(CASE WHEN {after} THEN 1.0 ELSE 0 END)",
            f"max(CASE WHEN {before} THEN 1.0 ELSE 0 END)",
        )
    elif m.kind == "retention":
        day = f"to_microseconds({p.add(m.day * DAY_US)})"
        nxt = f"to_microseconds({p.add((m.day + 1) * DAY_US)})"
        y = f"max(CASE WHEN ev.ts >= u.t0 + {day} AND ev.ts < u.t0 + {nxt} THEN 1.0 ELSE 0 END)"
        x = "0.0"
    else:
        y, x = (
            f"sum(CASE WHEN {after} THEN {amount} ELSE 0 END)",
            f"sum(CASE WHEN {before} THEN {amount} ELSE 0 END)",
        )
    den = "0.0"
    if m.kind == "ratio":
        ctes.append(_events_cte(p, "dv", workspace_id, unit, m.denominator))
        den = ("(SELECT count(*) FROM dv WHERE dv.unit = u.unit AND dv.ts > u.t0 AND dv.ts <= u.t0 + "
               f"{window})")  # fmt: skip
    ctes.append(
        f"per_unit AS (SELECT u.unit, u.variation, COALESCE({y}, 0) AS y, COALESCE({x}, 0) AS x, "
        f"{den} AS d FROM units u LEFT JOIN ev ON ev.unit = u.unit GROUP BY u.unit, u.variation, u.t0)"
    )
    sql = ("WITH " + ", ".join(ctes) + " SELECT variation, count(*), sum(y), sum(y * y), sum(x), "
           "sum(x * x), sum(x * y), sum(d), sum(d * d), sum(y * d) FROM per_unit GROUP BY 1")  # fmt: skip
    return sql, p.values
