"""Reactors see every stored event, in order, from a durable cursor; redelivery is harmless."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.store.events import EventKinds
from traction.worker import ReactorRunner, default_reactors


class Recorder:
    name = "test.recorder"
    columns = ("event_id",)

    def __init__(self, fail_first: bool = False) -> None:
        self.seen: list[str] = []
        self.fail_first = fail_first

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("boom")
        self.seen.extend(e["event_id"] for e in batch)


def send(ctx: Context, ws: str, ids: list[str], ts: str = "2026-01-01T00:00:00Z") -> None:
    ctx.ingest.ingest_sync(
        ws,
        [
            {"type": "track", "userId": "u", "event": "x", "messageId": i, "timestamp": ts}
            for i in ids
        ],
        normalize_segment,
    )


def test_every_event_once_in_order_and_cursor_survives(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, ["a", "b", "c"])
    rec = Recorder(fail_first=True)
    runner = ReactorRunner(ctx.state, ctx.events, [rec], ctx.metrics, batch_size=2)
    assert runner.run_once() == 0  # the reactor failed: nothing acknowledged, retried next time
    assert runner.run_once() == 3
    assert rec.seen == ["a", "b", "c"]
    send(ctx, ws, ["d", "c"])  # c is a duplicate: not stored, not delivered again
    fresh = Recorder()
    again = ReactorRunner(ctx.state, ctx.events, [fresh], ctx.metrics)
    fresh.name = rec.name  # same cursor, as after a restart
    assert again.run_once() == 1 and fresh.seen == ["d"]
    assert runner.position(rec.name) == ctx.events.max_seq()


class CountingReads:
    """The real event store, counting the runner's reads of the log."""

    def __init__(self, events: Any) -> None:
        self.events, self.reads = events, 0

    def max_seq(self) -> int:
        return int(self.events.max_seq())

    def events_after(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        self.reads += 1
        return list(self.events.events_after(*args, **kwargs))


def test_reactors_at_one_cursor_share_each_read_and_cursors_meet(ctx: Context) -> None:
    """Three reactors (one wants whole rows, one is three events ahead, one fails once) each
    get every event once, in order, from their own cursor; those at the same cursor share a
    read, and a batch ends at the next cursor so the one behind catches up and joins them."""
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, [f"e{i}" for i in range(10)])
    everything = [f"e{i}" for i in range(10)]
    a, b, c, d = Recorder(), Recorder(), Recorder(), Recorder(fail_first=True)
    b.name, c.name, d.name = "test.ahead", "test.rows", "test.flaky"
    c.columns = None  # type: ignore[assignment]
    store = CountingReads(ctx.events)
    runner = ReactorRunner(ctx.state, store, [a, b, c, d], ctx.metrics, batch_size=4)  # type: ignore[arg-type]
    runner.save(b.name, 3)  # b has seen seq 1..3
    assert runner.run_once() == 10 + 7 + 10  # d failed its first batch: retried next time
    assert a.seen == everything and c.seen == everything and b.seen == everything[3:]
    assert d.seen == []
    # a, c, d read seq 1..3 together (stopping at b's cursor), then all four 4..7 and 8..10
    assert store.reads == 3
    assert runner.run_once() == 10 and d.seen == everything
    assert store.reads == 3 + 3
    assert {runner.position(r.name) for r in (a, b, c, d)} == {ctx.events.max_seq()}


def test_last_seen_is_a_max_so_redelivery_is_harmless(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, ["late"], "2026-02-01T00:00:00Z")
    send(ctx, ws, ["early"], "2026-01-01T00:00:00Z")
    runner = ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state), ctx.metrics)
    runner.run_once()
    batch = ctx.events.events_after(0, 100)
    for r in runner.reactors:
        r.handle(batch)  # delivered twice
        r.handle(list(reversed(batch)))
    person = ctx.persons.by_distinct_id(ws, "u")
    assert person is not None and person.last_seen_at == datetime(2026, 2, 1)


def _visit(anon: str, user: str, day: int, kind: str = "track") -> dict[str, Any]:
    ts = f"2026-01-{day:02d}T12:00:00Z"
    if kind == "identify":
        return {"type": "identify", "userId": user, "anonymousId": anon, "timestamp": ts}
    if kind == "anon":
        return {"type": "page", "anonymousId": anon, "timestamp": ts}
    return {"type": "track", "userId": user, "event": "x", "timestamp": ts}


