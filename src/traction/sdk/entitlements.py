"""Entitlements in the Python client: `check` answers from a local cache of each account's
entitlements (one `GET /api/v1/entitlements` per account), refreshed in the background once
an entry is `refresh_seconds` old; `consume` always asks the server (it is the atomic part).

Staleness bound: an answer is never based on data older than `max_stale_seconds`; past that,
the check fetches first, and if the server cannot be reached it answers by the feature's
failure mode: `fail_open` features are granted, the rest refused (reason `unavailable`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("traction.sdk")


@dataclass(frozen=True)
class Check:
    granted: bool
    reason: str
    value: Any = None
    limit: int | None = None
    usage: int | None = None
    remaining: int | None = None
    stale_seconds: float = 0.0  # how old the data behind this answer is


class Entitlements:
    def __init__(
        self,
        key: str,
        host: str = "http://127.0.0.1:8000",
        *,
        refresh_seconds: float = 30.0,
        max_stale_seconds: float = 300.0,
        fail_open: Iterable[str] = (),
        timeout: float = 5.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.max_stale_seconds = max_stale_seconds
        self.fail_open = frozenset(fail_open)
        self._http = http or httpx.Client(
            base_url=host.rstrip("/"), auth=(key, ""), timeout=timeout
        )
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------------

    def check(self, account: str, feature: str, requested: int = 0) -> Check:
        """May the account use the feature (this much more of it)? From the cache when fresh
        enough; a few microseconds."""
        hit = self._cache.get(account)
        now = time.monotonic()
        if hit is None or now - hit[0] > self.max_stale_seconds:
            if not self._fetch(account):
                return self._unavailable(feature)
            hit = self._cache[account]
        elif now - hit[0] > self.refresh_seconds:
            self._refresh_later(account)
        d = hit[1].get(feature)
        if d is None:
            return Check(False, "unknown_feature", stale_seconds=now - hit[0])
        return _decide(d, requested, now - hit[0])

    def _unavailable(self, feature: str) -> Check:
        return Check(feature in self.fail_open, "unavailable")

    def _fetch(self, account: str) -> bool:
        try:
            r = self._http.get("/api/v1/entitlements", params={"account": account})
            r.raise_for_status()
        except httpx.HTTPError as e:
            log.warning("entitlements unavailable: %s", e)
            return False
        with self._lock:
            self._cache[account] = (time.monotonic(), r.json()["entitlements"])
        return True

    def _refresh_later(self, account: str) -> None:
        with self._lock:
            if account in self._refreshing:
                return
            self._refreshing.add(account)

        def run() -> None:
            try:
                self._fetch(account)
            finally:
                with self._lock:
                    self._refreshing.discard(account)

        threading.Thread(target=run, name="traction-entitlements", daemon=True).start()

    def invalidate(self, account: str | None = None) -> None:
        with self._lock:
            if account is None:
                self._cache.clear()
            else:
                self._cache.pop(account, None)

    # -- consuming ------------------------------------------------------------------------------

    def consume(
        self,
        account: str,
        feature: str,
        quantity: int,
        idempotency_key: str,
        user: str | None = None,
    ) -> dict[str, Any]:
        """Atomically consumes usage on the server (retry with the same key: counted once);
        the cached entry learns the new usage."""
        body: dict[str, Any] = {"account": account, "feature": feature, "quantity": quantity,
                                "idempotency_key": idempotency_key}  # fmt: skip
        if user:
            body["user"] = user
        r = self._http.post("/api/v1/usage", json=body)
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        with self._lock:
            hit = self._cache.get(account)
            if hit is not None and feature in hit[1]:
                d = dict(hit[1][feature])
                d.update(usage=out["usage"], remaining=out["remaining"])
                if (
                    d.get("limit") is not None
                    and out["usage"] >= d["limit"]
                    and not d.get("soft_limit")
                ):
                    d.update(granted=False, reason="limit_reached")
                self._cache[account] = (hit[0], {**hit[1], feature: d})
        return out

    def close(self) -> None:
        self._http.close()


def _decide(d: dict[str, Any], requested: int, age: float) -> Check:
    limit, usage = d.get("limit"), d.get("usage")
    granted, reason = bool(d["granted"]), d["reason"]
    if limit is not None and usage is not None and not d.get("soft_limit"):
        fits = usage + max(requested, 0) <= limit and (requested > 0 or usage < limit)
        granted, reason = (True, "granted") if fits else (False, "limit_reached")
    return Check(granted, reason, d.get("value"), limit, usage, d.get("remaining"), age)
