"""Reactors in a process of their own, beside the server that owns the event log.

Why: in the embedded shape one interpreter serves the requests, runs the writer and ran the
reactors. Under ingest load the reactors took a third of the throughput (one GIL), while
the machine's second core idled. Here the catalog, `identity.seen` and the meters run in a
child process with an interpreter of its own.

The child cannot open the DuckDB file (one process owns it), so the server serves it the
log: the child asks for the events after its cursor and gets them as Arrow, which DuckDB
builds without the GIL. Turning them into Python objects, the reactors' work and their
StateStore writes all happen over there. The cursors stay in the StateStore, so a crash is
what it was: a child that dies (killed, out of memory) is started again and reads on from
its cursors, and the reactors are idempotent.

What else crosses: the events the meters emit (limit triggers) go to the server's writer;
the reactor lag goes to the server's /metrics; an erasure's catalog update goes to the
child, whose catalog lock and memory of erased people keep it exact against a batch read
before the erasure (as in one process).

The journeys reactor stays in the server: it reads only the events a journey names, and
its engine asks the log questions of its own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from traction.catalog.service import CatalogService
from traction.ops.metrics import Metrics
from traction.store.events import DuckDBEventStore, EventKinds, rows_of
from traction.worker import ReactorRunner

log = logging.getLogger(__name__)

# what runs over there (the reactors of `default_reactors` but the journeys)
MOVED = ("identity.seen", "catalog", "billing.meters")

Emit = Callable[[str, list[dict[str, Any]]], None]


@dataclass(frozen=True)
class ChildConfig:
    state_url: str
    poll_seconds: float
    batch_size: int = 5_000
    log_level: str = "INFO"
    log_json: bool = True
    # the OS gives requests the CPU first: the reactors take what the server leaves
    nice: int = 10
    # a pass over new events starts at most this often (`ReactorRunner.gather_seconds`)
    gather_seconds: float = 0.25


class ReactorProcess:
    """The server's side: starts the child, serves it the log, restarts it if it dies."""

    def __init__(
        self,
        config: ChildConfig,
        events: DuckDBEventStore,
        emit: Emit,
        metrics: Metrics,
        catalog: CatalogService,
    ) -> None:
        """`emit`: where the meters' events go (the server's writer); `catalog`: the
        server's, which sends its erasures here and does them itself while no child runs."""
        self.config = config
        self.events = events
        self.emit = emit
        self.metrics = metrics
        self.catalog = catalog
        self.restarts = 0
        self._backoff = 0.5  # before the next start; doubled while they die young
        self.erasures = 0  # done by the child
        self._stopping = threading.Event()
        self._control_lock = threading.Lock()  # one erasure at a time; not during a restart
        self._process: multiprocessing.process.BaseProcess | None = None
        self._control: Connection | None = None
        self._feed: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self.catalog.elsewhere = self.forget
        self._spawn()

    def _spawn(self) -> None:
        from traction.ingest.processes import no_ctrl_c, no_main_module

        mp = multiprocessing.get_context("spawn")  # not fork: this process has threads
        feed, feed_there = mp.Pipe()
        control, control_there = mp.Pipe()
        process = mp.Process(
            target=_child_main,
            args=(self.config, feed_there, control_there),
            name="traction-reactors",
            daemon=True,  # it goes with the server
        )
        with self._control_lock:
            if self._stopping.is_set():  # (a restart racing the server's stop)
                return
            with no_main_module(), no_ctrl_c():
                process.start()
            feed_there.close()  # (so that its death reads as EOF here)
            control_there.close()
            self._process, self._control = process, control
        self._feed = threading.Thread(
            target=self._serve, args=(process, feed), name="traction-reactor-feed", daemon=True
        )
        self._feed.start()

    def _serve(self, process: multiprocessing.process.BaseProcess, feed: Connection) -> None:
        """Answers the child's requests until it exits; then starts another."""
        started = time.monotonic()
        while True:
            try:
                request = feed.recv()
            except (EOFError, OSError):
                break
            try:
                reply = self._answer(request)
            except Exception as e:  # the child logs it and retries the batch
                log.exception("serving the reactor process failed")
                reply = ("error", f"{type(e).__name__}: {e}")
            if reply is not None:
                try:
                    feed.send(reply)
                except (BrokenPipeError, OSError):
                    break
        feed.close()
        process.join(timeout=5)
        if self._stopping.is_set():
            return
        self.restarts += 1
        self.metrics.reactor_process_restarts.inc()
        # one that dies at once again and again (it cannot import, say) is retried less often
        lived = time.monotonic() - started
        self._backoff = 1.0 if lived > 60 else min(self._backoff * 2, 60.0)
        log.error(
            "the reactor process exited; starting another",
            extra={"exitcode": process.exitcode, "restarts": self.restarts, "in": self._backoff},
        )
        with self._control_lock:
            self._control = None
        if not self._stopping.wait(self._backoff):
            self._spawn()

    def _answer(self, request: tuple[Any, ...]) -> tuple[Any, ...] | None:
        kind = request[0]
        if kind == "head":
            return ("ok", self.events.max_seq())
        if kind == "read":
            _, seq, limit, columns, upto, only = request
            kinds = EventKinds(frozenset(only[0]), frozenset(only[1])) if only else None
            table = self.events.events_after_arrow(seq, limit, columns, upto=upto, only=kinds)
            return ("ok", _to_ipc(table))
        if kind == "emit":
            self.emit(request[1], request[2])
        elif kind == "lag":
            self.metrics.reactor_lag.labels(request[1]).set(request[2])
        else:
            return ("error", f"unknown request {kind!r}")
        return None

    def forget(
        self, workspace_id: str, person_ids: Iterable[str], batch: Sequence[Mapping[str, Any]]
    ) -> None:
        """An erasure's catalog update, done by the child. With no child running (or one
        that dies before answering) nothing else applies batches, so it is done here; a
        child that dies between its commit and its answer would have it done twice (the
        counts come down twice), as a server killed between the two steps of an erasure
        in one process loses the second."""
        pids = sorted(person_ids)
        with self._control_lock:
            control = self._control
            if control is not None:
                try:
                    control.send(("forget", workspace_id, pids, list(batch)))
                    reply = control.recv()
                except (EOFError, OSError):
                    reply = None
                if reply is not None:
                    if reply[0] == "ok":
                        self.erasures += 1
                        return
                    raise RuntimeError(
                        f"the reactor process could not update the catalog: {reply[1]}"
                    )
            self.catalog.forget_here(workspace_id, pids, batch)

    def stop(self, timeout: float = 30.0) -> None:
        with self._control_lock:  # from here on no new process starts
            self._stopping.set()
            control, process = self._control, self._process
            if control is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    control.send(("stop",))
        if process is not None:
            process.join(timeout)  # (a stopped process is waited for: no zombie is left)
            if process.is_alive():
                process.terminate()
                process.join(5)
        if self._feed is not None:
            self._feed.join(timeout=5)
        self.catalog.elsewhere = None


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


