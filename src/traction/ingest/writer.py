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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
from sqlalchemy.orm import Session

from traction.identity.service import IdentityResolver, Resolution
from traction.ingest.domain import CanonicalEvent
from traction.ingest.prepare import Prepared, encode, identity_events
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
    """One request's events: canonical events (`items`, encoded at commit), or rows already
    encoded (`prepared`, by the request loop or an ingest process, for `workspace_id`)."""

    items: Sequence[tuple[str, CanonicalEvent]] = ()
    prepared: Prepared | None = None
    workspace_id: str = ""
    future: Future[int] = field(default_factory=Future)

    @property
    def size(self) -> int:
        return len(self.items) if self.prepared is None else self.prepared.rows.num_rows

    def events(self) -> Sequence[tuple[str, CanonicalEvent]]:
        """The events, also of prepared rows (what identity needs, rebuilt from the rows
        only when a commit cannot resolve them off the columns)."""
        if self.prepared is not None and not self.items:
            self.items = [
                (self.workspace_id, ev)
                for ev in identity_events(self.prepared.rows, self.prepared.extras)
            ]
        return self.items


def _rows(group: Sequence[_Pending]) -> pa.Table:
    """The group's rows in item order: encoded ones as they came, the others encoded here
    (consecutive ones together: a table per small request costs more than one per group)."""
    tables: list[pa.Table] = []
    run: list[CanonicalEvent] = []
    for p in group:
        if p.prepared is None:
            run.extend(ev for _, ev in p.items)
            continue
        if run:
            tables.append(encode(run))
            run = []
        tables.append(p.prepared.rows)
    if run or not tables:
        tables.append(encode(run))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


@dataclass
class _Plan:
    """What one commit stores: the rows (one per workspace and event id), each row's
    workspace, how identity resolves them, and how many events were dropped as erased."""

    workspaces: list[str]
    rows: pa.Table
    resolve: Callable[[Session], Resolution]
    dropped: int = 0


def _by_columns(
    group: Sequence[_Pending], rows: pa.Table, resolver: IdentityResolver
) -> _Plan | None:
    """The plan of a group of prepared rows that holds no event id twice and no identity
    change beyond the account an event names: identity is resolved off the rows' columns
    (`resolve_cached`), with no event object each. None for any other group."""
    hints: dict[int, str] = {}
    workspaces: list[str] = []
    for p in group:
        if p.prepared is None:
            return None
        base = len(workspaces)
        for i, extra in p.prepared.extras.items():
            if any(extra[:-1]):  # traits, an alias or a group call
                return None
            if extra[-1]:
                hints[base + i] = extra[-1]
        workspaces += [p.workspace_id] * p.prepared.rows.num_rows
    ids = rows.column("event_id").to_pylist()
    if len(set(ids)) < len(ids) and len(set(zip(workspaces, ids, strict=True))) < len(ids):
        return None
    types, users, anons = (rows.column(n).to_pylist() for n in ("type", "user_id", "anonymous_id"))

    def resolve(session: Session) -> Resolution:
        return resolver.resolve_cached(session, workspaces, types, users, anons, hints) or (
            resolver.resolve(session, [it for p in group for it in p.events()])
        )

    return _Plan(workspaces, rows, resolve)


def build_table(
    workspaces: Sequence[str], rows: pa.Table, res: Resolution, first_seq: int
) -> pa.Table:
    """Encoded rows + what only the writer knows (workspace, sequence, person, account) ->
    one Arrow table in the EventStore schema."""
    n = len(workspaces)
    filled = {
        "workspace_id": pa.array(workspaces, pa.string()),
        "seq": pa.array(range(first_seq, first_seq + n), pa.int64()),
        "person_id": pa.array(res.person_ids, pa.string()),
        "account_id": pa.array(res.account_ids, pa.string()),
    }
    return pa.table(
        [filled[f.name] if f.name in filled else rows.column(f.name) for f in EVENT_SCHEMA],
        schema=EVENT_SCHEMA,
    )


