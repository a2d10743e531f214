"""Engagement -> SQL: sessions, active users, lifecycle, feature adoption."""

from __future__ import annotations

from datetime import datetime

from traction.analytics.compile.params import (
    PERSON,
    Params,
    local_time,
    matcher_sql,
    reads_of,
    resolved_from,
    trait_columns,
    uses_traits,
)
from traction.analytics.compile.peractor import PerActor, actors_of
from traction.analytics.domain.specs import (
    ActiveUsersSpec,
    EventMatcher,
    FeatureAdoptionSpec,
    LifecycleSpec,
    SessionsSpec,
)


def _events(
    p: Params, workspace_id: str, aggregate_by: str, tz: str, extra: str = "", traits: bool = False
) -> str:
    actor = PERSON if aggregate_by == "person" else "e.account_id"
    not_null = " AND e.account_id IS NOT NULL" if aggregate_by == "account" else ""
    return (
        f"SELECT {actor} AS actor, e.timestamp AS ts, e.seq, e.type, e.name, e.properties, "
        f"{local_time('e.timestamp', tz, p)} AS local_ts{trait_columns(traits)} "
        f"FROM {resolved_from(traits)} WHERE e.workspace_id = {p.add(workspace_id)}{not_null}{extra}"
    )


def _active(m: EventMatcher | None, p: Params) -> str:
    return matcher_sql(m, p) if m else "true"


