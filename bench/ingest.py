"""Sustained HTTP ingest vs the in-process floor, on this machine, in one run.

    .venv/bin/python bench/ingest.py [--seconds 20] [--connections 32] [--batch 100]
                                     [--origin http://shop.example]

1. Starts `traction serve` in its own process on a fresh data dir.
2. A separate load process sends 100-event Segment batches (unique messageIds, 10k users)
   over keep-alive HTTP/1.1 connections on loopback and records each request's latency.
   Only 200 answers count: a 200 means the events are committed to disk. With `--origin`
   every request carries an Origin header, as a browser SDK's do (the CORS path).
3. In this process, with no HTTP, the floor: the same batches JSON-parsed and appended to
   a DuckDB file as Arrow (one commit per 2,000 events, like the writer's groups), and the
   pipeline floor: parse + validate + identity + Arrow + commit through the writer.
Prints events/s, p50/p99 latency and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = os.environ.get("BENCH_ORIGIN", "")
EVENTS = ("dashboard_viewed", "report_created", "feature_used", "signed_up", "invite_sent")


def make_batches(n: int, size: int, prefix: str) -> list[bytes]:
    out = []
    k = 0
    for b in range(n):
        msgs = []
        for _ in range(size):
            k += 1
            msgs.append(
                {
                    "type": "track",
                    "userId": f"user-{(k * 7919) % 10_000}",
                    "event": EVENTS[k % len(EVENTS)],
                    "messageId": f"{prefix}-{b}-{k}",
                    "timestamp": "2026-11-01T12:00:00.000Z",
                    "properties": {
                        "plan": "pro",
                        "feature": "alerts",
                        "value": k % 97,
                        "path": "/app/reports/42",
                    },
                    "context": {"library": {"name": "bench", "version": "1"}, "ip": "203.0.113.9"},
                }
            )
        out.append(orjson.dumps({"batch": msgs, "sentAt": "2026-11-01T12:00:01.000Z"}))
    return out


# -- the load process -----------------------------------------------------------------------


async def _conn(
    port: int, auth: str, bodies: list[bytes], stop_at: float, lat: list[float], ok: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Basic {auth}\r\n"
    if ORIGIN:
        head += f"Origin: {ORIGIN}\r\n"
    for body in bodies:
        if time.perf_counter() >= stop_at:
            break
        t0 = time.perf_counter()
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in raw.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        lat.append(time.perf_counter() - t0)
        if raw[9:12] == b"200":
            ok[0] += 1
    writer.close()


def load_main(port: int, key: str, seconds: float, conns: int, size: int) -> None:
    per_conn = int(seconds * 2500 / conns) + 50  # enough batches for 250k events/s
    bodies = [make_batches(per_conn, size, f"{uuid.uuid4().hex[:8]}-{c}") for c in range(conns)]
    auth = base64.b64encode(f"{key}:".encode()).decode()
    lat: list[float] = []
    ok = [0]

    async def run() -> float:
        # warm-up: 1 s, not measured
        warm: list[float] = []
        await asyncio.gather(
            *[
                _conn(port, auth, bodies[c][:20], time.perf_counter() + 1, warm, [0])
                for c in range(conns)
            ]
        )
        start = time.perf_counter()
        await asyncio.gather(
            *[_conn(port, auth, bodies[c][20:], start + seconds, lat, ok) for c in range(conns)]
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    lat.sort()
    print(
        json.dumps(
            {
                "events_per_s": ok[0] * size / elapsed,
                "requests": len(lat),
                "ok_requests": ok[0],
                "p50_ms": 1000 * lat[len(lat) // 2],
                "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
                "seconds": elapsed,
            }
        )
    )


# -- the floors --------------------------------------------------------------------------------


def floor_parse_append(batches: list[bytes], tmp: Path) -> float:
    """JSON parse + Arrow append to DuckDB, one commit per 20 batches; no validation, no HTTP."""
    import pyarrow as pa

    from traction.store.events import EVENT_SCHEMA, DuckDBEventStore

    store = DuckDBEventStore(tmp / "floor.duckdb")
    t0 = time.perf_counter()
    n = 0
    for g in range(0, len(batches), 20):
        cols: dict[str, list[object]] = {name: [] for name in EVENT_SCHEMA.names}
        for body in batches[g : g + 20]:
            for m in orjson.loads(body)["batch"]:
                n += 1
                cols["workspace_id"].append("ws")
                cols["event_id"].append(m["messageId"])
                cols["seq"].append(n)
                cols["type"].append(m["type"])
                cols["name"].append(m["event"])
                cols["timestamp"].append(None)
                cols["original_timestamp"].append(None)
                cols["sent_at"].append(None)
                cols["received_at"].append(None)
                cols["anonymous_id"].append(None)
                cols["user_id"].append(m["userId"])
                cols["distinct_id"].append(m["userId"])
                cols["person_id"].append(m["userId"])
                cols["account_id"].append(None)
                cols["properties"].append(orjson.dumps(m["properties"]).decode())
                cols["context"].append(orjson.dumps(m["context"]).decode())
        ts = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for k in ("timestamp", "received_at"):
            cols[k] = [ts] * len(cols[k])
        store.append(pa.table(cols, schema=EVENT_SCHEMA))
    elapsed = time.perf_counter() - t0
    store.close()
    return n / elapsed


def floor_pipeline(batches: list[bytes], tmp: Path) -> float:
    """Everything the server does except HTTP: parse, validate, identity, Arrow, commit."""
    from traction.context import Context
    from traction.ingest.domain import normalize_segment
    from traction.settings import Settings

    ctx = Context.open(Settings(data_dir=tmp / "pipeline"), start_writer=False)
    ws = ctx.workspaces.create_workspace("bench").id
    t0 = time.perf_counter()
    n = 0
    from datetime import UTC, datetime

    for g in range(0, len(batches), 20):
        items = []
        for body in batches[g : g + 20]:  # per request, as the server validates
            good, result = ctx.ingest.validate(
                ws,
                orjson.loads(body)["batch"],
                normalize_segment,
                datetime.now(UTC).replace(tzinfo=None),
                len(body),
            )
            items += good
            n += result.accepted
        ctx.writer.write_now(items)  # one commit per 20 requests, like the writer's groups
    elapsed = time.perf_counter() - t0
    ctx.close()
    return n / elapsed


# -- the driver --------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument(
        "--with-worker",
        action="store_true",
        help="run the reactors in the server too (embedded shape)",
    )
    ap.add_argument("--origin", default="", help="send this Origin header (browser-like)")
    ap.add_argument("--load", nargs=2, metavar=("PORT", "KEY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        load_main(int(args.load[0]), args.load[1], args.seconds, args.connections, args.batch)
        return

    sys.path.insert(0, str(ROOT / "src"))
    from traction.context import Context
    from traction.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="traction-bench-"))
    try:
        ctx = Context.open(Settings(data_dir=tmp / "server"), start_writer=False)
        key = ctx.workspaces.create_workspace("bench").write_key
        ctx.close()
        with socket_port() as port:
            pass
        env = {**os.environ, "TRACTION_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "traction",
                "serve",
                "--data-dir",
                str(tmp / "server"),
                "--port",
                str(port),
            ]
            + ([] if args.with_worker else ["--no-worker"]),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "server.log", "wb"),  # noqa: SIM115
        )
        wait_ready(port)
        shape = (
            "embedded: serve with reactors"
            if args.with_worker
            else "ingest tier: serve --no-worker"
        )
        print(
            f"HTTP ingest ({shape}{', Origin: ' + args.origin if args.origin else ''}): {args.connections} connections x {args.batch}-event batches for {args.seconds:.0f} s ...",
            flush=True,
        )
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                str(port),
                key,
                "--seconds",
                str(args.seconds),
                "--connections",
                str(args.connections),
                "--batch",
                str(args.batch),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "BENCH_ORIGIN": args.origin},
        ).stdout
        http = json.loads(out)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        stored = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('traction_ingest_events_total{outcome="stored"}')
        )
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

        batches = make_batches(
            int(min(http["events_per_s"] * 5, 300_000) / args.batch) + 20, args.batch, "floor"
        )
        print(f"Floors: {len(batches) * args.batch:,} events in-process ...", flush=True)
        floor = floor_parse_append(batches, tmp)
        pipeline = floor_pipeline(batches, tmp)

        rows = [
            (
                "HTTP ingest, acknowledged durable",
                http["events_per_s"],
                f"p50 {http['p50_ms']:.1f} ms, p99 {http['p99_ms']:.1f} ms",
            ),
            ("floor: JSON parse + Arrow append (no HTTP)", floor, ""),
            ("pipeline without HTTP (validate + identity)", pipeline, ""),
        ]
        print()
        print(f"{'measure':<46}{'events/s':>12}  notes")
        for name, v, note in rows:
            print(f"{name:<46}{v:>12,.0f}  {note}")
        print()
        print(f"HTTP / floor           = {http['events_per_s'] / floor:.2f}")
        print(f"HTTP / pipeline        = {http['events_per_s'] / pipeline:.2f}")
        print(
            f"acknowledged events    = {http['ok_requests'] * args.batch:,} (server stored {stored:,.0f}, incl. warm-up)"
        )
        print(f"requests               = {http['requests']:,} in {http['seconds']:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return int(self.s.getsockname()[1])

    def __exit__(self, *a: object) -> None:
        self.s.close()


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become ready")


if __name__ == "__main__":
    main()