# -- the child ------------------------------------------------------------------------------


class _RemoteLog:
    """The two reads a ReactorRunner makes, asked of the server (and what it sends back)."""

    def __init__(self, feed: Connection) -> None:
        self.feed = feed
        self._lock = threading.Lock()
        self.gone: Callable[[], None] = lambda: None  # the server is gone: what to do

    def _ask(self, *request: Any) -> Any:
        with self._lock:
            try:
                self.feed.send(request)
                reply = self.feed.recv()
            except (EOFError, OSError):
                self.gone()
                raise
        if reply[0] != "ok":
            raise RuntimeError(f"the server could not serve the log: {reply[1]}")
        return reply[1]

    def _tell(self, *message: Any) -> None:
        with self._lock:
            try:
                self.feed.send(message)
            except OSError:
                self.gone()
                raise

    def max_seq(self) -> int:
        return int(self._ask("head"))

    def events_after(
        self,
        seq: int,
        limit: int,
        columns: Sequence[str] | None = None,
        *,
        upto: int | None = None,
        only: EventKinds | None = None,
    ) -> list[dict[str, Any]]:
        kinds = (sorted(only.names), sorted(only.types)) if only is not None else None
        cols = list(columns) if columns is not None else None
        data = self._ask("read", seq, limit, cols, upto, kinds)
        return rows_of(pa.ipc.open_stream(data).read_all())

    def emit(self, workspace_id: str, messages: list[dict[str, Any]]) -> None:
        self._tell("emit", workspace_id, messages)


class _ChildRunner(ReactorRunner):
    """Its lag goes to the server's /metrics."""

    remote: _RemoteLog

    def _show_lag(self, reactors: Sequence[Any], pos: dict[str, int], head: int) -> None:
        for reactor in reactors:
            self.remote._tell("lag", reactor.name, max(0, head - pos[reactor.name]))


def _child_main(config: ChildConfig, feed: Connection, control: Connection) -> None:
    import traction.models  # noqa: F401  (every table, for the ORM's foreign keys)
    from traction.billing.service import BillingService
    from traction.identity.queries import AccountQueries
    from traction.ops.logging import configure_logging
    from traction.store.state import StateStore
    from traction.worker import default_reactors

    # Ctrl-C reaches the whole process group: the server stops this process itself, after
    # its own requests, and a KeyboardInterrupt here would only print a traceback. (A
    # process the server started ignores it already: `no_ctrl_c`; one it restarted from
    # its feed thread, from here on.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(config.log_level, json=config.log_json)
    if config.nice:
        os.nice(config.nice)
    state = StateStore(config.state_url)
    remote = _RemoteLog(feed)
    catalog = CatalogService(state)
    billing = BillingService(state, AccountQueries(state).member_count, remote.emit)
    reactors = default_reactors(state, catalog, billing)
    assert tuple(r.name for r in reactors) == MOVED, "MOVED names what runs here"
    # its own interpreter: no GIL to share with requests, so no resting while events arrive
    runner = _ChildRunner(
        state, remote, reactors, Metrics(), batch_size=config.batch_size,
        poll_seconds=config.poll_seconds, gather_seconds=config.gather_seconds,
    )  # fmt: skip
    runner.remote = remote
    remote.gone = runner.stop
    threading.Thread(
        target=_obey, args=(control, catalog, runner), name="control", daemon=True
    ).start()
    try:
        runner._loop()  # until the server says stop, or is gone
    finally:
        billing.close()
        state.dispose()


def _obey(control: Connection, catalog: CatalogService, runner: ReactorRunner) -> None:
    """The server's requests: an erasure's catalog update, or stop."""
    while True:
        try:
            request = control.recv()
        except (EOFError, OSError):
            break
        if request[0] == "stop":
            break
        if request[0] == "forget":
            try:
                catalog.forget_here(request[1], request[2], request[3])
                control.send(("ok",))
            except Exception as e:
                log.exception("an erasure's catalog update failed")
                control.send(("error", f"{type(e).__name__}: {e}"))
    runner.stop()
