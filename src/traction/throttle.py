"""Rate limits and login lockouts, kept in this process or, with `redis_url`, in Redis so
that every replica shares them. The algorithm is the `limits` library's moving window.

- Login: failures counted per account and per client address; over either limit, the next
  attempt is refused (429, Retry-After) without checking the password, until the window
  slides. A success clears the account's count.
- Keys: requests per key and per second, for the admin API and for ingestion separately;
  over the limit, 429 with Retry-After, which Traction's SDK and the browser SDKs honour.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    """Over a limit: answer 429 with Retry-After."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WindowStats(NamedTuple):
    reset_time: float  # when the oldest hit in the window leaves it (epoch seconds)
    remaining: int


class LocalLimiter:
    """The moving window kept in this process: each key's hits in the last window, oldest
    first. `limits`' own memory storage starts a timer thread every 10 ms to expire entries,
    a thread start inside every ingest request on a busy server; here a key's old hits are
    dropped when the key is next used, and keys left empty are swept now and then."""

    SWEEP_EVERY = 10_000  # hits

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._count = 0

    def _window(self, item: RateLimitItem, ids: tuple[str, ...], now: float) -> deque[float]:
        hits = self._hits.setdefault(item.key_for(*ids), deque())
        edge = now - item.get_expiry()
        while hits and hits[0] <= edge:
            hits.popleft()
        return hits

    def hit(self, item: RateLimitItem, *ids: str) -> bool:
        now = self.clock()
        with self._lock:
            self._count += 1
            if self._count % self.SWEEP_EVERY == 0:
                self._sweep(now)
            hits = self._window(item, ids, now)
            if len(hits) >= item.amount:
                return False
            hits.append(now)
            return True

    def test(self, item: RateLimitItem, *ids: str) -> bool:
        with self._lock:
            return len(self._window(item, ids, self.clock())) < item.amount

    def clear(self, item: RateLimitItem, *ids: str) -> None:
        with self._lock:
            self._hits.pop(item.key_for(*ids), None)

    def get_window_stats(self, item: RateLimitItem, *ids: str) -> WindowStats:
        now = self.clock()
        with self._lock:
            hits = self._window(item, ids, now)
            if len(hits) < item.amount:
                return WindowStats(now, item.amount - len(hits))
            # the window frees a slot when the hit `amount` places back leaves it
            return WindowStats(hits[-item.amount] + item.get_expiry(), 0)

    def _sweep(self, now: float) -> None:
        """Forgets keys with no hit in the last day (longer than any window we use)."""
        for key in [k for k, h in self._hits.items() if not h or h[-1] < now - 86_400]:
            del self._hits[key]


class Throttle:
    def __init__(
        self,
        storage_uri: str = "memory://",
        *,
        login_per_account: str = "5/15minutes",
        login_per_address: str = "30/15minutes",
        api_per_key: str = "50/second",
        ingest_per_key: str = "500/second",
    ) -> None:
        self.limiter: LocalLimiter | MovingWindowRateLimiter = (
            LocalLimiter()
            if storage_uri == "memory://"
            else MovingWindowRateLimiter(storage_from_string(storage_uri))
        )
        self.login_account = parse(login_per_account)
        self.login_address = parse(login_per_address)
        self.api = parse(api_per_key)
        self.ingest = parse(ingest_per_key)

    # -- login ------------------------------------------------------------------------------

    def login_wait(self, email: str, address: str | None) -> float | None:
        """Seconds to wait before another attempt may be checked (None: go ahead)."""
        checks = [(self.login_account, "login-account", email.strip().lower())]
        if address:
            checks.append((self.login_address, "login-address", address))
        waits = [
            self._wait(item, ns, key)
            for item, ns, key in checks
            if not self.limiter.test(item, ns, key)
        ]
        return max(waits) if waits else None

    def login_failed(self, email: str, address: str | None) -> None:
        self.limiter.hit(self.login_account, "login-account", email.strip().lower())
        if address:
            self.limiter.hit(self.login_address, "login-address", address)

    def login_succeeded(self, email: str) -> None:
        self.limiter.clear(self.login_account, "login-account", email.strip().lower())

    # -- keys -------------------------------------------------------------------------------

    def key_wait(self, key_id: str, ingest: bool) -> float | None:
        """Counts one request of this key; seconds to wait if it is over its limit."""
        item = self.ingest if ingest else self.api
        ns = "ingest" if ingest else "api"
        if self.limiter.hit(item, ns, key_id):
            return None
        return self._wait(item, ns, key_id)

    def check_key(self, key_id: str, ingest: bool) -> None:
        wait = self.key_wait(key_id, ingest)
        if wait is not None:
            what = "events" if ingest else "API requests"
            raise RateLimited(f"too many {what} for this key: retry in {wait:g} s", wait)

    def _wait(self, item: RateLimitItem, *ids: str) -> float:
        stats = self.limiter.get_window_stats(item, *ids)
        return max(1.0, math.ceil(stats.reset_time - time.time()))
