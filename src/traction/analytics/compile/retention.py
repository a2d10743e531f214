"""Retention -> SQL.

Calendar intervals in the workspace's time zone (weeks start on Monday). An actor's cohort
is the interval of the first time they ever did the start event, if that falls in the date
range. Period k counts the actors with a return event in the interval k after their cohort's
(for bounded retention, exactly there; unbounded/rolling is derived from each actor's furthest
return). Period 0 is the whole cohort.
"""

from __future__ import annotations

from datetime import datetime

from traction.analytics.compile.activation import compile_activation
from traction.analytics.compile.params import (
    PERSON,
    RESERVED,
    Params,
    local_time,
    matcher_sql,
    resolved_from,
    trait_columns,
    uses_traits,
)
from traction.analytics.domain.specs import RetentionSpec


def compile_retention(
    spec: RetentionSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    p = Params()
    activation_sql = ""
    if spec.cohort_by == "activation":
        # activations in the range come from sign-ups before its end, however long before
        activation_sql, inner = compile_activation(
            spec.activation(), workspace_id, tz, datetime(1970, 1, 1), end
        )
        p.values.update(inner)
    actor = PERSON if spec.aggregate_by == "person" else "e.account_id"
    ws, unit = p.add(workspace_id), p.add(spec.interval)
    local = local_time("ts", tz, p)
    by_start = spec.start_event is not None and spec.cohort_by == "start_event"
    starts = matcher_sql(spec.start_event, p) if by_start and spec.start_event else "true"
    returns = matcher_sql(spec.return_event, p) if spec.return_event else "true"
    not_null = " AND e.account_id IS NOT NULL" if spec.aggregate_by == "account" else ""
    traits = uses_traits(spec.start_event, spec.return_event)
    # Only the two named events matter (a reserved or missing matcher means any event).
    named = [
        m.event
        for m in (spec.start_event, spec.return_event)
        if m is not None and m.event not in RESERVED
    ]
    names = ""
    if (
        spec.cohort_by == "start_event"
        and spec.start_event
        and spec.return_event
        and len(named) == 2
    ):
        names = f" AND e.name IN (SELECT unnest({p.add(sorted(set(named)))}::VARCHAR[]))"
    sql = f"""
WITH ev AS (
    SELECT {actor} AS actor, e.timestamp AS ts, e.type, e.name, e.properties{trait_columns(traits)}
    FROM {resolved_from(traits)} WHERE e.workspace_id = {ws}{not_null}{names}
),
{_cohorts(spec, starts, local, unit, p.add(start), p.add(end), activation_sql)},
sizes AS (SELECT cohort, count(*) AS size FROM cohorts GROUP BY cohort),
back AS (
    SELECT c.actor, c.cohort, date_diff({unit}, c.cohort, date_trunc({unit}, {local})) AS k
    FROM cohorts c JOIN ev USING (actor)
    WHERE ev.ts > c.first_ts AND {returns}
),
per_actor AS (
    SELECT actor, cohort, {"k" if spec.bounded else "max(k)"} AS k FROM back
    WHERE k BETWEEN 1 AND {p.add(spec.periods)}
    {"GROUP BY actor, cohort, k" if spec.bounded else "GROUP BY actor, cohort"}
),
counted AS (SELECT cohort, k, count(*) AS n FROM per_actor GROUP BY cohort, k)
SELECT s.cohort, s.size, c.k, COALESCE(c.n, 0) AS n
FROM sizes s LEFT JOIN counted c USING (cohort)
ORDER BY s.cohort, c.k
"""
    return sql, p.values


def _cohorts(
    spec: RetentionSpec, starts: str, local: str, unit: str, lo: str, hi: str, activation_sql: str
) -> str:
    """The `cohorts` CTE: (actor, first_ts, cohort) per the spec's kind of retention."""
    if spec.retention_type == "recurring":
        return (
            f"cohorts AS (SELECT actor, min(ts) AS first_ts, date_trunc({unit}, {local}) AS cohort FROM ev "
            f"WHERE {starts} AND ts >= {lo} AND ts < {hi} GROUP BY actor, cohort)"
        )
    if spec.cohort_by == "activation":
        firsts = f"firsts AS (SELECT actor, activated_at AS ts FROM ({activation_sql}) WHERE activated_at IS NOT NULL)"
    else:
        firsts = f"firsts AS (SELECT actor, min(ts) AS ts FROM ev WHERE {starts} GROUP BY actor)"
    return (
        f"{firsts},\ncohorts AS (SELECT actor, ts AS first_ts, date_trunc({unit}, {local}) AS cohort "
        f"FROM firsts WHERE ts >= {lo} AND ts < {hi})"
    )
