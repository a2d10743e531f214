"""Entitlement checks and usage consumption over HTTP, against /healthz in the same run.

    .venv/bin/python bench/entitlements.py [--seconds 10] [--rate 1000]

1. `traction serve` in its own process on a fresh data dir, with the example catalog.
2. `hey` (apt-get install hey) sends requests at a steady rate (10 workers, each capped at
   rate/10 per second): first `GET /healthz`, then `POST /api/v1/entitlements/check`, each
   for --seconds. A Python client cannot hold 1,000 requests/s on this box beside the server.
3. Consume throughput: `wrk` (apt-get install wrk), 16 connections, each request a unique
   idempotency key (a Lua script), consuming 1 unit at a time on one account (a hot row) with
   a hard limit, for --seconds; then the check that granted == stored usage, and a burst of
   2x a limit of 5,000 from Python: exactly 5,000 granted.
4. The SDK's cached check, in process: microseconds per call, against a plain dict lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
EXAMPLE = ROOT / "src/traction/billing/example_catalog.yaml"


BURST_LIMIT = 5_000


@contextlib.contextmanager
def serving(data: Path, port: int, env: dict[str, str]) -> Iterator[str]:
    """`traction serve` on `data` in its own process, healthy; yields its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "traction.cli", "serve", "--port", str(port), "--data-dir", str(data), "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(30)


def catalog() -> dict[str, object]:
    """The example catalog, plus two consumed features on the free plan: one with room for
    any throughput, one with a limit a burst overshoots."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["features"] += [{"key": "ai_credits", "type": "metered", "reset": "never"},
                        {"key": "burst_quota", "type": "metered", "reset": "never"}]  # fmt: skip
    doc["plans"][0]["features"]["ai_credits"] = {"limit": 10**12}
    doc["plans"][0]["features"]["burst_quota"] = {"limit": BURST_LIMIT}
    return doc


def hey(
    url: str, key: str, path: str, body: dict | None, rate: float, seconds: float
) -> tuple[float, float, int]:
    """(p50 s, p99 s, 200 answers) from `hey` at a steady rate."""
    if shutil.which("hey") is None:
        sys.exit("this bench needs `hey`: apt-get install -y hey")
    workers = 10
    cmd = [
        "hey",
        "-z",
        f"{int(seconds)}s",
        "-c",
        str(workers),
        "-q",
        str(int(rate / workers)),
        "-H",
        f"Authorization: Bearer {key}",
    ]
    if body is not None:
        cmd += ["-m", "POST", "-T", "application/json", "-d", json.dumps(body)]
    out = subprocess.run([*cmd, url + path], capture_output=True, text=True, check=True).stdout
    p50 = float(re.search(r"50% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    ok = re.search(r"\[200\]\s+(\d+) responses", out)
    return p50, p99, int(ok.group(1)) if ok else 0


def load(url: str, key: str, seconds: float, rate: float) -> None:
    body = {"account": "acme", "feature": "projects", "requested_usage": 1}
    health = hey(url, key, "/healthz", None, rate, seconds)
    check = hey(url, key, "/api/v1/entitlements/check", body, rate, seconds)
    sent, _stored, took = wrk_consume(url, key, seconds)
    usage = httpx.get(
        f"{url}/api/v1/entitlements", params={"account": "hot"}, auth=(key, "")
    ).json()
    used = usage["entitlements"]["ai_credits"]["usage"]
    left = BURST_LIMIT
    burst_sent, burst_granted, _ = asyncio.run(_burst(url, key, 2 * left))
    print(f"{'at ' + str(int(rate)) + ' requests/s':<34}{'p50 ms':>9}{'p99 ms':>9}{'200s':>8}")
    for label, (p50, p99, n) in (("GET /healthz", health), ("POST /entitlements/check", check)):
        print(f"{label:<34}{p50 * 1000:>9.2f}{p99 * 1000:>9.2f}{n:>8}")
    print(f"check p99 / healthz p99: {check[1] / health[1]:.2f}")
    print(f"consume on one hot account: {sent / took:,.0f} requests/s answered ({used:,} units stored, "
          f"{used - sent} more answered after wrk stopped counting)")  # fmt: skip
    print(
        f"burst of {burst_sent:,} against {left:,} left: {burst_granted:,} granted "
        f"({'exact' if burst_granted == left else 'MISMATCH'})"
    )


WRK_SCRIPT = r"""
counter = 0
thread_id = 0
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
end
function request()
  counter = counter + 1
  local body = '{"account": "hot", "feature": "ai_credits", "quantity": 1, "idempotency_key": "w-'
    .. tid .. '-' .. counter .. '"}'
  return wrk.format(nil, "/api/v1/usage", nil, body)
