"""Funnel -> SQL.

Semantics (docs/analytics.md): a person's events are ordered by (timestamp, arrival); every
step-1 event in the date range starts an attempt; each next step is matched to the earliest
later matching event (ASOF join on position); a step counts if it happens within the window
of the attempt's first event (strict mode: and immediately after the previous step). An
attempt with an exclusion event between its `from_step` and `to_step` events (or, if it never
reached `to_step`, before the window closed) is discarded. The person's result is their
furthest remaining attempt, the earliest one among equals; a breakdown value is read from
that attempt's step events (first touch, last touch, or a chosen step).
"""

from __future__ import annotations

from datetime import datetime

from traction.analytics.compile.params import (
    PERSON,
    RESERVED,
    Params,
    json_path,
    matcher_sql,
    reads_of,
    resolved_from,
    trait_columns,
    uses_traits,
)
from traction.analytics.compile.peractor import PerActor, actors_of
from traction.analytics.domain.specs import EventMatcher, FunnelSpec

NONE = "$none"


def prefilter(matchers: list[EventMatcher], p: Params) -> str | None:
    """A cheap condition every event matching one of `matchers` meets; None when one of them
    is `$any` with nothing narrower (no filter, or one on traits, which are joined later).
    `$any` with event-property filters (a purchase is any event whose MRR went up) keeps its
    filters: numbering every event of the range instead was most of such a funnel's time."""
    anys = [m for m in matchers if m.event == "$any"]
    if any(not m.filters or uses_traits(m) for m in anys):
        return None
    names = sorted({m.event for m in matchers} - set(RESERVED))
    types = sorted(
        {
            RESERVED[m.event].split("'")[1]
            for m in matchers
            if m.event in RESERVED and m.event != "$any"
        }
    )
    conds = [f"e.name IN (SELECT unnest({p.add(names)}::VARCHAR[]))"] if names else []
    if types:
        conds.append(f"e.type IN (SELECT unnest({p.add(types)}::VARCHAR[]))")
    conds += [matcher_sql(m, p, "e.name", "e.properties") for m in anys]
    return "(" + " OR ".join(conds) + ")"


