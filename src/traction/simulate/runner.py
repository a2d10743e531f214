"""Feeds the simulated world through the real ingest pipeline, with a progress bar."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from traction.context import Context
from traction.ingest import prepare
from traction.ingest.domain import normalize_segment
from traction.ingest.processes import IngestProcesses
from traction.ingest.service import now_utc
from traction.ops.memory import fewer_collections
from traction.simulate import experiments as sim_exp
from traction.simulate.ahead import AheadJob, run_ahead
from traction.simulate.billing import BillingReplay
from traction.simulate.product import Intent
from traction.simulate.world import SimulationParams, SimulationStats, World, day_start

AHEAD_MIN_PEOPLE = 2_000  # below this a world simulates faster than a process starts


@fewer_collections()
def run_simulation(
    ctx: Context,
    workspace_id: str,
    params: SimulationParams,
    console: Console | None = None,
    chunk: int = 50_000,
    processes: int | None = None,
    ahead: bool | None = None,
) -> SimulationStats:
    """Into a data dir opened here, through the same validation, identity and writer code as
    the API, without HTTP. `ahead`: the days before the first journey or rollout starts are
    simulated, validated and encoded in a process of their own while this one commits them
    (`simulate.ahead`; default: on a machine with two cores or more, for a world big enough
    to pay for starting a process). `processes`: ingest processes that parse, validate and
    encode each later chunk while this one simulates the next and commits (default: the
    setting; 0: none). (Committing on another thread while the next batch is validated was
    measured slower: both halves need the GIL.)"""
    n = ctx.settings.ingest_processes if processes is None else processes
    feed = _Feed(ctx, workspace_id, IngestProcesses(n) if n else None)
    try:
        clocks = _Clocks(
            _RolloutClock(ctx, workspace_id, params), _JourneyClock(ctx, workspace_id, params)
        )
        first = clocks.first_day(params)
        if ahead is None:
            ahead = (os.cpu_count() or 1) > 1 and params.people >= AHEAD_MIN_PEOPLE
        job = None
        if ahead and first > 0:
            job = AheadJob(params, first, chunk, ctx.settings.max_event_bytes, feed.policy)
        billing = _Billing(ctx, workspace_id, params)
        world = simulate_into(feed.send, params, console, chunk, clocks, feed.settle,
                              _Ahead(job, feed, billing) if job else None, billing)  # fmt: skip
        # the schedule caught up to the last purchase (renewals, trial and period ends)
        if feed.send(billing.replay.through(world.product.intents, None)) + feed.settle():
            raise RuntimeError("billing emitted invalid events: a bug in traction.simulate")
    finally:
        feed.close()
    return world.stats


class _Feed:
    """Chunks of simulated messages into the writer, in order. With ingest processes, a chunk
    is parsed, validated and encoded there while this process simulates the next one and
    commits the ones before (the two halves on two cores)."""

    AHEAD = 2  # chunks in the processes at once: enough to keep one busy, bounded memory

    def __init__(self, ctx: Context, workspace_id: str, processes: IngestProcesses | None) -> None:
        self.ctx, self.ws, self.processes = ctx, workspace_id, processes
        self.policy = ctx.ingest.policy(workspace_id)
        self.queued: deque[Future[prepare.Wire]] = deque()
        self.rejected = 0

    def send(self, messages: Sequence[object]) -> int:
        """Queues the chunk (committed in order); returns what was refused so far."""
        if not messages:
            return self._take_rejected()
        if self.processes is None:
            return len(self.ctx.ingest.ingest_sync(self.ws, messages, normalize_segment).rejected)
        job = prepare.SegmentJob(orjson.dumps({"batch": messages}), now_utc(), None,
                                 self.ctx.settings.max_event_bytes, self.policy, False)  # fmt: skip
        self.queued.append(self.processes.submit(prepare.prepare_segment_batch, job))
        while self.queued and (len(self.queued) > self.AHEAD or self.queued[0].done()):
            self._commit_first()
        return self._take_rejected()

    def settle(self) -> int:
        """Commits everything queued, readable in the log (not held while it checkpoints:
        the clocks read it, and the same seed must give the same figures); returns what was
        refused since the last answer."""
        while self.queued:
            self._commit_first()
        self.ctx.events.settle()
        return self._take_rejected()

    def _commit_first(self) -> None:
        p = prepare.from_wire(self.queued.popleft().result())
        self.rejected += len(p.rejected)
        self.commit(p)

    def commit(self, p: prepare.Prepared) -> None:
        if p.rows.num_rows:
            self.ctx.writer.write_prepared(self.ws, p)

    def _take_rejected(self) -> int:
        n, self.rejected = self.rejected, 0
        return n

    def close(self) -> None:
        if self.processes is not None:
            self.processes.close()


class _RolloutClock:
    """Runs the report editor's safe rollout on simulated time, through the real service: it
    starts `rollout_days_before_end` days before the end (if the workspace has the flag), and
    at the start of each later day the events so far are committed, the maintenance check
    runs as of that moment, and the simulated product reads the flags it left."""

    def __init__(self, ctx: Context, workspace_id: str, params: SimulationParams) -> None:
        self.ctx, self.ws = ctx, workspace_id
        names = {f["key"] for f in ctx.flags.flags(workspace_id)}
        running = {e["key"] for e in ctx.experiments.experiments(workspace_id)}
        wanted = sim_exp.EDITOR in names and sim_exp.EDITOR_ROLLOUT_KEY not in running
        self.start = max(0, params.days - params.rollout_days_before_end) if wanted else None

    @property
    def first_day(self) -> int | None:
        return self.start

    def __call__(self, world: World, day: int, flush: Callable[[], None]) -> None:
        if self.start is None or day < self.start or day >= world.p.days:
            return
        flush()
        now = world.time(day, 0)
        clock, self.ctx.flags.now = self.ctx.flags.now, lambda: now
        try:
            if day == self.start:
                self.ctx.experiments.put(
                    self.ws, sim_exp.EDITOR_ROLLOUT_KEY, sim_exp.EDITOR_ROLLOUT
                )
            else:
                self.ctx.experiments.rollouts.check(self.ws, sim_exp.EDITOR_ROLLOUT_KEY, now)
        finally:
            self.ctx.flags.now = clock
        world.live_flags = self.ctx.flags.payload(self.ws, "production").evaluator


class _Billing:
    """After each chunk is sent, the purchases of the days in it go through billing, and the
    events billing emitted follow (see `BillingReplay`)."""

    def __init__(self, ctx: Context, workspace_id: str, params: SimulationParams) -> None:
        self.replay = BillingReplay(ctx.billing, ctx.providers, workspace_id)
        self.params = params

    def __call__(self, intents: Sequence[Intent], days: int) -> list[object]:
        return list(self.replay.through(intents, day_start(self.params, days)))


class _Ahead:
    """The first days, from `simulate.ahead`'s process into the writer (see there)."""

    def __init__(self, job: AheadJob, feed: _Feed, billing: _Billing) -> None:
        self.job, self.feed, self.billing = job, feed, billing
        self.rejected = 0

    @property
    def days(self) -> int:
        return self.job.days

    def run(self, progress: Callable[[int, int], None]) -> tuple[World, int]:
        world, rejected = run_ahead(self.job, self._commit, progress)
        return world, rejected + self.rejected

    def _commit(self, p: prepare.Prepared, intents: list[Intent], days: int) -> None:
        self.feed.commit(p)  # as `simulate_into` sends a chunk, then billing's events
        self.rejected += self.feed.send(self.billing(intents, days))


