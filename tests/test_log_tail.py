"""The log's tail (`store/tail.py`): the rows of the latest appends, kept for the reactors'
reads of the head. Whatever it answers equals what the file answers, after any history of
appends, duplicates, merges, erasures and retention; and it does answer the head's reads.
The last seq, which the store keeps rather than asks the file, is the file's too."""

from __future__ import annotations

import contextlib
import itertools
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.privacy.service import NoSuchPerson
from traction.store.events import EVENT_SCHEMA, DuckDBEventStore, EventKinds, _after, rows_of
from traction.store.tail import LogTail

MESSAGE_IDS = itertools.count()  # (the examples share a store: ids unique across them)
COLUMNS: list[list[str] | None] = [None, ["person_id", "name"], ["properties", "type"]]
KINDS = [None, EventKinds(frozenset({"clicked"}), frozenset({"identify"}))]


def from_file(events: DuckDBEventStore, seq: int, limit: int, columns: list[str] | None,
              upto: int | None, only: EventKinds | None) -> pa.Table:  # fmt: skip
    """The same read, from DuckDB alone (the tail's reference)."""
    sql, params = _after(seq, limit, columns, upto, only)
    with events.reading() as cur:
        return cur.sql(sql, params=params).to_arrow_table()


def same_as_file(events: DuckDBEventStore, seq: int, limit: int) -> int:
    """Every column set, event filter and bound at `seq`: the tail's answers, where it
    gives one, are the file's (rows and Arrow types). Returns how many it gave."""
    head = events.max_seq()
    answered = 0
    for columns in COLUMNS:
        for only in KINDS:
            for upto in (None, head, max(seq, head - 2)):
                held = events._from_tail(seq, limit, columns, upto, only)
                if held is None:
                    continue
                answered += 1
                want = from_file(events, seq, limit, columns, upto, only)
                assert held.schema.equals(want.schema), (held.schema, want.schema)
                assert rows_of(held) == rows_of(want), (seq, limit, columns, upto, only)
    return answered


def message(kind: str, n: int, user: str | None, anon: str) -> dict[str, Any]:
    ts = f"2026-03-{1 + n % 5:02d}T10:00:{n % 60:02d}Z"
    base: dict[str, Any] = {"timestamp": ts, "messageId": f"m{n}"}
    if kind == "track":
        ids = {"userId": user} if user else {"anonymousId": anon}  # two people, until...
        return {**base, "type": "track", "event": "clicked" if n % 3 else "signed_up", **ids,
                "properties": {"n": n, "plan": ["pro", None, 1.5][n % 3]}}  # fmt: skip
    if kind == "page":
        return {**base, "type": "page", "name": "pricing", "anonymousId": anon}
    if kind == "identify":  # ...this merges the anonymous id's person into the user's
        return {**base, "type": "identify", "anonymousId": anon, "userId": user or "u1",
                "traits": {"plan": "pro"}}  # fmt: skip
    return {**base, "type": "alias", "previousId": anon, "userId": user or "u2"}


def _messages(kinds: list[str]) -> st.SearchStrategy[list[tuple[str, str | None, str, bool]]]:
    return st.lists(
        st.tuples(
            st.sampled_from(kinds),
            st.sampled_from([None, None, "u1", "u2", "u3"]),
            st.sampled_from(["a1", "a2", "a3", "a4", "a5"]),
            st.sampled_from([False] * 15 + [True]),  # a duplicate of an earlier message
        ),
        min_size=1,
        max_size=12,
    )


# plain batches (what the tail holds), and batches that merge people and store traits
messages = st.one_of(_messages(["track", "page"]), _messages(["track", "identify", "alias"]))
steps = st.lists(
    st.one_of(
        *[st.tuples(st.just("batch"), messages, st.sampled_from(["A", "B"]))] * 6,
        st.tuples(st.just("erase"), st.sampled_from(["u1", "u2", "a3"]), st.just("A")),
        st.tuples(st.just("retention"), st.integers(1, 5), st.just("B")),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=steps, probes=st.lists(st.tuples(st.integers(0, 15), st.sampled_from([1, 3, 1000])), min_size=1, max_size=4))  # fmt: skip
def test_the_tail_answers_as_the_file_does(
    sqlite_ctx: Context, history: list[tuple[Any, ...]], probes: list[tuple[int, int]]
) -> None:
    ctx = sqlite_ctx
    ws = {w: ctx.workspaces.create_workspace(w).id for w in ("A", "B")}
    sent: list[str] = []
    n = 0
    for step in history:
        kind, arg, w = step
        if kind == "batch":
            batch = []
            for k, user, anon, again in arg:
                n += 1
                mid = sent[n % len(sent)] if again and sent else f"m{next(MESSAGE_IDS)}"
                sent.append(mid)
                batch.append(message(k, n, user, anon) | {"messageId": mid})
            ctx.ingest.ingest_sync(ws[w], batch, normalize_segment)
        elif kind == "erase":
            with contextlib.suppress(NoSuchPerson):
                ctx.privacy.delete_person(ws[w], arg)
        else:
            ctx.events.delete_before(ws[w], datetime(2026, 3, arg, 12))
        head = ctx.events.max_seq()
        with ctx.events.reading() as cur:  # the last seq, as the writes kept it
            assert head == cur.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]  # type: ignore[index]
        for back, limit in probes:
            same_as_file(ctx.events, max(0, head - back), limit)