def compile_sessions(
    spec: SessionsSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    q = sessions_query(spec, workspace_id, tz, start, end)
    return q.sql, q.params(q.sql)


def sessions_query(
    spec: SessionsSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> PerActor:
    """One row of aggregates: sessions that began in the range (count, mean length, mean
    events), and the first N sessions of actors whose first session ever began in it.

    Only events from one gap before the range are split into sessions: an event in the range
    starts a session exactly when its predecessor is over a gap earlier, which that window
    decides (no predecessor in it means one further back, or none). Actors new in the range
    have no earlier events at all, so their sessions are numbered from their first; the
    others are found with a plain scan, not a window over all history."""
    p = Params()
    gap = f"to_microseconds({p.add(int(spec.gap_minutes * 60_000_000))})"
    if spec.feature_events is None:
        feature = "CASE WHEN type = 'track' THEN name END"
    else:
        feature = f"CASE WHEN name IN (SELECT unnest({p.add(list(spec.feature_events))}::VARCHAR[])) THEN name END"
    lo, hi, n = p.add(start), p.add(end), p.add(spec.first_sessions)
    # new actors only: the sessions of everyone seen before are never split (most of the work)
    only_new = "WHERE actor NOT IN (SELECT actor FROM seen_before)" if spec.actors == "new" else ""
    per_k = ",\n       ".join(
        f"count(*) FILTER (WHERE early AND session_no = {k}) AS actors_{k}, "
        f"avg(events) FILTER (WHERE early AND session_no = {k}) AS events_{k}, "
        f"avg(features) FILTER (WHERE early AND session_no = {k}) AS features_{k}"
        for k in range(1, spec.first_sessions + 1)
    )
    ctes = (
        f"ev AS ({_events(p, workspace_id, spec.aggregate_by, tz, f' AND e.timestamp >= {lo} - {gap} AND e.timestamp < {hi}')})",
        f"seen_before AS (SELECT DISTINCT actor FROM ({_events(p, workspace_id, spec.aggregate_by, tz, f' AND e.timestamp < {lo}')}))",
        f"""marked AS (
    SELECT actor, ts, seq, type, name,
           CASE WHEN lag(ts) OVER w IS NULL OR ts - lag(ts) OVER w > {gap} THEN 1 ELSE 0 END AS starts
    FROM ev {only_new} WINDOW w AS (PARTITION BY actor ORDER BY ts, seq)
)""",
        """numbered AS (
    SELECT actor, ts, type, name,
           sum(starts) OVER (PARTITION BY actor ORDER BY ts, seq ROWS UNBOUNDED PRECEDING) AS session_no
    FROM marked
)""",
        f"""sessions AS (
    SELECT actor, session_no, min(ts) AS started, max(ts) AS ended, count(*) AS events,
           count(DISTINCT {feature}) AS features
    FROM numbered GROUP BY actor, session_no
)""",
        f"""tagged AS (
    SELECT s.*, b.actor IS NULL AND s.session_no <= {n} AS early, s.started >= {lo} AS in_range
    FROM sessions s LEFT JOIN seen_before b USING (actor)
)""",
    )
    select = f"""SELECT count(*) FILTER (WHERE in_range) AS sessions,
       avg(epoch(ended) - epoch(started)) FILTER (WHERE in_range) AS avg_duration,
       avg(events) FILTER (WHERE in_range) AS avg_events,
       avg(events) FILTER (WHERE early) AS depth_events,
       avg(features) FILTER (WHERE early) AS depth_features,
       {per_k}
FROM tagged"""
    return PerActor(ctes, "tagged", select, p.values, by=actors_of(spec.aggregate_by))


def compile_active_users(
    spec: ActiveUsersSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    q = active_users_query(spec, workspace_id, tz, start, end)
    return q.sql, q.params(q.sql)


def active_users_query(
    spec: ActiveUsersSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> PerActor:
    """Rows: (day, dau, wau, mau) for every day of the range (local days).

    An actor active on day d counts in the MAU of days d to d+29 — up to their next active
    day, which counts them from there: so each actor's active days cover disjoint spans, and
    MAU on a day is the number of spans covering it, a running sum of +1 where a span starts
    and -1 where it ends (no distinct count over day x 30-day pairs). WAU the same with 7 days;
    DAU is the active days themselves."""
    p = Params()
    d_from, d_to = p.add(spec.range.date_from), p.add(spec.range.date_to)
    traits = uses_traits(spec.active_event)
    ctes = (
        f"ev AS ({_events(p, workspace_id, spec.aggregate_by, tz, f' AND e.timestamp >= {p.add(start)} - INTERVAL 31 DAY AND e.timestamp < {p.add(end)}', traits)})",
        f"days AS (SELECT DISTINCT actor, CAST(local_ts AS DATE) AS d FROM ev WHERE {_active(spec.active_event, p)})",
    )
    tail = (
        "spans AS (SELECT d, lead(d) OVER (PARTITION BY actor ORDER BY d) AS nxt FROM days)",
        """edges AS (
    SELECT d AS day, 1 AS dd, 1 AS dw, 1 AS dm FROM spans
    UNION ALL SELECT d + 1, -1, 0, 0 FROM spans
    UNION ALL SELECT least(d + 7, coalesce(nxt, d + 7)), 0, -1, 0 FROM spans
    UNION ALL SELECT least(d + 30, coalesce(nxt, d + 30)), 0, 0, -1 FROM spans
)""",
        "moves AS (SELECT day, sum(dd) AS dd, sum(dw) AS dw, sum(dm) AS dm FROM edges GROUP BY day)",
        """running AS (SELECT day, sum(dd) OVER w AS dau, sum(dw) OVER w AS wau, sum(dm) OVER w AS mau
            FROM moves WINDOW w AS (ORDER BY day ROWS UNBOUNDED PRECEDING))""",
        f"calendar AS (SELECT CAST(unnest(generate_series(CAST({d_from} AS DATE), CAST({d_to} AS DATE), INTERVAL 1 DAY)) AS DATE) AS d)",
    )
    select = """SELECT c.d, coalesce(r.dau, 0), coalesce(r.wau, 0), coalesce(r.mau, 0)
FROM calendar c ASOF LEFT JOIN running r ON c.d >= r.day
ORDER BY c.d"""
    return PerActor(ctes, "days", select, p.values, tail_ctes=tail, by=actors_of(spec.aggregate_by),
                    separable=not traits, reads=reads_of(spec.active_event))  # fmt: skip


def compile_lifecycle(
    spec: LifecycleSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    """Rows: (bucket, status, actors). A bucket's dormant actors were active in the bucket
    before and not in this one."""
    p = Params()
    unit = p.add(spec.interval)
    one = f"CAST('1 ' || {unit} AS INTERVAL)"
    lo, hi = p.add(spec.range.date_from), p.add(spec.range.date_to)
    sql = f"""
WITH ev AS ({_events(p, workspace_id, spec.aggregate_by, tz, f" AND e.timestamp < {p.add(end)}", uses_traits(spec.active_event))}),
active AS (SELECT DISTINCT actor, date_trunc({unit}, local_ts) AS bucket FROM ev WHERE {_active(spec.active_event, p)}),
seq AS (
    SELECT actor, bucket,
           lag(bucket) OVER (PARTITION BY actor ORDER BY bucket) AS prev,
           lead(bucket) OVER (PARTITION BY actor ORDER BY bucket) AS next
    FROM active
),
statuses AS (
    SELECT bucket, CASE WHEN prev IS NULL THEN 'new' WHEN prev = bucket - {one} THEN 'returning'
                        ELSE 'resurrecting' END AS status, actor FROM seq
    UNION ALL
    SELECT bucket + {one} AS bucket, 'dormant' AS status, actor FROM seq
    WHERE next IS NULL OR next > bucket + {one}
)
SELECT bucket, status, count(*) AS actors FROM statuses
WHERE bucket >= date_trunc({unit}, CAST({lo} AS TIMESTAMP)) AND bucket <= CAST({hi} AS TIMESTAMP)
GROUP BY bucket, status ORDER BY bucket, status
"""
    return sql, p.values


def compile_feature_adoption(
    spec: FeatureAdoptionSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    q = feature_adoption_query(spec, workspace_id, tz, start, end)
    return q.sql, q.params(q.sql)


def feature_adoption_query(
    spec: FeatureAdoptionSpec, workspace_id: str, tz: str, start: datetime, end: datetime
) -> PerActor:
    """One row: active actors, actors who used any of the features, then each feature's."""
    p = Params()
    ev = _events(
        p,
        workspace_id,
        spec.aggregate_by,
        tz,
        f" AND e.timestamp >= {p.add(start)} AND e.timestamp < {p.add(end)}",
        uses_traits(*spec.features),
    )
    conds = [matcher_sql(f, p) for f in spec.features]
    used = ", ".join(f"bool_or({c}) AS f{i}" for i, c in enumerate(conds))
    per = f"used AS (SELECT actor, {used} FROM ev WHERE actor IS NOT NULL GROUP BY actor)"
    cols = [
        "count(*) AS active",
        f"count(*) FILTER (WHERE {' OR '.join(f'f{i}' for i in range(len(conds)))}) AS any_feature",
    ]
    cols += [f"count(*) FILTER (WHERE f{i}) AS f{i}" for i in range(len(conds))]
    traits = uses_traits(*spec.features)
    return PerActor((f"ev AS ({ev})", per), "used", f"SELECT {', '.join(cols)} FROM used",
                    p.values, by=actors_of(spec.aggregate_by), separable=not traits)  # fmt: skip