def simulate_into(
    send: Callable[[list[object]], int],
    params: SimulationParams,
    console: Console | None = None,
    chunk: int = 50_000,
    next_day: Callable[[World, int, Callable[[], None]], None] | None = None,
    settle: Callable[[], int] = lambda: 0,
    ahead: _Ahead | None = None,
    after_chunk: Callable[[Sequence[Intent], int], list[object]] | None = None,
) -> World:
    """Through any sink that answers how many events it refused (the ingest pipeline here,
    or a server's tracking API). Days are sent together up to `chunk` events: each batch
    costs a transaction and an identity flush, so fewer, larger ones go faster. A sink may
    queue what it is sent: `settle` commits what it holds (before a clock reads the state)
    and answers how many of those it refused. `ahead`: the first days, simulated and
    committed elsewhere (no clock may act on them). `after_chunk(purchases so far, days
    sent)`: more messages to send after each chunk (billing's)."""
    rejected = 0
    done = 0  # days simulated
    with Progress(
        TextColumn("[bold]Simulating[/] day {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    ) as bar:
        task = bar.add_task("sim", total=params.days, events=0)
        pending: list[object] = []

        def flush() -> None:
            nonlocal rejected
            if pending:
                rejected += send(pending)
                pending.clear()
                if after_chunk is not None:
                    rejected += send(after_chunk(world.product.intents, done))

        def committed() -> None:
            nonlocal rejected
            flush()
            rejected += settle()

        if ahead is None:
            world, start = World(params), 0
        else:
            world, rejected = ahead.run(lambda d, n: bar.update(task, completed=d, events=n))
            start = done = ahead.days
        if next_day is not None:
            next_day(world, start, committed)
        for d in range(start, params.days):
            pending.extend(world.day(d))
            done = d + 1
            if len(pending) >= chunk:
                flush()
            bar.update(task, advance=1, events=world.stats.events)
            if next_day is not None:
                next_day(world, d + 1, committed)
        committed()
    if rejected:
        raise RuntimeError(
            f"the simulator produced {rejected} invalid events: a bug in traction.simulate"
        )
    return world


class _JourneyClock:
    """Runs the workspace's journeys on simulated time through the real engine: at the start
    of each simulated day the events so far are committed and handed to the journey reactor
    (its cursor is the server's, which carries on from there), inactivity is scanned, due
    steps run, and what was sent that day reaches the simulated people (`World.receive`)."""

    def __init__(self, ctx: Context, workspace_id: str, params: SimulationParams) -> None:
        from traction.engage.reactors import JourneyReactor
        from traction.worker import ReactorRunner

        self.ctx, self.ws = ctx, workspace_id
        self.on = bool(ctx.engage.journeys(workspace_id))
        # journeys are launched this many days before the end: like a real launch, they do not
        # enter people for what happened before (the reactor starts at the log's head)
        self.start = max(1, params.days - params.journeys_days_before_end)
        engine = ctx.engage.engine
        assert engine is not None
        self.reactor = ReactorRunner(ctx.state, ctx.events, [JourneyReactor(engine)], ctx.metrics)
        self.seen = 0  # the last delivery handed to the world

    @property
    def first_day(self) -> int | None:
        return self.start if self.on else None

    def __call__(self, world: World, day: int, flush: Callable[[], None]) -> None:
        if not self.on or day < self.start or day >= world.p.days:
            return
        flush()
        now = world.time(day, 0)
        if day == self.start:
            self.reactor.save(self.reactor.reactors[0].name, self.ctx.events.max_seq())
        self.reactor.run_once()
        self.ctx.engage.scan_inactive(now)
        while self.ctx.engage.work(now):
            pass
        for user, journey, step in self._sent_since():
            world.receive(user, journey, step, day)

    def _sent_since(self) -> list[tuple[str, str, str]]:
        from sqlalchemy import select

        from traction.engage.models import Delivery
        from traction.identity.models import Identity

        with self.ctx.state.session() as s:
            rows = s.execute(select(Delivery.id, Delivery.person_id, Delivery.journey, Delivery.step)
                             .where(Delivery.workspace_id == self.ws, Delivery.id > self.seen,
                                    Delivery.status.in_(("sent", "outbox", "pending")))
                             .order_by(Delivery.id)).all()  # fmt: skip
            if not rows:
                return []
            self.seen = max(r[0] for r in rows)
            users = dict(s.execute(select(Identity.person_id, Identity.distinct_id).where(
                Identity.workspace_id == self.ws, Identity.is_user_id.is_(True),
                Identity.person_id.in_({r[1] for r in rows}))).all())  # fmt: skip
        # in a fixed order: the store's order depends on when system events were committed,
        # and each reaction draws from the world's random stream (same seed, same world)
        return sorted((users[p], j, st) for _, p, j, st in rows if p in users)


class _Clocks:
    def __init__(self, *clocks: _RolloutClock | _JourneyClock) -> None:
        self.clocks = clocks

    def first_day(self, params: SimulationParams) -> int:
        """The first day any of them acts on: the world before it depends on nothing else."""
        return min((c.first_day for c in self.clocks if c.first_day is not None),
                   default=params.days)  # fmt: skip

    def __call__(self, world: World, day: int, flush: Callable[[], None]) -> None:
        for clock in self.clocks:
            clock(world, day, flush)
