"""What preparing a `/v1/batch` body costs, the rules' way and by columns (issue 10).

    .venv/bin/python bench/prepare_batch.py [--repeat 15]

Times, per event, what the request loop does with a body before the writer gets it: parse
(`segment_batch`), then validate and encode. The baseline is the rules' way (`prepare`:
a `CanonicalEvent` per message, encoded a row at a time), measured in the same run; the
change is `prepare_batch` (the common messages checked by msgspec and encoded by columns).
Two shapes of 100 events: the wrk bench's (no context, one timestamp) and an analytics.js
one (a five-key context, distinct timestamps, `sentAt`, over `max_event_bytes` so each
message's size is checked). Min of the repeats: this box is noisy.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import orjson

from traction.ingest import prepare

NOW = datetime(2026, 12, 1, 10)
MAX_EVENT_BYTES = 32 * 1024
N = 100


def wrk_shape() -> bytes:
    return orjson.dumps({"batch": [
        {"type": "track", "event": "feature_used", "userId": f"u{i}",
         "messageId": f"x-0-{i}-{i}", "timestamp": "2026-12-01T10:00:00Z",
         "properties": {"feature": "reports", "n": i}}
        for i in range(N)
    ]})  # fmt: skip


def analytics_js_shape() -> bytes:
    context = {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "page": {"path": "/app/reports", "referrer": "", "search": "", "title": "Reports",
                 "url": "https://app.acme.io/app/reports"},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/120.0 Safari/537.36",
        "locale": "en-US",
        "timezone": "Europe/Berlin",
    }  # fmt: skip
    batch = [
        {"type": "track", "event": "feature_used", "userId": f"u{i % 37}",
         "anonymousId": f"a-{i % 37}-5f1c2d", "messageId": f"ajs-next-{i}-9b8c7d6e5f4a3b2c",
         "timestamp": (NOW + timedelta(seconds=i)).isoformat() + ".123Z",
         "properties": {"feature": "reports", "n": i, "plan": "pro", "ok": True},
         "context": context, "integrations": {}}
        for i in range(N)
    ]  # fmt: skip
    return orjson.dumps({"batch": batch, "sentAt": (NOW + timedelta(seconds=N + 1)).isoformat() + "Z"})  # fmt: skip


def by_the_rules(body: bytes) -> prepare.Prepared:
    b = prepare.segment_batch(body)
    return prepare.prepare(b.messages, b.normalizer("10.0.0.1"), NOW, MAX_EVENT_BYTES,
                           len(body), None, False)  # fmt: skip


def by_columns(body: bytes) -> prepare.Prepared:
    b = prepare.segment_batch(body)
    return prepare.prepare_batch(b, "10.0.0.1", NOW, MAX_EVENT_BYTES, len(body), None, False)


def per_event(f: Callable[[], Any], repeat: int) -> float:
    """µs an event, min of the repeats."""
    return min(timeit.repeat(f, number=50, repeat=repeat)) / 50 / N * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--repeat", type=int, default=15)
    a = ap.parse_args()
    print(f"{'shape':<14} {'bytes':>7} {'rules µs/ev':>12} {'columns µs/ev':>14} {'ratio':>6}")
    for name, body in (("wrk", wrk_shape()), ("analytics.js", analytics_js_shape())):
        old, new = by_the_rules(body), by_columns(body)  # (also warms pyarrow's imports)
        assert new.rows.num_rows == old.rows.num_rows == N and not new.rejected
        before = per_event(partial(by_the_rules, body), a.repeat)
        after = per_event(partial(by_columns, body), a.repeat)
        print(f"{name:<14} {len(body):>7,} {before:>12.2f} {after:>14.2f} {after / before:>6.2f}")


if __name__ == "__main__":
    main()