end
granted = 0
function response(status, headers, body)
  if string.find(body, '"granted":true', 1, true) then granted = granted + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("REQUESTS %d\n", summary.requests))
  io.write(string.format("P50 %f\nP99 %f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk_consume(url: str, key: str, seconds: float) -> tuple[int, int, float]:
    """(requests, granted per the server's stored usage, seconds) from `wrk`."""
    if shutil.which("wrk") is None:
        sys.exit("this bench needs `wrk`: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{int(seconds)}s", "-s", f.name, url, "--", key],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    sent = int(re.search(r"REQUESTS (\d+)", out).group(1))  # type: ignore[union-attr]
    ents = httpx.get(f"{url}/api/v1/entitlements", params={"account": "hot"}, auth=(key, "")).json()
    return sent, int(ents["entitlements"]["ai_credits"]["usage"]), float(seconds)


async def _burst(url: str, key: str, n: int) -> tuple[int, int, float]:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, auth=(key, ""), limits=limits, timeout=60) as client:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> int:
            async with sem:
                r = await client.post("/api/v1/usage", json={"account": "hot", "feature": "burst_quota",
                                      "quantity": 1, "idempotency_key": f"burst-{i}"})  # fmt: skip
                return int(r.json()["granted"])

        t = time.perf_counter()
        granted = sum(await asyncio.gather(*(one(i) for i in range(n))))
        return n, granted, time.perf_counter() - t


def sdk_cached(url: str, key: str) -> None:
    from traction.sdk import Entitlements

    ents = Entitlements(key, url, refresh_seconds=3600)
    ents.check("acme", "projects")  # warm
    n = 200_000
    t = time.perf_counter()
    for _ in range(n):
        ents.check("acme", "projects", 1)
    per_call = (time.perf_counter() - t) / n
    table = {"acme": {"projects": {"granted": True}}}
    t = time.perf_counter()
    for _ in range(n):
        table.get("acme", {}).get("projects")
    base = (time.perf_counter() - t) / n
    print(
        f"SDK cached check: {per_call * 1e6:.2f} µs per call (a bare dict lookup: {base * 1e6:.3f} µs; "
        f"ratio {per_call / base:.0f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--load", nargs=2, metavar=("URL", "KEY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        load(args.load[0], args.load[1], args.seconds, args.rate)
        return
    from traction.context import Context
    from traction.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
        ws = ctx.workspaces.create_workspace("Bench").id
        ctx.billing.apply_catalog(ws, catalog())
        key = ctx.workspaces.create_key(ws, "server", "bench").key
        ctx.close()
        port = 18400
        env = {
            **os.environ,
            "TRACTION_API_RATE_LIMIT": "1000000/second",
            "TRACTION_INGEST_RATE_LIMIT": "1000000/second",
        }
        with serving(data, port, env) as url:
            subprocess.run([sys.executable, __file__, "--load", url, key, "--seconds", str(args.seconds),
                            "--rate", str(args.rate)], check=True)  # fmt: skip
            sdk_cached(url, key)
        exact(data)


def exact(data: Path) -> None:
    """After the run, from the database: the stored usage equals the sum of the granted
    consumes' quantities (nothing counted twice, nothing lost)."""
    from sqlalchemy import text

    from traction.store.state import StateStore

    state = StateStore(f"sqlite:///{data / 'state.db'}")
    with state.engine.connect() as c:
        for feature in ("ai_credits", "burst_quota"):
            used = c.execute(text("SELECT sum(used) FROM billing_usage WHERE account = 'hot' AND feature = :f"),
                             {"f": feature}).scalar()  # fmt: skip
            granted = c.execute(text("SELECT sum(quantity) FROM billing_usage_records WHERE account = 'hot'"
                                     " AND feature = :f AND granted"), {"f": feature}).scalar()  # fmt: skip
            print(
                f"{feature}: stored usage {used:,}, granted consumes {granted:,}: "
                f"{'exact' if used == granted else 'MISMATCH'}"
            )
    state.dispose()


if __name__ == "__main__":
    main()
