"""Experiment analysis -> SQL: exposures and one metric's per-variation summary statistics.

Exposures are `$experiment_viewed` events (`experiment_id`, `variation_id`). A unit's
variation is the one of its first exposure; a unit seen in more than one variation is
excluded (and counted). A metric is computed per unit over (t0, t0 + window] after its first
exposure t0, and the same metric over [t0 − window, t0) is its pre-exposure covariate (CUPED).
The query answers, per variation: n, Σy, Σy², Σx, Σx², Σxy, and for ratios the denominator's
Σd, Σd², Σyd — everything the statistics need, nothing per unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from traction.analytics.compile.params import PERSON, RESOLVED_FROM, Params, matcher_sql
from traction.billing.domain.revenue import CHANGE_EVENTS
from traction.experiments.domain import Metric

EXPOSURE = "$experiment_viewed"
DAY_US = 86_400_000_000


@dataclass(frozen=True)
class Exposure:
    """Which events put a unit in a variation: the event, the property naming the experiment
    and the one naming the variation. Journeys reuse the analysis with `$journey_entered`
    (`journey`, `arm`), so a holdout is measured exactly as an experiment is."""

    event: str = EXPOSURE
    key_property: str = "experiment_id"
    variation_property: str = "variation_id"


EXPERIMENT = Exposure()


def _unit(unit: str) -> str:
    return PERSON if unit == "person" else "e.account_id"


def exposures_cte(
    p: Params,
    workspace_id: str,
    key: str,
    unit: str,
    start: datetime | None,
    stop: datetime | None,
    exposure: Exposure = EXPERIMENT,
) -> str:
    when = ""
    if start is not None:
        when += f" AND e.timestamp >= {p.add(start)}"
    if stop is not None:
        when += f" AND e.timestamp < {p.add(stop)}"
    u = _unit(unit)
    var = f"json_extract_string(e.properties, {p.add('$.' + exposure.variation_property)})"
    return (
        f"exposed AS (SELECT {u} AS unit, "
        f"arg_min({var}, (e.timestamp, e.seq)) AS variation, "
        "min(e.timestamp) AS t0, "
        f"count(DISTINCT {var}) AS seen "
        f"FROM {RESOLVED_FROM} WHERE e.workspace_id = {p.add(workspace_id)} AND e.name = {p.add(exposure.event)} "
        f"AND json_extract_string(e.properties, {p.add('$.' + exposure.key_property)}) = {p.add(key)} "
        f"AND {u} IS NOT NULL{when} "
        "GROUP BY 1), units AS (SELECT * FROM exposed WHERE seen = 1)"
    )


def compile_exposures(
    workspace_id: str,
    key: str,
    unit: str,
    start: datetime | None,
    stop: datetime | None,
    exposure: Exposure = EXPERIMENT,
) -> tuple[str, dict[str, object]]:
    """(variation, units, first exposure, last exposure) per variation, and a row with
    variation NULL counting the units excluded for seeing several."""
    p = Params()
    sql = (
        f"WITH {exposures_cte(p, workspace_id, key, unit, start, stop, exposure)} "
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
    exposure: Exposure = EXPERIMENT,
) -> tuple[str, dict[str, object]]:
    """Every metric in one pass: the units' events are read once (joined to their unit's
    first exposure, and only within the longest window of it), each flagged with the metrics
    (and ratio denominators) it matches and carrying only the amounts the metrics add (the
    JSON is read once, here); per unit, each metric's value after exposure (y), in the same
    window before (x) and its denominator (d); per variation, the sums. Units without a
    matching event add nothing to a sum, so they only count in n (taken from the units).
    Columns: variation, n, then for each metric Σy, Σy², Σx, Σx², Σxy, Σd, Σd², Σyd."""
    p = Params()
    u = _unit(unit)
    ctes = [exposures_cte(p, workspace_id, key, unit, start, stop, exposure)]
    cols, wanted = [], []
    for i, m in enumerate(metrics):
        if m.kind == "revenue":
            cond = (f"(e.name IN (SELECT unnest({p.add(list(CHANGE_EVENTS))}::VARCHAR[])) "
                    "AND e.user_id IS NOT NULL)")  # fmt: skip
            amount = ("greatest(TRY_CAST(json_extract_string(e.properties, '$.mrr_after') AS DOUBLE) - "
                      "TRY_CAST(json_extract_string(e.properties, '$.mrr_before') AS DOUBLE), 0)")  # fmt: skip
        else:
            cond = (
                matcher_sql(m.event, p, "e.name", "e.properties") if m.event is not None else "true"
            )
            amount = ""
            if m.kind == "sum" or (m.kind == "ratio" and m.property):
                path = p.add("$." + (m.property or ""))
                amount = f"TRY_CAST(json_extract_string(e.properties, {path}) AS DOUBLE)"
        cols.append(f"{cond} AS m{i}")
        if amount:
            cols.append(f"CASE WHEN {cond} THEN COALESCE({amount}, 0) END AS a{i}")
        wanted.append(cond)
        if m.kind == "ratio" and m.denominator is not None:
            den = matcher_sql(m.denominator, p, "e.name", "e.properties")
            cols.append(f"{den} AS d{i}")
            wanted.append(den)
    reach = max(
        (m.day + 1) * DAY_US if m.kind == "retention" else int(m.window_days * DAY_US)
        for m in metrics
    )
    ctes.append(
        f"ev AS (SELECT u.unit, u.variation, u.t0, e.timestamp AS ts, {', '.join(cols)} "
        f"FROM {RESOLVED_FROM} JOIN units u ON u.unit = {u} "
        f"WHERE e.workspace_id = {p.add(workspace_id)} AND ({' OR '.join(wanted)}) "
        f"AND e.timestamp >= u.t0 - to_microseconds({p.add(reach)}) "
        f"AND e.timestamp <= u.t0 + to_microseconds({p.add(reach)}))"
    )
    per_unit, sums = [], []
    for i, m in enumerate(metrics):
        # (a parameter DuckDB is given must be used: a retention metric has no window)
        w = (
            ""
            if m.kind == "retention"
            else f"to_microseconds({p.add(int(m.window_days * DAY_US))})"
        )
        after = f"ev.m{i} AND ev.ts > ev.t0 AND ev.ts <= ev.t0 + {w}"
        before = f"ev.m{i} AND ev.ts >= ev.t0 - {w} AND ev.ts < ev.t0"
        amount = f"ev.a{i}" if f" AS a{i}" in " ".join(cols) else "1.0"
        if m.kind == "conversion":
            y: str | None = f"max(CASE WHEN {after} THEN 1.0 ELSE 0 END)"
            x: str | None = f"max(CASE WHEN {before} THEN 1.0 ELSE 0 END)"
        elif m.kind == "retention":
            lo, hi = p.add(m.day * DAY_US), p.add((m.day + 1) * DAY_US)
            y = (f"max(CASE WHEN ev.m{i} AND ev.ts >= ev.t0 + to_microseconds({lo}) "
                 f"AND ev.ts < ev.t0 + to_microseconds({hi}) THEN 1.0 ELSE 0 END)")  # fmt: skip
            x = None  # no pre-period for retention
        else:
            y = f"sum(CASE WHEN {after} THEN {amount} ELSE 0 END)"
            x = f"sum(CASE WHEN {before} THEN {amount} ELSE 0 END)"
        d = (f"sum(CASE WHEN ev.d{i} AND ev.ts > ev.t0 AND ev.ts <= ev.t0 + {w} THEN 1.0 ELSE 0 END)"
             if m.kind == "ratio" else None)  # fmt: skip
        per_unit.append(f"{y}::DOUBLE AS y{i}")
        per_unit += [f"{x}::DOUBLE AS x{i}"] if x else []
        per_unit += [f"{d}::DOUBLE AS d{i}"] if d else []
        yx = f"sum(x{i} * y{i})" if x else "0.0"
        sums.append(f"sum(y{i}), sum(y{i} * y{i}), "
                    + (f"sum(x{i}), sum(x{i} * x{i}), {yx}, " if x else "0.0, 0.0, 0.0, ")
                    + (f"sum(d{i}), sum(d{i} * d{i}), sum(y{i} * d{i})" if d else "0.0, 0.0, 0.0"))  # fmt: skip
    ctes.append(f"per_unit AS (SELECT ev.variation, {', '.join(per_unit)} FROM ev "
                "GROUP BY ev.unit, ev.variation)")  # fmt: skip
    ctes.append(f"totals AS (SELECT variation, {', '.join(sums)} FROM per_unit GROUP BY 1)")
    ctes.append("counts AS (SELECT variation, count(*) AS n FROM units GROUP BY 1)")
    sql = (f"WITH {', '.join(ctes)} SELECT c.variation, c.n, t.* EXCLUDE (variation) "
           "FROM counts c LEFT JOIN totals t ON t.variation = c.variation")  # fmt: skip
    return sql, p.values
