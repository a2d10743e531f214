"""The group-commit writer: the only place events become durable.

Requests hand their validated events to `submit` and wait on a future. One thread takes
everything queued, resolves identities, appends one Arrow batch in one DuckDB transaction,
commits the state, and only then completes the futures. So a 2xx always means "on disk",
and a burst of small requests costs one commit, not one each.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from traction.identity.service import IdentityResolver, Resolution
from traction.ingest.domain import CanonicalEvent
from traction.ops.metrics import Metrics
from traction.privacy.domain import Suppressions
from traction.store.events import EVENT_SCHEMA, EventStore
from traction.store.state import StateStore

log = logging.getLogger(__name__)


class WriterOverloaded(RuntimeError):
    """More events are waiting than the writer may hold: the client should retry later."""


class WriterStopped(RuntimeError):
    pass


@dataclass
class _Pending:
    items: Sequence[tuple[str, CanonicalEvent]]
    future: Future[int] = field(default_factory=Future)


def _props(ev: CanonicalEvent) -> dict[str, object]:
    props = ev.properties
    if ev.traits:
        props = {**props, "$traits": ev.traits}
    if ev.type in ("identify", "group") and (ev.traits_set or ev.group_traits):
        props = {**props, "$set": ev.traits_set or ev.group_traits}
    return props


def build_table(
    items: Sequence[tuple[str, CanonicalEvent]], res: Resolution, first_seq: int
) -> pa.Table:
    """Canonical events + their resolved people -> one Arrow table in the EventStore schema.
    Column by column: a list comprehension per column is several times faster than appends."""
    dumps = orjson.dumps
    evs = [ev for _, ev in items]
    cols: dict[str, list[object]] = {
        "workspace_id": [ws for ws, _ in items],
        "event_id": [e.event_id for e in evs],
        "seq": list(range(first_seq, first_seq + len(evs))),
        "type": [e.type for e in evs],
        "name": [e.name for e in evs],
        "timestamp": [e.timestamp for e in evs],
        "original_timestamp": [e.original_timestamp for e in evs],
        "sent_at": [e.sent_at for e in evs],
        "received_at": [e.received_at for e in evs],
        "anonymous_id": [e.anonymous_id for e in evs],
        "user_id": [e.user_id for e in evs],
        "distinct_id": [e.user_id or e.anonymous_id for e in evs],
        "person_id": list(res.person_ids),
        "account_id": list(res.account_ids),
        "properties": [dumps(_props(e)).decode() for e in evs],
        "context": [dumps(e.context).decode() for e in evs],
    }
    return pa.table(cols, schema=EVENT_SCHEMA)


class EventWriter:
    def __init__(
        self,
        state: StateStore,
        events: EventStore,
        metrics: Metrics,
        *,
        max_group_events: int = 20_000,
        max_pending_events: int = 500_000,
    ) -> None:
        self.state = state
        self.events = events
        self.metrics = metrics
        self.resolver = IdentityResolver()
        self.max_group_events = max_group_events
        self.max_pending_events = max_pending_events
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._pending_events = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._commit_lock = threading.Lock()  # the thread and write_now() never interleave
        self._next_seq = events.max_seq() + 1
        self.last_commit_ok = True
        # ids of erased people: their late events are dropped here, inside the commit, so an
        # erasure (which holds the commit) and a queued event cannot cross
        self.suppressed = Suppressions()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No commit runs meanwhile (queued events wait, none is lost); identities cached
        from before are forgotten afterwards, since what happened meanwhile may void them."""
        with self._commit_lock:
            try:
                yield
            finally:
                self.resolver.forget()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traction-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, items: Sequence[tuple[str, CanonicalEvent]]) -> Future[int]:
        """Queue events for the next commit; the future gives how many were new (not duplicates)."""
        if self._stopping:
            raise WriterStopped("the server is shutting down")
        with self._lock:
            if self._pending_events + len(items) > self.max_pending_events:
                raise WriterOverloaded("ingest queue is full")
            self._pending_events += len(items)
        p = _Pending(items)
        self._queue.put(p)
        self.metrics.queue_events.set(self._pending_events)
        return p.future

    def write_now(self, items: Sequence[tuple[str, CanonicalEvent]]) -> int:
        """Synchronous commit, for importers and tests that run without the thread."""
        p = _Pending(items)
        self._commit([p])
        return p.future.result()

    def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._stopping = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)

    def _run(self) -> None:
        # pyarrow imports pandas on its first conversion (~0.5 s): done now, not in the
        # first request's commit
        pa.table({"seq": [0]})
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            n = len(first.items)
            stop = False
            while n < self.max_group_events:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                n += len(nxt.items)
            self._commit(group)
            with self._lock:
                self._pending_events -= n
            self.metrics.queue_events.set(self._pending_events)
            if stop:
                return

    def _commit(self, group: list[_Pending]) -> None:
        with self._commit_lock:
            self._commit_locked(group)

    def _commit_locked(self, group: list[_Pending]) -> None:
        start = time.perf_counter()
        # One row per (workspace, event id) in a group; the first wins, as the store's would.
        unique: dict[tuple[str, str], tuple[str, CanonicalEvent]] = {}
        for p in group:
            for item in p.items:
                unique.setdefault((item[0], item[1].event_id), item)
        items = list(unique.values())
        dropped = 0
        if self.suppressed:
            kept = [
                it
                for it in items
                if not self.suppressed.blocks(it[0], (it[1].anonymous_id, it[1].user_id))
            ]
            dropped = len(items) - len(kept)
            self.metrics.events.labels("suppressed").inc(dropped)
            items = kept
        try:
            inserted = self._commit_items(items)
        except Exception as e:
            self.last_commit_ok = False
            log.exception("commit failed", extra={"events": len(items)})
            for p in group:
                p.future.set_exception(e)
            return
        self.last_commit_ok = True
        total = sum(len(p.items) for p in group)
        self.metrics.events.labels("stored").inc(inserted)
        self.metrics.events.labels("duplicate").inc(total - inserted - dropped)
        self.metrics.commit_seconds.observe(time.perf_counter() - start)
        self.metrics.commit_events.observe(total)
        for p in group:
            p.future.set_result(len(p.items))

    def _commit_items(self, items: list[tuple[str, CanonicalEvent]]) -> int:
        if not items:
            return 0
        for attempt in (1, 2):
            try:
                with self.state.session() as session:
                    res = self.resolver.resolve(session, items)
                    if res.refused:
                        self.metrics.merges_refused.inc(res.refused)
                    table = build_table(items, res, self._next_seq)
                    self._next_seq += len(items)
                    # Events first: if the state commit then fails, the retry finds them as
                    # duplicates and redoes the (deterministic, idempotent) identity work.
                    inserted = self.events.append(table, res.merges, res.traits)
                self.resolver.remember(res)  # only now is it all committed
                return inserted
            except Exception:
                self.resolver.forget()
                if attempt == 2:
                    raise
                # Another replica may have created the same identities: one retry sees them.
                log.warning("commit group retried", exc_info=True)
        return 0
