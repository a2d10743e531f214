"""Traction's Python client, shaped like Segment's analytics-python.

Calls return at once: messages go on a bounded queue and a background thread sends them
in batches (by size or interval), gzipped, retrying network errors, 5xx and 429 with
exponential backoff and full jitter (honouring Retry-After). A full queue drops the new
message and counts it rather than blocking the app. `sync_mode=True` sends in the calling
thread, for tests and scripts.
"""

from __future__ import annotations

import atexit
import gzip
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from traction.sdk.entitlements import Entitlements

log = logging.getLogger("traction.sdk")

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024 - 1024  # leave room for the envelope


@dataclass
class Stats:
    queued: int = 0
    sent: int = 0
    dropped: int = 0  # queue full or message too large
    failed: int = 0  # rejected by the server or out of retries
    retries: int = 0


class Client:
    def __init__(
        self,
        write_key: str,
        host: str = "http://127.0.0.1:8000",
        *,
        flush_at: int = 100,
        flush_interval: float = 0.5,
        max_queue_size: int = 10_000,
        max_retries: int = 8,
        backoff_base: float = 0.25,
        backoff_max: float = 30.0,
        timeout: float = 15.0,
        gzip: bool = True,
        sync_mode: bool = False,
        on_error: Callable[[Exception | str, list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not write_key:
            raise ValueError("write_key is required")
        self.write_key = write_key
        self.host = host.rstrip("/")
        self.flush_at = max(1, min(flush_at, 500))
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.gzip = gzip
        self.sync_mode = sync_mode
        self.on_error = on_error
        self.stats = Stats()
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(max_queue_size)
        self._http = httpx.Client(timeout=timeout, auth=(write_key, ""))
        self._stop = threading.Event()
        self._flushing = threading.Event()  # send partial batches now instead of waiting
        self._thread: threading.Thread | None = None
        self._entitlements: Entitlements | None = None
        if not sync_mode:
            self._thread = threading.Thread(target=self._run, name="traction-sdk", daemon=True)
            self._thread.start()
            atexit.register(self.shutdown)

    @property
    def entitlements(self) -> Entitlements:
        """Feature checks and usage (needs a server key, `tr_srv_…`): see `sdk.entitlements`."""
        if self._entitlements is None:
            self._entitlements = Entitlements(self.write_key, self.host)
        return self._entitlements

    # -- the Segment calls ------------------------------------------------------------------

    def track(
        self,
        user_id: str | None = None,
        event: str | None = None,
        properties: dict[str, Any] | None = None,
        **kw: Any,
    ) -> str:
        if not event:
            raise ValueError("event is required")
        return self._enqueue(
            "track", user_id, {"event": event, "properties": properties or {}}, **kw
        )

    def identify(
        self, user_id: str | None = None, traits: dict[str, Any] | None = None, **kw: Any
    ) -> str:
        return self._enqueue("identify", user_id, {"traits": traits or {}}, **kw)

    def group(
        self,
        user_id: str | None = None,
        group_id: str | None = None,
        traits: dict[str, Any] | None = None,
        **kw: Any,
    ) -> str:
        if not group_id:
            raise ValueError("group_id is required")
        return self._enqueue("group", user_id, {"groupId": group_id, "traits": traits or {}}, **kw)

    def page(
        self,
        user_id: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        **kw: Any,
    ) -> str:
        return self._view("page", user_id, name, properties, **kw)

    def screen(
        self,
        user_id: str | None = None,
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        **kw: Any,
    ) -> str:
        return self._view("screen", user_id, name, properties, **kw)

    def _view(
        self,
        kind: str,
        user_id: str | None,
        name: str | None,
        properties: dict[str, Any] | None,
        **kw: Any,
    ) -> str:
        body: dict[str, Any] = {"properties": properties or {}}
        if name:
            body["name"] = name
        return self._enqueue(kind, user_id, body, **kw)

    def alias(self, previous_id: str, user_id: str, **kw: Any) -> str:
        return self._enqueue("alias", user_id, {"previousId": previous_id}, **kw)

    def _enqueue(
        self,
        kind: str,
        user_id: str | None,
        body: dict[str, Any],
        *,
        anonymous_id: str | None = None,
        context: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
        message_id: str | None = None,
    ) -> str:
        if user_id is None and anonymous_id is None:
            raise ValueError("user_id or anonymous_id is required")
        ts = timestamp or datetime.now(UTC)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        msg: dict[str, Any] = {
            "type": kind,
            "messageId": message_id or str(uuid.uuid4()),
            "timestamp": ts.isoformat(),
            "context": {
                "library": {"name": "traction-python", "version": "0.1.0"},
                **(context or {}),
            },
            **body,
        }
        if user_id is not None:
            msg["userId"] = str(user_id)
        if anonymous_id is not None:
            msg["anonymousId"] = str(anonymous_id)
        if len(orjson.dumps(msg)) > MAX_EVENT_BYTES:
            self.stats.dropped += 1
            log.error("message dropped: larger than 32 KB", extra={"messageId": msg["messageId"]})
            return str(msg["messageId"])
        if self.sync_mode:
            self._send([msg])
            return str(msg["messageId"])
        try:
            self._queue.put_nowait(msg)
            self.stats.queued += 1
        except queue.Full:
            self.stats.dropped += 1
            log.warning("message dropped: queue full", extra={"messageId": msg["messageId"]})
        return str(msg["messageId"])

    # -- delivery ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued so far was sent (or given up on). False on timeout."""
        if self.sync_mode:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flushing.set()
        try:
            with self._queue.all_tasks_done:
                while self._queue.unfinished_tasks:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._queue.all_tasks_done.wait(remaining)
            return True
        finally:
            self._flushing.clear()

    def shutdown(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http.close()

    def _next_batch(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.flush_at:
            wait = deadline - time.monotonic()
            try:
                msg = (
                    self._queue.get(timeout=min(wait, 0.05))
                    if wait > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                if wait <= 0 or (batch and self._flushing.is_set()):
                    break
                continue
            n = len(orjson.dumps(msg))
            if size + n > MAX_BATCH_BYTES and batch:
                self._send_and_ack(batch)
                batch, size = [], 0
            batch.append(msg)
            size += n
        return batch

    def _run(self) -> None:
        while not self._stop.is_set() or self._queue.unfinished_tasks:
            batch = self._next_batch()
            if batch:
                self._send_and_ack(batch)

    def _send_and_ack(self, batch: list[dict[str, Any]]) -> None:
        try:
            self._send(batch)
        finally:
            for _ in batch:
                self._queue.task_done()

    def _send(self, batch: list[dict[str, Any]]) -> None:
        payload = orjson.dumps({"batch": batch, "sentAt": datetime.now(UTC).isoformat()})
        headers = {"Content-Type": "application/json"}
        if self.gzip:
            payload = gzip.compress(payload, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        error: Exception | str = "unknown"
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                r = self._http.post(f"{self.host}/v1/batch", content=payload, headers=headers)
            except httpx.HTTPError as e:
                error = e
            else:
                if r.status_code < 300:
                    self.stats.sent += len(batch)
                    return
                error = f"HTTP {r.status_code}: {r.text[:500]}"
                if r.status_code != 429 and r.status_code < 500:
                    break  # the server read it and said no: resending will not help
                retry_after = _retry_after(r.headers.get("retry-after"))
            if attempt == self.max_retries:
                break
            self.stats.retries += 1
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            self._stop.wait(delay)  # cut short on shutdown: then the remaining tries go at once
        self.stats.failed += len(batch)
        hint = ""
        if isinstance(error, str) and error.startswith(("HTTP 401", "HTTP 403")):
            hint = " (check the write key: a workspace's tr_pub_… key, sent as the Basic-auth user)"
        # The reason is in the message itself: a plain log formatter drops `extra`.
        log.error(
            "batch of %d events not delivered: %s%s", len(batch), error, hint,
            extra={"error": str(error), "events": len(batch)},
        )  # fmt: skip
        if self.on_error:
            self.on_error(error, batch)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * (2**attempt)))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        return None