class EventWriter:
    def __init__(
        self,
        state: StateStore,
        events: EventStore,
        metrics: Metrics,
        *,
        max_group_events: int = 20_000,
        max_pending_events: int = 500_000,
        linger_seconds: float = 0.003,
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
        # Requests being validated (the request loop counts them): a group waits up to
        # `linger_seconds` for them, as each group pays a fixed cost (a DuckDB statement
        # and an fsync, ~8 ms here) whatever its size. Nobody validating: no wait.
        self.arriving = 0
        self.linger_seconds = linger_seconds
        self._last_submit = float("-inf")
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
        return self._enqueue(_Pending(items))

    def submit_prepared(self, workspace_id: str, prepared: Prepared) -> Future[int]:
        """Queue rows already encoded (by the request loop or an ingest process)."""
        return self._enqueue(_Pending(prepared=prepared, workspace_id=workspace_id))

    def _enqueue(self, p: _Pending) -> Future[int]:
        if self._stopping:
            raise WriterStopped("the server is shutting down")
        with self._lock:
            if self._pending_events + p.size > self.max_pending_events:
                raise WriterOverloaded("ingest queue is full")
            self._pending_events += p.size
        self._last_submit = time.monotonic()
        self._queue.put(p)
        self.metrics.queue_events.set(self._pending_events)
        return p.future

    def idle(self, quiet_seconds: float = 2.0) -> bool:
        """No events waiting, and none submitted for `quiet_seconds`."""
        return not self._pending_events and time.monotonic() - self._last_submit > quiet_seconds

    def write_now(self, items: Sequence[tuple[str, CanonicalEvent]]) -> int:
        """Synchronous commit, for importers and tests that run without the thread."""
        return self._write_now(_Pending(items))

    def write_prepared(self, workspace_id: str, prepared: Prepared) -> int:
        """`submit_prepared`, committed now (the demo build)."""
        return self._write_now(_Pending(prepared=prepared, workspace_id=workspace_id))

    def _write_now(self, p: _Pending) -> int:
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
            n = first.size
            stop = False
            deadline = time.monotonic() + self.linger_seconds
            while n < self.max_group_events:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if self.arriving <= 0 or wait <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=wait)
                    except queue.Empty:
                        break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                n += nxt.size
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
        rows = _rows(group)
        plan = None if self.suppressed else _by_columns(group, rows, self.resolver)
        if plan is None:
            plan = self._by_events(group, rows)
        try:
            inserted = self._commit_plan(plan)
        except Exception as e:
            self.last_commit_ok = False
            log.exception("commit failed", extra={"events": rows.num_rows})
            for p in group:
                p.future.set_exception(e)
            return
        self.last_commit_ok = True
        total = sum(p.size for p in group)
        self.metrics.events.labels("stored").inc(inserted)
        self.metrics.events.labels("duplicate").inc(total - inserted - plan.dropped)
        self.metrics.commit_seconds.observe(time.perf_counter() - start)
        self.metrics.commit_events.observe(total)
        for p in group:
            p.future.set_result(p.size)

    def _by_events(self, group: list[_Pending], rows: pa.Table) -> _Plan:
        """The plan of any group, read off its events: one row per (workspace, event id),
        the first winning as the store's key would; erased people's late events dropped."""
        items = [it for p in group for it in p.events()]
        keep: dict[tuple[str, str], int] = {}
        for i, (ws, ev) in enumerate(items):
            keep.setdefault((ws, ev.event_id), i)
        kept = list(keep.values())
        dropped = 0
        if self.suppressed:
            unblocked = [
                i
                for i in kept
                if not self.suppressed.blocks(items[i][0], (items[i][1].anonymous_id, items[i][1].user_id))
            ]  # fmt: skip
            dropped = len(kept) - len(unblocked)
            self.metrics.events.labels("suppressed").inc(dropped)
            kept = unblocked
        if len(kept) < len(items):
            items = [items[i] for i in kept]
            rows = rows.take(pa.array(kept, pa.int64()))
        resolver = self.resolver
        return _Plan(
            [ws for ws, _ in items], rows, lambda session: resolver.resolve(session, items), dropped
        )

    def _commit_plan(self, plan: _Plan) -> int:
        if not plan.workspaces:
            return 0
        for attempt in (1, 2):
            try:
                with self.state.session() as session:
                    res = plan.resolve(session)
                    if res.refused:
                        self.metrics.merges_refused.inc(res.refused)
                    table = build_table(plan.workspaces, plan.rows, res, self._next_seq)
                    self._next_seq += len(plan.workspaces)
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
