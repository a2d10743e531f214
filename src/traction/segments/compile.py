"""A segment as one DuckDB query: one pass over the workspace's events counts each
behaviour per person (merges followed), then the traits are checked on the person's and
their latest account's current traits. People known only by their traits (no events) are in
the universe too, so `is_not_set` and `at_most` mean what they say."""

from __future__ import annotations

from datetime import datetime, timedelta

from traction.analytics.compile.params import (
    PERSON,
    Params,
    filter_sql,
    matcher_sql,
    resolved_from,
    uses_traits,
)
from traction.segments.domain import Segment


def members_sql(workspace_id: str, seg: Segment, now: datetime) -> tuple[str, dict[str, object]]:
    """Rows: (person,) for every member as of `now` (naive UTC)."""
    p = Params()
    ws = p.add(workspace_id)
    upto = p.add(now)
    traits = uses_traits(*(b.event for b in seg.performed))
    counts = []
    for i, b in enumerate(seg.performed):
        since = p.add(now - timedelta(days=b.within_days))
        cond = matcher_sql(b.event, p, "e.name", "e.properties", "pt.traits", "act.traits")
        counts.append(
            f", count(*) FILTER (WHERE e.timestamp >= {since} AND e.timestamp < {upto} "
            f"AND {cond}) AS n{i}"
        )
    zeros = "".join(f", 0 AS n{i}" for i in range(len(seg.performed)))
    acts = (
        f"SELECT {PERSON} AS person, arg_max(e.account_id, e.timestamp) FILTER "
        f"(WHERE e.account_id IS NOT NULL) AS account{''.join(counts)} "
        f"FROM {resolved_from(traits)} WHERE e.workspace_id = {ws} AND e.timestamp < {upto} "
        "GROUP BY 1"
    )
    # people with traits and no event yet (merged-away ids are not people any more)
    quiet = (
        f"SELECT q.person_id AS person, NULL::VARCHAR AS account{zeros} FROM person_traits q "
        f"WHERE q.workspace_id = {ws} AND q.person_id NOT IN (SELECT person FROM acts) "
        f"AND q.person_id NOT IN (SELECT old_person_id FROM person_overrides WHERE workspace_id = {ws})"
    )
    where = [filter_sql(f, p, "pt.traits" if f.source == "person" else "act.traits")
             for f in seg.traits]  # fmt: skip
    for i, b in enumerate(seg.performed):
        where.append(f"u.n{i} >= {p.add(b.at_least)}")
        if b.at_most is not None:
            where.append(f"u.n{i} <= {p.add(b.at_most)}")
    sql = (
        f"WITH acts AS ({acts}), people AS (SELECT * FROM acts UNION ALL {quiet}) "
        "SELECT u.person FROM people u "
        f"LEFT JOIN person_traits pt ON pt.workspace_id = {ws} AND pt.person_id = u.person "
        f"LEFT JOIN account_traits act ON act.workspace_id = {ws} AND act.account_id = u.account "
        f"WHERE {' AND '.join(where)} ORDER BY u.person"
    )
    return sql, p.values