def test_the_tail_answers_the_heads_reads(sqlite_ctx: Context) -> None:
    """Plain batches: every read from where the tail began is answered from memory; a merge
    (identify) empties it, and it holds what comes after."""
    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("A").id
    tracks = [message("track", i, None, "a1") for i in range(1, 29)]  # anonymous
    tracks.append(message("track", 29, "u9", "a9"))  # and a user: two people
    for i in range(0, 29, 7):
        ctx.ingest.ingest_sync(ws, tracks[i : i + 7], normalize_segment)
    head = ctx.events.max_seq()
    assert head == 29
    for seq in range(0, head + 1):
        # every read up to a seq it holds (as the reactors read); an open-ended one, when
        # its limit fills before the tail's end (a commit may be on its way to the tail)
        assert same_as_file(ctx.events, seq, 5) >= 12
    assert same_as_file(ctx.events, 0, 5) == 18
    # a merge: the rows before it may now resolve otherwise, so the tail lets them go
    ctx.ingest.ingest_sync(ws, [message("identify", 40, "u9", "a1")], normalize_segment)
    assert same_as_file(ctx.events, 0, 5) == 0
    ctx.ingest.ingest_sync(ws, [message("track", 41, None, "a1")], normalize_segment)
    assert same_as_file(ctx.events, ctx.events.max_seq() - 1, 5) >= 12
    (row,) = ctx.events.events_after(ctx.events.max_seq() - 1, 5, ["person_id"])
    assert row["person_id"] == ctx.persons.by_distinct_id(ws, "u9").id  # type: ignore[union-attr]


def test_a_read_past_what_it_was_told_is_declined() -> None:
    """A commit the tail has not been handed yet: it answers only a read that fills its
    limit before its end, and it keeps to its size."""
    rows = [
        {f.name: None for f in EVENT_SCHEMA}
        | {"seq": s, "type": "track", "name": "x", "workspace_id": "w"}
        for s in range(1, 11)
    ]
    table = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
    tail = LogTail(EVENT_SCHEMA, 0, max_bytes=10**9)
    tail.stored(table.slice(0, 5))
    assert tail.read(0, 3, 9, ["seq"], None) is not None  # 3 rows before seq 5
    assert tail.read(0, 10, 9, ["seq"], None) is None  # rows 6..9 may exist
    assert tail.read(0, 10, 5, ["seq"], None).column("seq").to_pylist() == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    tail.stored(table.slice(3, 7))  # overlaps what it holds: it cannot tell, so it restarts
    assert tail.read(0, 10, 10, ["seq"], None) is None
    assert tail.read(10, 10, 10, ["seq"], None).num_rows == 0  # type: ignore[union-attr]
    one = [pa.Table.from_pylist(rows[i : i + 1], schema=EVENT_SCHEMA) for i in range(10)]
    small = LogTail(EVENT_SCHEMA, 0, max_bytes=5 * one[0].get_total_buffer_size())  # 5 rows
    for t in one:
        small.stored(t)
    assert small.read(5, 10, 10, ["seq"], None) is not None
    assert small.read(0, 10, 10, ["seq"], None) is None


@pytest.mark.parametrize("columns", COLUMNS)
def test_an_empty_answer_has_the_files_shape(
    sqlite_ctx: Context, columns: list[str] | None
) -> None:
    events = sqlite_ctx.events
    held = events._from_tail(0, 5, columns, 0, None)
    assert held is not None and held.num_rows == 0
    assert held.schema.equals(from_file(events, 0, 5, columns, 0, None).schema)


def test_the_last_seq_after_a_batch_ending_in_a_duplicate(sqlite_ctx: Context) -> None:
    """A duplicate takes a seq and is not stored: the last seq is the last stored row's."""
    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("A").id
    first = [message("track", i, "u1", "a1") for i in range(1, 4)]
    ctx.ingest.ingest_sync(ws, first, normalize_segment)
    ctx.ingest.ingest_sync(ws, [message("track", 9, "u1", "a1"), first[0]], normalize_segment)
    with ctx.events.reading() as cur:
        stored = cur.execute("SELECT MAX(seq) FROM events").fetchone()[0]  # type: ignore[index]
    assert ctx.events.max_seq() == stored == 4
