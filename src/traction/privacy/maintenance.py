"""The server's scheduled jobs: privacy (retention, then a purge when something was
deleted) hourly; billing (renewals, trial ends, scheduled downgrades and cancellations) every
minute.

A thread, like the reactors: in the embedded shape the server owns the event file, so the
work that rewrites it runs in the server."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


Job = tuple[str, float, Callable[[], object]]  # name, every how many seconds, what


class Maintenance:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = [j for j in jobs if j[1] > 0]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.jobs:
            return
        self._thread = threading.Thread(target=self._run, name="traction-maintenance", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = {name: time.monotonic() + every for name, every, _ in self.jobs}
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
