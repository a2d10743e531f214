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
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    """Over a limit: answer 429 with Retry-After."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
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
