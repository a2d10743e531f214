"""Results that follow new events without being computed again whole.

A query split by `PerActor` has rows that each depend on one actor's events only (or on one
event only: then new events just add rows). Those rows
are kept (per workspace and query, with the data version they were read at). When events
arrive, only the actors they belong to can have different rows: their events (all of them,
from the whole log) are read once for every kept query (and kept: an actor's next event
reads only what they sent since), each query runs again over just those events, and the new
rows replace the actors' old ones. The aggregate then runs over the patched rows, which is
cheap (one row per actor, not one per event).

A query that reads only some events (`PerActor.reads`: a funnel of sign-ups) is not even
patched when none of the new events is one of them, unless people were merged meanwhile.

What breaks the premise falls back to a full computation: a merge of people or a deletion
(rows of several actors change, and which is not known), a query whose rows read another
actor's data (an account trait filter), or more new actors than a patch is worth.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from traction.analytics.compile.peractor import AFFECTED, AFFECTED_OVERRIDES, PerActor

T = TypeVar("T")
Version = tuple[int, tuple[int, int]]  # the log's head; the workspace's merges and deletions
# runs `sql` with `params`, the given Arrow tables registered by name, and answers Arrow
Run = Callable[[str, dict[str, object], dict[str, pa.Table]], pa.Table]


@dataclass(frozen=True)
class Kept:
    version: Version
    table: pa.Table


@dataclass(frozen=True)
class Affected:
    """The actors events stored after some point belong to, with all of their events."""

    actors: pa.Array  # person ids (as merged), account ids, or (by event) the new events
    events: pa.Table  # every event of those actors, whole rows of the log
    overrides: pa.Table  # the merges that name those events' person ids

    @property
    def replaced(self) -> pa.Array:
        """Whose kept rows give way: the actors, and the people merged into them."""
        if self.overrides.num_rows == 0:
            return self.actors
        merged = self.overrides["old_person_id"].combine_chunks()
        return pa.concat_arrays([self.actors.cast(pa.string()), merged.cast(pa.string())])


class ActorRows:
    MAX_QUERIES = 128  # kept per-actor tables (each is one row per actor of one query)
    MAX_ROWS = 2_000_000  # larger per-actor tables are not kept
    MAX_AFFECTED = 5_000  # more new actors than this: compute whole
    MAX_DERIVED = 1024
    MAX_EVENTS_KEPT = 200_000  # the events of the actors last patched, to read only their new ones

    def __init__(self, run: Run) -> None:
        self._run = run
        self._kept: OrderedDict[tuple[str, str, str], Kept] = OrderedDict()
        # what the events stored in a window hold, read once for every query patched over it
        self._found: OrderedDict[Hashable, Any] = OrderedDict()
        self._derived: OrderedDict[Hashable, tuple[tuple[object, ...], Any]] = OrderedDict()
        self._finding: dict[Hashable, Future[Any]] = {}
        # (workspace, by, actors) -> (the head they were read at, merges and deletions, events)
        self._events_of: OrderedDict[
            tuple[str, str, tuple[str, ...]], tuple[int, tuple[int, int], pa.Table]
        ] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, workspace_id: str, q: PerActor, version: Version) -> pa.Table:
        """`q`'s per-actor rows at `version` (read at least that recently)."""
        sql = q.rows_sql()
        params = q.params(sql)
        key = (workspace_id, sql, repr(sorted(params.items())))
        with self._lock:
            kept = self._kept.get(key)
            # events kept from before a merge or an erasure are of no use, and an erased
            # person's are not kept a moment longer than this
            stale = [
                k for k, v in self._events_of.items() if k[0] == workspace_id and v[1] != version[1]
            ]
            for k in stale:
                del self._events_of[k]
        table = None
        if kept is not None and q.separable and _patchable(q, kept.version, version):
            if kept.version == version:
                table = kept.table
            else:
                table = self._patch(workspace_id, q, kept, version)
        if table is None:
            table = self._run(sql, params, {})
        if table.num_rows <= self.MAX_ROWS:
            with self._lock:
                self._kept[key] = Kept(version, table)
                self._kept.move_to_end(key)
                while len(self._kept) > self.MAX_QUERIES:
                    self._kept.popitem(last=False)
        return table

    def _patch(
        self, workspace_id: str, q: PerActor, kept: Kept, version: Version
    ) -> pa.Table | None:
        since, head = kept.version[0], version[0]
        if self._unread(workspace_id, q, kept.version, version):
            return kept.table  # none of the new events is one these rows read
        affected = self.affected(workspace_id, since, head, q.by, version[1])
        if affected is None:
            return None
        if len(affected.actors) == 0:
            return kept.table  # the new events belong to no actor of this kind
        sql = q.rows_sql(affected_only=True)
        tables = {AFFECTED: affected.events, AFFECTED_OVERRIDES: affected.overrides}
        fresh = self._run(sql, q.params(sql), tables).cast(kept.table.schema)
        if q.by == "event":  # rows of new events are added (unless a read racing a commit
            # already saw them: such rows carry their event's `seq`)
            seen = pc.fill_null(pc.is_in(fresh["seq"], value_set=kept.table["seq"]), False)
            fresh = fresh.filter(pc.invert(seen))
            return kept.table if fresh.num_rows == 0 else pa.concat_tables([kept.table, fresh])
        # the actors' rows, and those of the people merged into them (whose rows are gone)
        is_affected = pc.fill_null(
            pc.is_in(kept.table["actor"], value_set=affected.replaced), False
        )
        if _same_rows(kept.table.filter(is_affected), fresh):
            return kept.table  # the same object: what was derived from it still holds
        return pa.concat_tables([kept.table.filter(pc.invert(is_affected)), fresh])

    def _unread(self, workspace_id: str, q: PerActor, kept: Version, now: Version) -> bool:
        """Whether none of the events stored since `kept` is one `q`'s rows read (and no
        people were merged meanwhile, which moves events from one person to another)."""
        if q.reads is None or kept[1] != now[1]:
            return False
        return not q.reads.any_of(self.new_kinds(workspace_id, kept[0], now[0]))

    def derived(self, key: Hashable, inputs: tuple[object, ...], compute: Callable[[], T]) -> T:
        """What `compute` derives from `inputs` (per-actor tables, or values derived from
        them), again only when one of them is a new object: a patch that changed nothing
        answers the kept table itself, so most aggregates survive a new event untouched."""
        with self._lock:
            hit = self._derived.get(key)
        if (
            hit is not None
            and len(hit[0]) == len(inputs)
            and all(a is b for a, b in zip(hit[0], inputs, strict=True))
        ):
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._derived[key] = (inputs, value)
            self._derived.move_to_end(key)
            while len(self._derived) > self.MAX_DERIVED:
                self._derived.popitem(last=False)
        return value

    def affected(
        self, workspace_id: str, since: int, head: int, by: str, changes: tuple[int, int]
    ) -> Affected | None:
        """Who the events stored in (since, head] belong to, with all their events up to
        `head`; None when too many to patch. `changes`: the workspace's merges and deletions."""
        return self._once(  # type: ignore[no-any-return]
            (workspace_id, since, head, by, changes),
            lambda: self._find(workspace_id, since, head, by, changes),
        )

    def new_kinds(self, workspace_id: str, since: int, head: int) -> set[tuple[str, str]]:
        """The (name, type) of the events stored in (since, head]."""
        window = {"ws": workspace_id, "since": since, "head": head}

        def read() -> set[tuple[str, str]]:
            table = self._run(
                "SELECT DISTINCT name, type FROM events "
                "WHERE workspace_id = $ws AND seq > $since AND seq <= $head",
                window,
                {},
            )
            return set(zip(*(table[c].to_pylist() for c in ("name", "type")), strict=True))

        return self._once((workspace_id, since, head, "kinds"), read)  # type: ignore[no-any-return]

    def _once(self, key: Hashable, read: Callable[[], Any]) -> Any:
        """What `read` finds about one window of new events, read once for every query
        patched over it. The scorecard patches its queries on several threads at once: the
        first to ask reads, the others wait for its answer (four reads of the same events
        cost more than one and a wait)."""
        with self._lock:
            if key in self._found:
                return self._found[key]
            running = self._finding.get(key)
            if running is None:
                self._finding[key] = mine = Future[Any]()
        if running is not None:
            return running.result()
        try:
            found = read()
        except BaseException as e:
            with self._lock:
                del self._finding[key]
            mine.set_exception(e)
            raise
        with self._lock:
            del self._finding[key]
            self._found[key] = found
            while len(self._found) > 16:
                self._found.popitem(last=False)
        mine.set_result(found)
        return found

    def _find(
        self, workspace_id: str, since: int, head: int, by: str, changes: tuple[int, int]
    ) -> Affected | None:
        window = {"ws": workspace_id, "since": since, "head": head}
        new = "e.workspace_id = $ws AND e.seq > $since AND e.seq <= $head"
        if by == "event":
            events = self._run(f"SELECT * FROM events e WHERE {new}", window, {})
            if events.num_rows > self.MAX_AFFECTED:
                return None
            return self._with_overrides(workspace_id, pa.array(range(events.num_rows)), events)
        if by == "person":
            column = "COALESCE(o.person_id, e.person_id)"
            source = "events e LEFT JOIN person_overrides o ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id"
        else:
            column, source = "e.account_id", "events e"
        who = self._run(f"SELECT DISTINCT {column} AS actor FROM {source} WHERE {new}", window, {})
        actors = who["actor"].drop_null().combine_chunks()
        if len(actors) > self.MAX_AFFECTED:
            return None
        if len(actors) == 0:
            return Affected(actors, pa.table({}), pa.table({}))
        events = self._events(workspace_id, by, actors.to_pylist(), head, changes)
        return self._with_overrides(workspace_id, actors, events)

    def _events(
        self, workspace_id: str, by: str, actors: list[str], head: int, changes: tuple[int, int]
    ) -> pa.Table:
        """Every event of `actors` stored up to `head`. The last ones read are kept: an actor
        who sends event after event (the usual live case) then costs a read of their new
        events, not of their whole history, while nobody was merged or erased meanwhile."""
        if by == "person":  # their older events carry the ids merged into them
            sql = (
                "SELECT * FROM events WHERE workspace_id = $ws AND seq <= $head AND person_id IN ("
                "SELECT unnest($ids::VARCHAR[]) UNION ALL SELECT old_person_id FROM person_overrides "
                "WHERE workspace_id = $ws AND person_id IN (SELECT unnest($ids::VARCHAR[])))"
            )
        else:
            sql = (
                "SELECT * FROM events WHERE workspace_id = $ws AND seq <= $head "
                "AND account_id IN (SELECT unnest($ids::VARCHAR[]))"
            )
        params: dict[str, object] = {"ws": workspace_id, "ids": actors, "head": head}
        key = (workspace_id, by, tuple(sorted(actors)))
        with self._lock:
            hit = self._events_of.get(key)
        if hit is not None and hit[1] == changes and hit[0] == head:
            events = hit[2]  # read for another query patched to the same head
        elif hit is not None and hit[1] == changes and hit[0] < head:
            newer = self._run(sql + " AND seq > $after", {**params, "after": hit[0]}, {})
            events = pa.concat_tables([hit[2], newer]) if newer.num_rows else hit[2]
            if events.num_rows and events["seq"].num_chunks > 16:
                events = events.combine_chunks()
        else:
            events = self._run(sql, params, {})
        with self._lock:
            self._events_of[key] = (head, changes, events)
            self._events_of.move_to_end(key)
            while len(self._events_of) > 1 and (
                sum(t.num_rows for _, _, t in self._events_of.values()) > self.MAX_EVENTS_KEPT
            ):
                self._events_of.popitem(last=False)
        return events

    def _with_overrides(self, workspace_id: str, actors: pa.Array, events: pa.Table) -> Affected:
        """The merges that name the events' person ids: all the recomputed queries resolve."""
        ids = pc.unique(events["person_id"]).drop_null().to_pylist()
        overrides = self._run(
            "SELECT * FROM person_overrides WHERE workspace_id = $ws "
            "AND old_person_id IN (SELECT unnest($ids::VARCHAR[]))",
            {"ws": workspace_id, "ids": ids},
            {},
        )
        return Affected(actors, events, overrides)


def _same_rows(old: pa.Table, new: pa.Table) -> bool:
    """Whether two small sets of rows are equal in any order (the usual case: a new event
    that changes nothing its actor had in this query, or had nothing in it at all)."""
    if old.num_rows != new.num_rows:
        return False
    if old.num_rows == 0:
        return True
    if old.num_rows > 10_000:
        return False
    try:
        keys = [(name, "ascending") for name in old.column_names]
        return bool(old.sort_by(keys).equals(new.sort_by(keys)))
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return False  # a column that does not sort: count it as changed


def _patchable(q: PerActor, kept: Version, now: Version) -> bool:
    """Whether the kept rows can be brought to `now` by recomputing some actors. Deletions
    never (whose rows they emptied is not known); merges only for rows per person: a merge is
    stored with the event that caused it, whose person (the survivor) is then recomputed
    with the merged person's events, and the merged person's rows are dropped."""
    (merges_then, deletions_then), (merges_now, deletions_now) = kept[1], now[1]
    if deletions_then != deletions_now or merges_then > merges_now:
        return False
    return merges_then == merges_now or q.by == "person"
