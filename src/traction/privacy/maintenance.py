"""The server's maintenance loop: retention, then a purge when something was deleted.

A thread, like the reactors: in the embedded shape the server owns the event file, so the
work that rewrites it runs in the server."""

from __future__ import annotations

import logging
import threading

from traction.privacy.service import PrivacyService

log = logging.getLogger(__name__)


class Maintenance:
    def __init__(self, privacy: PrivacyService, interval_seconds: float) -> None:
        self.privacy = privacy
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="traction-maintenance", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.privacy.maintain()
            except Exception:  # logged; the next round tries again
                log.exception("maintenance failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
