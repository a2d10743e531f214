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
    resolved_from,
    trait_columns,
    uses_traits,
)
from traction.analytics.domain.specs import EventMatcher, FunnelSpec

NONE = "$none"


def prefilter(matchers: list[EventMatcher], p: Params) -> str:
    """A cheap condition every event matching one of `matchers` meets (none is `$any`)."""
    names = sorted({m.event for m in matchers} - set(RESERVED))
    types = sorted({RESERVED[m.event].split("'")[1] for m in matchers if m.event in RESERVED})
    conds = [f"e.name IN (SELECT unnest({p.add(names)}::VARCHAR[]))"] if names else []
    if types:
        conds.append(f"e.type IN (SELECT unnest({p.add(types)}::VARCHAR[]))")
    return "(" + " OR ".join(conds) + ")"


def compile_funnel(
    spec: FunnelSpec, workspace_id: str, start: datetime, end: datetime
) -> tuple[str, dict[str, object]]:
    """`start`/`end`: the date range as naive UTC. Attempts start in [start, end); later steps
    may complete up to `window` after `end`. With a breakdown, one row per value (`bd`)."""
    p = Params()
    n = len(spec.steps)
    window_us = int(spec.window_days * 86_400_000_000)
    actor = PERSON if spec.aggregate_by == "person" else "e.account_id"
    matchers = [*spec.steps, *(x.event for x in spec.exclusions)]
    where = [f"e.workspace_id = {p.add(workspace_id)}", f"e.timestamp >= {p.add(start)}"]
    where.append(f"e.timestamp < {p.add(end)} + to_microseconds({p.add(window_us)})")
    # Only the events the funnel names matter (by name, or by call type for $page/$screen),
    # unless strict mode must see what lies between steps or a step is $any. Positions then
    # number only those events, which keeps their order: all that ordered matching uses.
    if spec.mode == "ordered" and not any(m.event == "$any" for m in matchers):
        where.append(prefilter(matchers, p))
    if spec.aggregate_by == "account":
        where.append("e.account_id IS NOT NULL")
    w = f"to_microseconds({p.add(window_us)})"
    traits = uses_traits(*matchers)
    if spec.mode == "unordered":
        return _unordered(spec, p, actor, where, w, traits, end)
    ctes = [
        f"ev AS (SELECT {actor} AS actor, e.timestamp AS ts, e.seq, e.type, e.name, e.properties"
        f"{trait_columns(traits)} FROM {resolved_from(traits)} WHERE {' AND '.join(where)})",
        "ranked AS (SELECT *, row_number() OVER (PARTITION BY actor ORDER BY ts, seq) AS pos FROM ev)",
        f"j0 AS (SELECT actor, ts AS t0, pos AS p0, properties AS props0 FROM ranked "
        f"WHERE {matcher_sql(spec.steps[0], p)} AND ts < {p.add(end)})",
    ]
    for k in range(1, n):
        ctes.append(
            f"s{k} AS (SELECT actor, ts, pos, properties FROM ranked WHERE {matcher_sql(spec.steps[k], p)})"
        )
        ctes.append(
            f"j{k} AS (SELECT j.*, s.ts AS t{k}, s.pos AS p{k}, s.properties AS props{k} FROM j{k - 1} j "
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
        sql = (
            "WITH "
            + ",\n".join(ctes)
            + f"\nSELECT {bd} AS bd, {', '.join(cols)} FROM best GROUP BY 1"
        )
    else:
        sql = "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(cols)} FROM best"
    return sql, p.values


def _unordered(
    spec: FunnelSpec, p: Params, actor: str, where: list[str], w: str, traits: bool, end: datetime
) -> tuple[str, dict[str, object]]:
    """Any step event in the range anchors an attempt; its level is how many distinct steps
    happen in [anchor, anchor + window], in any order. Step k counts actors who did k of them."""
    n = len(spec.steps)
    flags = ", ".join(f"{matcher_sql(m, p)} AS m{k}" for k, m in enumerate(spec.steps))
    any_step = " OR ".join(f"m{k}" for k in range(n))
    level = " + ".join(f"bool_or(f.m{k})::INT" for k in range(n))
    sql = f"""
WITH ev AS (SELECT {actor} AS actor, e.timestamp AS ts, e.seq, e.type, e.name, e.properties{trait_columns(traits)}
            FROM {resolved_from(traits)} WHERE {" AND ".join(where)}),
flagged AS (SELECT actor, ts, seq, {flags} FROM ev),
steps AS (SELECT * FROM flagged WHERE {any_step}),
attempts AS (
    SELECT a.actor, a.ts AS t0, a.seq AS p0, {level} AS level
    FROM steps a JOIN steps f ON f.actor = a.actor AND f.ts >= a.ts AND f.ts <= a.ts + {w}
    WHERE a.ts < {p.add(end)}
    GROUP BY a.actor, a.ts, a.seq
),
best AS (SELECT * FROM attempts QUALIFY row_number() OVER (PARTITION BY actor ORDER BY level DESC, t0, p0) = 1)
SELECT {", ".join(f"count(*) FILTER (WHERE level >= {k + 1}) AS entered_{k}" for k in range(n))} FROM best
"""
    return sql, p.values


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
    sql, values = compile_funnel(plain, workspace_id, start, end)
    head = sql[: sql.rindex("\nSELECT ")]
    values = {**values, "drop_level": step + 1, "drop_limit": limit, "drop_offset": offset}
    return (
        head
        + "\nSELECT actor, t0 AS started_at FROM best WHERE level = $drop_level ORDER BY t0, actor LIMIT $drop_limit OFFSET $drop_offset",
        values,
    )
