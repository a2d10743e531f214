"""Ingest processes: where request bodies are parsed, validated and encoded, beside the one
process that owns the event log.

Why a pool the server owns rather than servers of their own: the DuckDB file has one writer,
and a 2xx must mean "committed", so every request ends in this process's writer anyway; what
moves out is the per-event Python before it (about half of the time one interpreter spent
per event). The processes start on the first request that could use them, which is served
here meanwhile, so a server that never ingests (or a test) pays nothing for them.

A process that dies (killed, out of memory) fails the requests it held with a 503 and is
replaced: nothing was acknowledged for them, so the clients' retries lose nothing.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from prometheus_client import Gauge

from traction.ingest import prepare

log = logging.getLogger(__name__)


class IngestProcessDied(RuntimeError):
    """The process preparing a request died: nothing of it was stored; retry."""


def _warm_up() -> bool:
    """The first job of each process: it returns once the process has imported this module."""
    return True


@contextmanager
def no_main_module() -> Iterator[None]:
    """A spawned process first re-imports the parent's main script or module: a user's script
    without an `if __name__ == "__main__"` guard would run again in it, and `traction serve`
    would import the whole CLI there. Ingest processes run only this package's functions, so
    while they are spawned there is no main module for them to re-import."""
    main = sys.modules["__main__"]
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


@contextmanager
def no_ctrl_c() -> Iterator[None]:
    """A process started while Ctrl-C is ignored ignores it from its first instruction (an
    ignored signal stays ignored across exec), so a Ctrl-C that reaches the whole process
    group while it is still importing does not print a traceback there: the server stops
    it. Only the main thread may change a handler; a restart from the feed thread does not."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class IngestProcesses:
    def __init__(self, processes: int, ready: Gauge | None = None) -> None:
        self.size = processes
        self._ready = ready  # how many are ready, for /metrics
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._warm: Future[list[bool]] | None = None
        self._closed = False

    def available(self) -> bool:
        """Started and warm (their modules imported). The first call starts them."""
        if self._warm is None:
            self._start()
        return self._warm is not None and self._warm.done() and not self._closed

    def _start(self) -> None:
        with self._lock:
            if self._pool is not None or self._closed:
                return
            # spawn, not fork: this process has threads (the writer, the reactors, asyncio)
            pool = ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context("spawn"))
            warm: Future[list[bool]] = Future()
            with no_main_module():  # (the processes are spawned by these first jobs)
                pending = [pool.submit(_warm_up) for _ in range(self.size)]

            def done(_: object) -> None:
                if all(f.done() for f in pending) and not warm.done():
                    ok = [f.exception() is None for f in pending]
                    if self._ready is not None:
                        self._ready.set(sum(ok))
                    warm.set_result(ok)

            for f in pending:
                f.add_done_callback(done)
            self._pool, self._warm = pool, warm

    def submit(self, fn: Callable[[Any], prepare.Wire], job: Any) -> Future[prepare.Wire]:
        """`fn(job)` in an ingest process (started now if need be)."""
        if self._pool is None:
            self._start()
        assert self._pool is not None, "closed"
        return self._pool.submit(fn, job)

    async def run(self, fn: Callable[[Any], prepare.Wire], job: Any) -> prepare.Prepared:
        """`fn(job)` in an ingest process, decoded here."""
        pool = self._pool
        if pool is None:  # replaced or closed since the caller looked: nothing was taken
            raise IngestProcessDied("the ingest processes are restarting; retry")
        try:
            wire = await asyncio.wrap_future(pool.submit(fn, job))
        except BrokenProcessPool:
            self._replace(pool)
            raise IngestProcessDied("an ingest process died; nothing was stored, retry") from None
        return prepare.from_wire(wire)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is not broken:
                return  # another request replaced it already
            log.error("an ingest process died; starting new ones")
            self._pool, self._warm = None, None
            if self._ready is not None:
                self._ready.set(0)
        broken.shutdown(wait=False, cancel_futures=True)
        self._start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
