"""What the tracking CORS middleware costs per request, against the same app without it.

    .venv/bin/python bench/cors.py [--requests 50000]

Calls a minimal ASGI app directly (no sockets, no server) with a browser-like request to
`/v1/batch` carrying an `Origin` header, with and without `TrackingCORS`, and a preflight.
Prints microseconds per request and the ratio; compare the added microseconds with the cost
of a whole ingest request in docs/benchmarks.md (a 100-event batch takes ~4 ms of server time).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from traction.ingest.cors import TrackingCORS


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"16")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"success":true}'})


def scope(method: str, extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": "/v1/batch",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"text/plain"),
            (b"authorization", b"Basic dHJfcHViX3g6"),
            *extra,
        ],
    }


async def timed(handler: Any, sc: dict[str, Any], n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    t0 = time.perf_counter()
    for _ in range(n):
        await handler(sc, receive, send)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=50_000)
    n = ap.parse_args().requests
    origin = [(b"origin", b"http://shop.example")]
    preflight = [
        *origin,
        (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", b"content-type,authorization,x-retry-count"),
    ]
    wrapped = TrackingCORS(app)

    async def run() -> dict[str, float]:
        await timed(wrapped, scope("POST", origin), 2000)  # warm-up
        return {
            "baseline: the app alone": await timed(app, scope("POST", origin), n),
            "with TrackingCORS, no Origin": await timed(wrapped, scope("POST", []), n),
            "with TrackingCORS, Origin (browser)": await timed(wrapped, scope("POST", origin), n),
            "preflight answered by TrackingCORS": await timed(
                wrapped, scope("OPTIONS", preflight), n
            ),
        }

    out = asyncio.run(run())
    base = out["baseline: the app alone"]
    print(f"{'request':<40}{'µs/request':>12}{'added µs':>10}{'ratio':>8}")
    for name, us in out.items():
        print(f"{name:<40}{us:>12.2f}{us - base:>10.2f}{us / base:>8.2f}")


if __name__ == "__main__":
    main()
