"""Reactors: what the system does with each new batch of stored events.

Each reactor reads the event log in `seq` order from its own durable cursor, so a crash
between a commit and a hand-off loses nothing: at worst a batch is delivered twice, which
is why reactors must be idempotent (keyed by event id or by monotone updates).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from traction.ops.metrics import Metrics
from traction.store.events import EventFeed, EventKinds
from traction.store.models import ReactorCursor
from traction.store.state import StateStore, utcnow

if TYPE_CHECKING:
    from traction.billing.service import BillingService
    from traction.catalog.service import CatalogService
    from traction.engage.runs import RunEngine

log = logging.getLogger(__name__)


class Reactor(Protocol):
    name: str

    @property
    def columns(self) -> Sequence[str] | None:
        """The event columns it reads (None: whole rows). Fewer columns, cheaper delivery."""

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        """Called with events in `seq` order, possibly again after a crash."""


def default_reactors(
    state: StateStore,
    catalog: CatalogService | None = None,
    billing: BillingService | None = None,
    journeys: RunEngine | None = None,
) -> list[Reactor]:
    """`catalog`: the server's own, so an erasure and the catalog's updates share one lock;
    `billing`: the server's, for the meters (none: no meter reactor); `journeys`: the
    engagement engine (none: nobody enters journeys)."""
    from traction.billing.reactors import MeterReactor
    from traction.catalog.reactors import CatalogReactor
    from traction.catalog.service import CatalogService
    from traction.identity.reactors import SeenReactor

    reactors: list[Reactor] = [SeenReactor(state), CatalogReactor(catalog or CatalogService(state))]
    if billing is not None:
        reactors.append(MeterReactor(billing))
    if journeys is not None:
        from traction.engage.reactors import JourneyReactor

        reactors.append(JourneyReactor(journeys))
    return reactors


def _union(reactors: Sequence[Reactor]) -> list[str] | None:
    """The columns a shared read must fetch: all of them if one reactor wants whole rows."""
    columns: dict[str, None] = {}
    for reactor in reactors:
        if reactor.columns is None:
            return None
        columns.update(dict.fromkeys(reactor.columns))
    return list(columns)


def _kinds(reactors: Sequence[Reactor]) -> EventKinds | None:
    """The events a shared read must fetch: every one if a reactor does not say which it
    acts on (a reactor may: a `wants()` answering `EventKinds`, asked before each read)."""
    kinds = EventKinds()
    for reactor in reactors:
        wants = getattr(reactor, "wants", None)
        if wants is None:
            return None
        kinds |= wants()
    return kinds


class ReactorRunner:
    def __init__(
        self,
        state: StateStore,
        events: EventFeed,
        reactors: Sequence[Reactor],
        metrics: Metrics,
        *,
        batch_size: int = 5_000,
        poll_seconds: float = 0.5,
        busy_share: float = 1.0,
        gather_seconds: float = 0.0,
    ) -> None:
        """`busy_share`: while events keep arriving, the share of the time the reactors may
        work (they rest the remainder after each batch), so that acknowledging events goes
        first on a busy server; they catch up when it is quiet.

        `gather_seconds`: a pass that found events is followed by the next no sooner than
        this after it began. Each pass has costs that do not grow with its events (a read
        of the log, a cursor write a reactor, a statement or two each); under a steady
        load a runner that never rests pays them for every commit group of a few hundred
        events, and with this for a fraction of a second's events. The reactors' lag grows
        by up to this much."""
        self.state = state
        self.events = events
        self.reactors = list(reactors)
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.busy_share = busy_share
        self.gather_seconds = gather_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def position(self, name: str) -> int:
        with self.state.session() as s:
            row = s.get(ReactorCursor, name)
            return row.position if row else 0

    def save(self, name: str, position: int) -> None:
        """Moves a reactor's cursor (a reactor started on a log's head skips its history)."""
        self._save(name, position)

    def _save(self, name: str, position: int) -> None:
        with self.state.session() as s:
            row = s.scalars(select(ReactorCursor).where(ReactorCursor.name == name)).first()
            if row is None:
                s.add(ReactorCursor(name=name, position=position))
            else:
                row.position = position
                row.updated_at = utcnow()

    def run_once(self) -> int:
        """Hand every reactor what it has not seen yet; returns how many events were delivered
        (summed over reactors). Reactors at the same cursor share one read of the log (the
        union of their columns, the JSON parsed once): reading is most of a reactor's cost.
        A batch stops at the next reactor's cursor, so cursors that differ soon meet."""
        delivered = 0
        head = self.events.max_seq()
        pos = {r.name: self.position(r.name) for r in self.reactors}
        failed: set[str] = set()
        while not self._stop.is_set():
            behind = [r for r in self.reactors if r.name not in failed and pos[r.name] < head]
            if not behind:
                break
            low = min(pos[r.name] for r in behind)
            group = [r for r in behind if pos[r.name] == low]
            upto = min((pos[r.name] for r in behind if pos[r.name] > low), default=head)
            started = time.perf_counter()
            batch = self.events.events_after(
                low, self.batch_size, _union(group), upto=upto, only=_kinds(group)
            )
            # an empty read: only gaps in seq (duplicates take a number) up to `upto`
            end = int(batch[-1]["seq"]) if batch else upto
            for reactor in group:
                if batch:
                    try:
                        reactor.handle(batch)
                    except Exception:
                        log.exception(
                            "reactor failed; will retry the batch", extra={"reactor": reactor.name}
                        )
                        failed.add(reactor.name)
                        continue
                pos[reactor.name] = end
                self._save(reactor.name, end)
                delivered += len(batch)
            current = self.events.max_seq()
            self._show_lag(group, pos, current)  # as the pass goes, not only at its end
            if self.busy_share < 1 and current > head:  # events keep coming
                worked = time.perf_counter() - started
                self._stop.wait(worked * (1 - self.busy_share) / self.busy_share)
        self._show_lag(self.reactors, pos, self.events.max_seq())
        return delivered

    def _show_lag(self, reactors: Sequence[Reactor], pos: dict[str, int], head: int) -> None:
        for reactor in reactors:
            self.metrics.reactor_lag.labels(reactor.name).set(max(0, head - pos[reactor.name]))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="traction-reactors", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self.run_once() == 0:
                    self._stop.wait(self.poll_seconds)
                elif self.gather_seconds:
                    self._stop.wait(max(0.0, self.gather_seconds - (time.monotonic() - started)))
            except Exception:
                log.exception("reactor loop error")
                self._stop.wait(self.poll_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# -- scheduled jobs ------------------------------------------------------------------------
# Privacy (retention, then a purge when something was deleted) hourly; billing (renewals,
# trial ends, scheduled downgrades and cancellations) every minute. A thread, like the
# reactors: in the embedded shape the server owns the event file, so the work that rewrites
# it runs in the server.

Job = tuple[str, float, Callable[[], object]]  # name, every how many seconds, what


class Maintenance:
    def __init__(self, jobs: list[Job], *, first_at_start: bool = False) -> None:
        """`first_at_start`: run each job once as the loop starts, then every interval."""
        self.jobs = [j for j in jobs if j[1] > 0]
        self.first_at_start = first_at_start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.jobs:
            return
        self._thread = threading.Thread(target=self._run, name="traction-maintenance", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lag = 0.0 if self.first_at_start else 1.0
        due = {name: time.monotonic() + every * lag for name, every, _ in self.jobs}
        while not self._stop.wait(min(max(0.0, min(due.values()) - time.monotonic()), 60.0)):
            for name, every, job in self.jobs:
                if time.monotonic() < due[name]:
                    continue
                due[name] = time.monotonic() + every
                try:
                    job()
                except Exception:  # logged; the next round tries again
                    log.exception("maintenance job failed", extra={"job": name})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
