"""Webhooks: a JSON POST signed like Stripe signs its own (`X-Traction-Signature: t=<unix
time>,v1=<hex HMAC-SHA256 of "t.body">` with the workspace's webhook secret), an
`Idempotency-Key` header, retries with exponential backoff, then the dead-letter list.
Slack incoming webhooks get `{"text": ...}`."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import datetime, timedelta

import orjson

MAX_ATTEMPTS = 6  # 1 + 5 retries: 30 s, 1 min, 2 min, 4 min, 8 min
BASE_DELAY = timedelta(seconds=30)


def signature(secret: str, body: bytes, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, header: str, body: bytes, tolerance: int = 300, now: int | None = None
) -> bool:
    """What a receiver does (documented, and used by our tests)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((int(time.time()) if now is None else now) - t) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def body(payload: dict[str, object]) -> bytes:
    return orjson.dumps(payload)


def next_attempt(attempts: int, now: datetime) -> datetime | None:
    """When to try again after `attempts` failed ones (None: give up, dead letter)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + BASE_DELAY * (2 ** (attempts - 1))