def test_first_and_last_seen_hold_whatever_the_delivery_order(ctx: Context) -> None:
    """Each person: anonymous visits, an identify, identified events, on known days. Whatever
    the order and grouping of delivery, and reactors interleaved with merges, first_seen_at is
    the earliest event of the person after merges, last_seen_at the latest."""
    import random

    people = {
        # user: (anonymous days, identify day, identified days)
        "ann": ([3, 9], 10, [11, 20]),
        "bob": ([], 5, [2, 6]),  # an event from before the identify arrives late
        "cyd": ([1], 14, []),
    }
    for seed in range(4):
        rnd = random.Random(seed)
        ws = ctx.workspaces.create_workspace(f"shuffle {seed}").id
        messages = []
        for user, (anon_days, identify_day, days) in people.items():
            anon = f"anon-{user}"
            messages += [_visit(anon, user, d, "anon") for d in anon_days]
            messages.append(_visit(anon, user, identify_day, "identify"))
            messages += [_visit(anon, user, d) for d in days]
        rnd.shuffle(messages)
        runner = ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state), ctx.metrics)
        i = 0
        while i < len(messages):
            n = rnd.randint(1, 3)
            ctx.ingest.ingest_sync(ws, messages[i : i + n], normalize_segment)
            if rnd.random() < 0.5:
                runner.run_once()
            i += n
        runner.run_once()
        for user, (anon_days, identify_day, days) in people.items():
            all_days = [*anon_days, identify_day, *days]
            person = ctx.persons.by_distinct_id(ws, user)
            assert person is not None
            assert person.first_seen_at == datetime(2026, 1, min(all_days), 12), (seed, user)
            assert person.last_seen_at == datetime(2026, 1, max(all_days), 12), (seed, user)


def test_reactors_rest_while_events_keep_arriving(ctx: Context) -> None:
    """With `busy_share=0.5`, after each batch the reactors rest as long as they worked, as
    long as new events keep coming (the acknowledgement path goes first); they still see
    every event, in order."""
    import time

    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, ["a", "b", "c"])

    class Busy(Recorder):
        def handle(self, batch: Sequence[dict[str, Any]]) -> None:
            time.sleep(0.2)
            super().handle(batch)
            send(ctx, ws, [f"late-{self.name}-{batch[-1]['event_id']}"])  # traffic goes on

    def run(share: float) -> tuple[float, list[str]]:
        busy = Busy()
        busy.name = f"test.share-{share}"
        runner = ReactorRunner(ctx.state, ctx.events, [busy], ctx.metrics, batch_size=1,
                               busy_share=share)  # fmt: skip
        runner.save(busy.name, ctx.events.max_seq() - 3)  # each run: the last three events
        started = time.perf_counter()
        runner.run_once()
        return time.perf_counter() - started, busy.seen

    full, seen_full = run(1.0)
    assert seen_full == ["a", "b", "c"]
    # the lag shown is against the log as it is now: the three events sent meanwhile
    lag = ctx.metrics.registry.get_sample_value(
        "traction_reactor_lag_events", {"reactor": "test.share-1.0"}
    )
    assert lag == 3
    half, seen_half = run(0.5)
    assert seen_half == [f"late-test.share-1.0-{e}" for e in "abc"]  # every one, in order
    assert half - full >= 0.8 * 3 * 0.2  # rested about as long as it worked, batch by batch


