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


def compile_metrics(
    workspace_id: str,
    key: str,
    unit: str,
    start: datetime | None,
    stop: datetime | None,
    metrics: list[Metric],
) -> tuple[str, dict[str, object]]:
    """Every metric in one pass: the units' events are read once, each flagged with the metrics
    (and ratio denominators) it matches; per unit, each metric's value after exposure (y), in
    the same window before (x) and its denominator (d); per variation, the sums. Columns:
    variation, n, then for each metric Σy, Σy², Σx, Σx², Σxy, Σd, Σd², Σyd."""
    p = Params()
    u = _unit(unit)
    ctes = [exposures_cte(p, workspace_id, key, unit, start, stop)]
    flags, wanted = [], []
    revenue_value = ("greatest(TRY_CAST(json_extract_string(e.properties, '$.mrr_after') AS DOUBLE) - "
                     "TRY_CAST(json_extract_string(e.properties, '$.mrr_before') AS DOUBLE), 0)")  # fmt: skip
    for i, m in enumerate(metrics):
        if m.kind == "revenue":
            cond = (f"(e.name IN (SELECT unnest({p.add(list(CHANGE_EVENTS))}::VARCHAR[])) "
                    "AND e.user_id IS NOT NULL)")  # fmt: skip
        else:
            cond = (
                matcher_sql(m.event, p, "e.name", "e.properties") if m.event is not None else "true"
            )
        flags.append(f"{cond} AS m{i}")
        wanted.append(cond)
        if m.kind == "ratio" and m.denominator is not None:
            den = matcher_sql(m.denominator, p, "e.name", "e.properties")
            flags.append(f"{den} AS d{i}")
            wanted.append(den)
    ctes.append(
        f"ev AS (SELECT {u} AS unit, e.timestamp AS ts, e.properties, {revenue_value} AS rv, "
        f"{', '.join(flags)} FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} "
        f"AND ({' OR '.join(wanted)}) AND {u} IN (SELECT unit FROM units))"
    )
    cols, sums = [], []
    for i, m in enumerate(metrics):
        # (a parameter DuckDB is given must be used: a retention metric has no window)
        w = (
            ""
            if m.kind == "retention"
            else f"to_microseconds({p.add(int(m.window_days * DAY_US))})"
        )
        after = f"ev.m{i} AND ev.ts > u.t0 AND ev.ts <= u.t0 + {w}"
        before = f"ev.m{i} AND ev.ts >= u.t0 - {w} AND ev.ts < u.t0"
        if m.kind == "revenue":
            amount = "ev.rv"
        elif m.kind == "sum" or (m.kind == "ratio" and m.property):
            path = p.add("$." + (m.property or ""))
            amount = f"COALESCE(TRY_CAST(json_extract_string(ev.properties, {path}) AS DOUBLE), 0)"
        else:
            amount = "1.0"
        if m.kind == "conversion":
            y, x = (
                f"max(CASE WHEN {after} THEN 1.0 ELSE 0 END)",
                f"max(CASE WHEN {before} THEN 1.0 ELSE 0 END)",
            )
        elif m.kind == "retention":
            lo, hi = p.add(m.day * DAY_US), p.add((m.day + 1) * DAY_US)
            y = (f"max(CASE WHEN ev.m{i} AND ev.ts >= u.t0 + to_microseconds({lo}) "
                 f"AND ev.ts < u.t0 + to_microseconds({hi}) THEN 1.0 ELSE 0 END)")  # fmt: skip
            x = "0.0"
        else:
            y, x = (
                f"sum(CASE WHEN {after} THEN {amount} ELSE 0 END)",
                f"sum(CASE WHEN {before} THEN {amount} ELSE 0 END)",
            )
        d = (f"sum(CASE WHEN ev.d{i} AND ev.ts > u.t0 AND ev.ts <= u.t0 + {w} THEN 1.0 ELSE 0 END)"
             if m.kind == "ratio" else "0.0")  # fmt: skip
        cols.append(f"COALESCE({y}, 0) AS y{i}, COALESCE({x}, 0) AS x{i}, COALESCE({d}, 0) AS d{i}")
        sums.append(f"sum(y{i}), sum(y{i} * y{i}), sum(x{i}), sum(x{i} * x{i}), sum(x{i} * y{i}), "
                    f"sum(d{i}), sum(d{i} * d{i}), sum(y{i} * d{i})")  # fmt: skip
    ctes.append(f"per_unit AS (SELECT u.unit, u.variation, {', '.join(cols)} FROM units u "
                "LEFT JOIN ev ON ev.unit = u.unit GROUP BY u.unit, u.variation, u.t0)")  # fmt: skip
    sql = f"WITH {', '.join(ctes)} SELECT variation, count(*), {', '.join(sums)} FROM per_unit GROUP BY 1"
    return sql, p.values