def compile_funnel(
    spec: FunnelSpec, workspace_id: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    """`start`/`end`: the date range as naive UTC. Attempts start in [start, end); later steps
    may complete up to `window` after `end`. With a breakdown, one row per value (`bd`)."""
    q = funnel_query(spec, workspace_id, start, end)
    return q.sql, q.params(q.sql)


def funnel_query(spec: FunnelSpec, workspace_id: str, start: datetime, end: datetime) -> PerActor:
    """The funnel with each actor's best attempt (`best`) as its per-actor rows."""
    p = Params()
    n = len(spec.steps)
    window_us = int(spec.window_days * 86_400_000_000)
    actor = PERSON if spec.aggregate_by == "person" else "e.account_id"
    matchers = [*spec.steps, *(x.event for x in spec.exclusions)]
    where = [f"e.workspace_id = {p.add(workspace_id)}", f"e.timestamp >= {p.add(start)}"]
    where.append(f"e.timestamp < {p.add(end)} + to_microseconds({p.add(window_us)})")
    # Only the events the funnel names matter (by name, by call type for $page/$screen, by
    # filters for $any), unless strict mode must see what lies between steps. Positions then
    # number only those events, which keeps their order: all that ordered matching uses.
    narrow = prefilter(matchers, p) if spec.mode == "ordered" else None
    if narrow is not None:
        where.append(narrow)
    if spec.aggregate_by == "account":
        where.append("e.account_id IS NOT NULL")
    w = f"to_microseconds({p.add(window_us)})"
    traits = uses_traits(*matchers)
    if spec.mode == "unordered":
        return _unordered(spec, p, actor, where, w, traits, end)
    by = actors_of(spec.aggregate_by)
    ctes = [
        f"ev AS (SELECT {actor} AS actor, e.timestamp AS ts, e.seq, e.type, e.name, e.properties"
        f"{trait_columns(traits)} FROM {resolved_from(traits)} WHERE {' AND '.join(where)})",
        f"ranked AS (SELECT *, {_position(spec)} AS pos FROM ev)",
        f"j0 AS (SELECT actor, ts AS t0, pos AS p0{_props(spec, 0, '')} FROM ranked "
        f"WHERE {matcher_sql(spec.steps[0], p)} AND ts < {p.add(end)})",
    ]
    for k in range(1, n):
        ctes.append(
            f"s{k} AS (SELECT actor, ts, pos, properties FROM ranked WHERE {matcher_sql(spec.steps[k], p)})"
        )
        ctes.append(
            f"j{k} AS (SELECT j.*, s.ts AS t{k}, s.pos AS p{k}{_props(spec, k, 's.')} FROM j{k - 1} j "
            f"ASOF LEFT JOIN s{k} s ON j.actor = s.actor AND s.pos > j.p{k - 1})"
        )
    oks = []
    for k in range(1, n):
        ok = f"t{k} IS NOT NULL AND t{k} <= t0 + {w}"
        if spec.mode == "strict":
            ok += f" AND p{k} = p{k - 1} + 1"
        oks.append(f"COALESCE({ok}, false)")
    level = " + ".join(["1"] + [f"({' AND '.join(oks[: k + 1])})::INT" for k in range(n - 1)])
    last = f"j{n - 1}"
    ctes.append(f"leveled AS (SELECT *, {level} AS level FROM {last})")
    source = "leveled"
    for i, x in enumerate(spec.exclusions):
        a, b = x.from_step, x.to_step
        ctes.append(f"x{i} AS (SELECT actor, ts, pos FROM ranked WHERE {matcher_sql(x.event, p)})")
        # the first exclusion event after the from-step event of the attempt
        ctes.append(
            f"xj{i} AS (SELECT l.*, x.pos AS xpos{i}, x.ts AS xts{i} FROM {source} l "
            f"ASOF LEFT JOIN x{i} x ON l.actor = x.actor AND x.pos > l.p{a})"
        )
        reached_b = f"level >= {b + 1}"
        ctes.append(
            f"ok{i} AS (SELECT * FROM xj{i} WHERE NOT (level >= {a + 1} AND xpos{i} IS NOT NULL AND "
            f"CASE WHEN {reached_b} THEN xpos{i} < p{b} ELSE xts{i} <= t0 + {w} END))"
        )
        source = f"ok{i}"
    ctes.append(
        f"best AS (SELECT * FROM {source} "
        "QUALIFY row_number() OVER (PARTITION BY actor ORDER BY level DESC, t0, p0) = 1)"
    )
    cols = []
    for k in range(n):
        cols.append(f"count(*) FILTER (WHERE level >= {k + 1}) AS entered_{k}")
        if k:
            gap = f"epoch(t{k}) - epoch(t{k - 1})"
            cols.append(f"median({gap}) FILTER (WHERE level >= {k + 1}) AS median_s_{k}")
            cols.append(f"avg({gap}) FILTER (WHERE level >= {k + 1}) AS mean_s_{k}")
    if spec.breakdown:
        path = p.add(json_path(spec.breakdown))
        if spec.breakdown_attribution == "first_touch":
            props = "props0"
        elif spec.breakdown_attribution == "step":
            props = f"props{spec.breakdown_step}"
        else:  # last touch: the furthest step reached
            props = (
                "CASE level " + " ".join(f"WHEN {k + 1} THEN props{k}" for k in range(n)) + " END"
            )
        bd = f"COALESCE(json_extract_string({props}, {path}), '{NONE}')"
        select = f"SELECT {bd} AS bd, {', '.join(cols)} FROM best GROUP BY 1"
    else:
        select = f"SELECT {', '.join(cols)} FROM best"
    # ordered matching reads only the events the funnel names; strict mode reads them all
    reads = reads_of(*matchers) if narrow is not None else None
    return PerActor(tuple(ctes), "best", select, p.values, by=by, separable=not traits, reads=reads)


def _position(spec: FunnelSpec) -> str:
    """An event's place in its actor's (timestamp, arrival) order. Matching only compares
    places, so a key made of both orders them without numbering the events (a sort of every
    event of the range); strict mode numbers them, since its steps must be adjacent."""
    if spec.mode == "strict":
        return "row_number() OVER (PARTITION BY actor ORDER BY ts, seq)"
    return f"(epoch_us(ts)::HUGEINT * {2**64} + seq)"


def _props(spec: FunnelSpec, k: int, prefix: str) -> str:
    """Step k's event properties, kept per actor only when a breakdown reads them."""
    return f", {prefix}properties AS props{k}" if spec.breakdown else ""


def _unordered(
    spec: FunnelSpec, p: Params, actor: str, where: list[str], w: str, traits: bool, end: datetime
) -> PerActor:
    """Any step event in the range anchors an attempt; its level is how many distinct steps
    happen in [anchor, anchor + window], in any order. Step k counts actors who did k of them."""
    n = len(spec.steps)
    flags = ", ".join(f"{matcher_sql(m, p)} AS m{k}" for k, m in enumerate(spec.steps))
    any_step = " OR ".join(f"m{k}" for k in range(n))
    level = " + ".join(f"bool_or(f.m{k})::INT" for k in range(n))
    ctes = (
        f"""ev AS (SELECT {actor} AS actor, e.timestamp AS ts, e.seq, e.type, e.name, e.properties{trait_columns(traits)}
            FROM {resolved_from(traits)} WHERE {" AND ".join(where)})""",
        f"flagged AS (SELECT actor, ts, seq, {flags} FROM ev)",
        f"steps AS (SELECT * FROM flagged WHERE {any_step})",
        f"""attempts AS (
    SELECT a.actor, a.ts AS t0, a.seq AS p0, {level} AS level
    FROM steps a JOIN steps f ON f.actor = a.actor AND f.ts >= a.ts AND f.ts <= a.ts + {w}
    WHERE a.ts < {p.add(end)}
    GROUP BY a.actor, a.ts, a.seq
)""",
        "best AS (SELECT * FROM attempts QUALIFY row_number() OVER (PARTITION BY actor ORDER BY level DESC, t0, p0) = 1)",
    )
    entered = ", ".join(
        f"count(*) FILTER (WHERE level >= {k + 1}) AS entered_{k}" for k in range(n)
    )
    by = actors_of(spec.aggregate_by)
    return PerActor(
        ctes, "best", f"SELECT {entered} FROM best", p.values, by=by, separable=not traits,
        reads=reads_of(*spec.steps),
    )  # fmt: skip


def compile_funnel_dropoffs(
    spec: FunnelSpec,
    workspace_id: str,
    start: datetime,
    end: datetime,
    step: int,
    limit: int,
    offset: int = 0,
) -> tuple[str, dict[str, object]]:
    """The actors who reached `step` (0-based) and went no further: the friction list."""
    plain = spec.model_copy(update={"breakdown": None})
    q = funnel_query(plain, workspace_id, start, end).with_select(
        "SELECT actor, t0 AS started_at FROM best WHERE level = $drop_level "
        "ORDER BY t0, actor LIMIT $drop_limit OFFSET $drop_offset",
        {"drop_level": step + 1, "drop_limit": limit, "drop_offset": offset},
    )
    return q.sql, q.values