def test_under_a_steady_load_a_pass_gathers_what_came_meanwhile(sqlite_ctx: Context) -> None:
    """With `gather_seconds`, a runner that found events starts its next pass no sooner
    than that after the last began: events committed every 10 ms reach it in a few large
    batches, not one per commit; every one, in order."""
    import time

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("A").id

    class Sizes(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def handle(self, batch: Sequence[dict[str, Any]]) -> None:
            self.sizes.append(len(batch))
            super().handle(batch)

    def batches(gather: float) -> list[int]:
        rec = Sizes()
        rec.name = f"test.gather-{gather}"
        runner = ReactorRunner(ctx.state, ctx.events, [rec], ctx.metrics, poll_seconds=0.01,
                               gather_seconds=gather)  # fmt: skip
        runner.save(rec.name, ctx.events.max_seq())
        runner.start()
        ids = [f"{gather}-{i}" for i in range(60)]
        for i in range(0, 60, 2):  # 30 commits over ~0.6 s
            send(ctx, ws, ids[i : i + 2])
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        while len(rec.seen) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        runner.stop()
        assert rec.seen == ids
        return rec.sizes

    assert len(batches(0.0)) >= 15  # (about one a commit)
    assert len(batches(0.3)) <= 5


class Picky(Recorder):
    """A reactor that says which events it acts on."""

    name = "test.picky"
    columns = ("event_id", "name", "type")

    def wants(self) -> EventKinds:
        return EventKinds(frozenset({"buy"}), frozenset({"identify"}))


def test_a_reactor_reads_only_the_events_it_acts_on_and_still_reaches_the_head(
    ctx: Context,
) -> None:
    """Alone, a reactor that names its events gets those only (in order, in batches), and its
    cursor still reaches the head; sharing a read with one that wants everything, both get
    everything (a reactor checks what it is handed in any case)."""
    ws = ctx.workspaces.create_workspace("A").id
    msgs: list[dict[str, Any]] = []
    for i in range(12):
        kind = ["view", "buy", "view", "identify"][i % 4]
        msgs.append({"type": "identify", "userId": f"u{i}", "messageId": f"e{i}"} if kind == "identify"
                    else {"type": "track", "userId": f"u{i}", "event": kind, "messageId": f"e{i}"})  # fmt: skip
    msgs.append({"type": "page", "anonymousId": "a", "name": "buy", "messageId": "page"})
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    picky = Picky()
    runner = ReactorRunner(ctx.state, ctx.events, [picky], ctx.metrics, batch_size=2)
    runner.run_once()
    wanted = [f"e{i}" for i in range(12) if i % 4 in (1, 3)] + ["page"]  # a page named "buy" too
    assert picky.seen == wanted
    assert runner.position(picky.name) == ctx.events.max_seq()
    shared, other = Picky(), Recorder()
    shared.name, other.name = "test.picky2", "test.all"
    ReactorRunner(ctx.state, ctx.events, [shared, other], ctx.metrics, batch_size=5).run_once()
    assert shared.seen == other.seen == [m["messageId"] for m in msgs]


def test_seen_times_keep_their_microseconds_in_any_delivery_order(ctx: Context) -> None:
    """Spans go to the database as JSON text (microseconds only when there are any) and are
    compared there: whole seconds and microseconds must order as the datetimes do."""
    from itertools import permutations

    from traction.identity.reactors import SeenReactor

    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, ["first"], "2026-01-01T10:00:00.500000Z")
    person = ctx.persons.by_distinct_id(ws, "u")
    assert person is not None
    times = [
        datetime(2026, 1, 1, 10, 0, 0),
        datetime(2026, 1, 1, 10, 0, 0, 1),
        datetime(2026, 1, 1, 9, 59, 59, 999999),
        datetime(2026, 1, 1, 10, 0, 1),
        datetime(2026, 1, 1, 10, 0, 0, 999999),
    ]
    reactor = SeenReactor(ctx.state)
    for order in list(permutations(times))[::17]:
        for ts in order:  # one delivery each: every comparison is against stored text
            reactor.handle([{"person_id": person.id, "timestamp": ts}])
    seen = ctx.persons.by_distinct_id(ws, "u")
    assert seen is not None
    assert seen.first_seen_at == datetime(2026, 1, 1, 9, 59, 59, 999999)
    assert seen.last_seen_at == datetime(2026, 1, 1, 10, 0, 1)
    # and from whole seconds upwards: the .000000 a whole second is stored with matters
    send(ctx, ws, ["second"], "2026-01-02T08:00:00Z")
    other = ctx.persons.by_distinct_id(ws, "u")
    assert other is not None
    reactor.handle([{"person_id": other.id, "timestamp": datetime(2026, 1, 1, 9, 59, 59)}])
    reactor.handle([{"person_id": other.id, "timestamp": datetime(2026, 1, 1, 9, 59, 59, 1)}])
    final = ctx.persons.by_distinct_id(ws, "u")
    assert final is not None and final.first_seen_at == datetime(2026, 1, 1, 9, 59, 59)
    if ctx.state.engine.dialect.name == "sqlite":  # stored in SQLAlchemy's own text format
        from sqlalchemy import text

        with ctx.state.engine.connect() as c:
            raw = c.execute(
                text("SELECT first_seen_at, last_seen_at FROM persons WHERE id = :id"),
                {"id": final.id},
            ).one()
        assert tuple(raw) == ("2026-01-01 09:59:59.000000", "2026-01-01 10:00:01.000000")
