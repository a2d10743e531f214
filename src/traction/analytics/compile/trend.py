"""Trend -> SQL: one series at a time, bucketed in the workspace's time zone."""

from __future__ import annotations

from datetime import datetime

from traction.analytics.compile.params import (
    PERSON,
    Params,
    json_path,
    local_time,
    matcher_sql,
    resolved_from,
    uses_traits,
)
from traction.analytics.domain.specs import TrendSeries, TrendSpec

OTHER = "$other"
NONE = "$none"
_QUANTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}


def _aggregate(series: TrendSeries, p: Params) -> str:
    m = series.math
    if m == "total":
        return "count(*)"
    if m == "unique_persons":
        return "count(DISTINCT person)"
    if m == "unique_accounts":
        return "count(DISTINCT account_id)"
    assert series.math_property is not None
    x = f"TRY_CAST(json_extract_string(properties, {p.add(json_path(series.math_property))}) AS DOUBLE)"
    if m in _QUANTILES:
        return f"quantile_cont({x}, {_QUANTILES[m]})"
    return f"{m}({x})"


def _trend_events(
    spec: TrendSpec,
    series: TrendSeries,
    workspace_id: str,
    tz: str,
    start: datetime,
    end: datetime,
    p: Params,
) -> str:
    """The `ev` CTE: the series' matching events with their actor, local time and breakdown."""
    where = (
        f"e.workspace_id = {p.add(workspace_id)} AND e.timestamp >= {p.add(start)} "
        f"AND e.timestamp < {p.add(end)} AND "
        f"{matcher_sql(series.event, p, 'e.name', 'e.properties', 'pt.traits', 'act.traits')}"
    )
    traits = uses_traits(series.event)
    bd = "NULL"
    if spec.breakdown:
        bd = f"COALESCE(json_extract_string(e.properties, {p.add(json_path(spec.breakdown))}), '{NONE}')"
    return (
        f"ev AS (SELECT {PERSON} AS person, e.account_id, e.properties, "
        f"{local_time('e.timestamp', tz, p)} AS local_ts, {bd} AS bd "
        f"FROM {resolved_from(traits)} WHERE {where})"
    )


def compile_trend_series(
    spec: TrendSpec, series: TrendSeries, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    """Rows: (bucket start, breakdown value or NULL, value)."""
    p = Params()
    unit = p.add(spec.interval)
    ev = _trend_events(spec, series, workspace_id, tz, start, end, p)
    agg = _aggregate(series, p)
    if not spec.breakdown:
        sql = f"WITH {ev} SELECT date_trunc({unit}, local_ts) AS bucket, NULL AS bd, {agg} AS value FROM ev GROUP BY 1 ORDER BY 1"
        return sql, p.values
    limit = p.add(spec.breakdown_limit)
    sql = (
        f"WITH {ev}, top AS (SELECT bd FROM ev GROUP BY bd ORDER BY count(*) DESC, bd LIMIT {limit}) "
        f"SELECT date_trunc({unit}, local_ts) AS bucket, "
        f"CASE WHEN bd IN (SELECT bd FROM top) THEN bd ELSE '{OTHER}' END AS label, {agg} AS value "
        "FROM ev GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return sql, p.values


def compile_trend_people(
    spec: TrendSpec,
    series: TrendSeries,
    workspace_id: str,
    tz: str,
    start: datetime,
    end: datetime,
    bucket: datetime,
    breakdown: str | None,
    limit: int,
    offset: int = 0,
) -> tuple[str, dict[str, object]]:
    """Rows: (person, events) behind one point of a trend line: who did the series' event in
    that bucket (and with that breakdown value; 'other' is every value outside the top)."""
    p = Params()
    ev = _trend_events(spec, series, workspace_id, tz, start, end, p)
    cond = f"date_trunc({p.add(spec.interval)}, local_ts) = {p.add(bucket)}"
    ctes = ev
    if spec.breakdown and breakdown is not None:
        if breakdown == OTHER:
            top = p.add(spec.breakdown_limit)
            ctes += (
                f", top AS (SELECT bd FROM ev GROUP BY bd ORDER BY count(*) DESC, bd LIMIT {top})"
            )
            cond += " AND bd NOT IN (SELECT bd FROM top)"
        else:
            cond += f" AND bd = {p.add(breakdown)}"
    sql = (
        f"WITH {ctes} SELECT person, count(*) AS events FROM ev WHERE {cond} "
        f"GROUP BY person ORDER BY events DESC, person LIMIT {p.add(limit)} OFFSET {p.add(offset)}"
    )
    return sql, p.values
