"""Activation -> SQL.

Each actor's first start event (ever) opens a window. Every condition leaf becomes the time
of its n-th matching event after the start (in (timestamp, arrival) order) within the
window; `all` is the latest of its children (missing if any is), `any` the earliest. The
root's time is the moment of activation; TTFV is that moment minus the start.
"""

from __future__ import annotations

from datetime import date, datetime

from traction.analytics.compile.params import (
    PERSON,
    RESOLVED_FROM,
    Params,
    local_time,
    matcher_sql,
    reads_of,
    resolved_from,
    trait_columns,
    uses_traits,
)
from traction.analytics.compile.peractor import PerActor, actors_of
from traction.analytics.domain.specs import ActivationSpec, AllOf, Criterion, EventCount, leaves


def _combine(c: Criterion, names: dict[int, str]) -> str:
    if isinstance(c, EventCount):
        return names[id(c)]
    parts = [_combine(child, names) for child in (c.all if isinstance(c, AllOf) else c.any)]
    if len(parts) == 1:
        return parts[0]
    if isinstance(c, AllOf):
        nulls = " OR ".join(f"{x} IS NULL" for x in parts)
        return f"(CASE WHEN {nulls} THEN NULL ELSE greatest({', '.join(parts)}) END)"
    return f"least({', '.join(parts)})"  # least() skips NULLs


def compile_activation(
    spec: ActivationSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    """One row per actor in a cohort: (actor, cohort, first_ts, activated_at or NULL)."""
    q = activation_query(spec, workspace_id, tz, start, end)
    return q.sql, q.params(q.sql)


def activation_query(
    spec: ActivationSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> PerActor:
    """The cohort's rows (`activation`) are the per-actor rows; the aggregate is theirs."""
    p = Params()
    actor = PERSON if spec.aggregate_by == "person" else "e.account_id"
    not_null = " AND e.account_id IS NOT NULL" if spec.aggregate_by == "account" else ""
    window = f"to_microseconds({p.add(int(spec.window_days * 86_400_000_000))})"
    traits = uses_traits(spec.start_event, *(leaf.event for leaf in leaves(spec.criteria)))
    ctes = [
        f"ev AS (SELECT {actor} AS actor, e.timestamp AS ts, e.seq, e.type, e.name, e.properties"
        f"{trait_columns(traits)} FROM {resolved_from(traits)} "
        f"WHERE e.workspace_id = {p.add(workspace_id)}{not_null})",
        f"firsts AS (SELECT actor, arg_min(ts, (ts, seq)) AS first_ts, arg_min(seq, (ts, seq)) AS first_seq "
        f"FROM ev WHERE {matcher_sql(spec.start_event, p)} GROUP BY actor)",
        f"cohorts AS (SELECT actor, first_ts, first_seq, "
        f"date_trunc({p.add(spec.interval)}, {local_time('first_ts', tz, p)}) AS cohort "
        f"FROM firsts WHERE first_ts >= {p.add(start)} AND first_ts < {p.add(end)})",
    ]
    names: dict[int, str] = {}
    for i, leaf in enumerate(leaves(spec.criteria)):
        names[id(leaf)] = f"l{i}.t"
        ctes.append(
            f"l{i} AS (SELECT actor, min(ts) FILTER (WHERE rn = {p.add(leaf.at_least)}) AS t FROM ("
            "SELECT c.actor, ev.ts, row_number() OVER (PARTITION BY c.actor ORDER BY ev.ts, ev.seq) AS rn "
            "FROM cohorts c JOIN ev USING (actor) "
            f"WHERE (ev.ts, ev.seq) > (c.first_ts, c.first_seq) AND ev.ts <= c.first_ts + {window} "
            f"AND {matcher_sql(leaf.event, p, 'ev.name', 'ev.properties', 'ev.person_traits', 'ev.account_traits')}) GROUP BY actor)"
        )
    joins = " ".join(f"LEFT JOIN l{i} USING (actor)" for i in range(len(names)))
    ctes.append(
        f"activation AS (SELECT c.actor, c.cohort, c.first_ts, "
        f"{_combine(spec.criteria, names)} AS activated_at FROM cohorts c {joins})"
    )
    by = actors_of(spec.aggregate_by)
    reads = reads_of(spec.start_event, *(leaf.event for leaf in leaves(spec.criteria)))
    return PerActor(tuple(ctes), "activation", "SELECT * FROM activation", p.values, by=by,
                    separable=not traits, reads=reads)  # fmt: skip


def activation_retention_query(
    spec: ActivationSpec,
    workspace_id: str,
    tz: str,
    start: datetime,
    end: datetime,
    days: tuple[int, ...],
    last_day: date | None,
) -> PerActor:
    """Per actor: the local day of activation and whether they were active N days later.
    The aggregate counts, for each N, base_N (activated actors whose day N has begun by
    `last_day`, the latest event's local day) and kept_N (those of them active that day)."""
    inner = activation_query(spec, workspace_id, tz, start, end)
    p = Params()
    p.values.update(inner.values)
    ws = p.add(workspace_id)
    actor = PERSON if spec.aggregate_by == "person" else "e.account_id"

    def local(col: str) -> str:
        return f"CAST({local_time(col, tz, p)} AS DATE)"

    kept = ", ".join(
        f"EXISTS (SELECT 1 FROM active_days x WHERE x.actor = a.actor AND x.day = a.day + {p.add(d)}) AS kept_{d}"
        for d in days
    )
    ctes = (
        *inner.ctes,
        f"a AS (SELECT actor, {local('activated_at')} AS day FROM activation WHERE activated_at IS NOT NULL)",
        f"active_days AS (SELECT DISTINCT {actor} AS actor, {local('e.timestamp')} AS day FROM {RESOLVED_FROM} "
        f"WHERE e.workspace_id = {ws} AND {actor} IN (SELECT actor FROM a))",
        f"retained AS (SELECT a.actor, a.day, {kept} FROM a)",
    )
    cols = ["count(*) AS activated"]
    for d in days:
        n = p.add(d)
        cols.append(f"count(*) FILTER (WHERE day + {n} <= (SELECT last_day FROM last)) AS base_{d}")
        cols.append(
            f"count(*) FILTER (WHERE day + {n} <= (SELECT last_day FROM last) AND kept_{d}) AS kept_{d}"
        )
    last = f"last AS (SELECT CAST({p.add(last_day)} AS DATE) AS last_day)"
    return PerActor(
        ctes, "retained", f"SELECT {', '.join(cols)} FROM retained", p.values,
        tail_ctes=(last,), by=inner.by, separable=inner.separable,
    )  # fmt: skip
