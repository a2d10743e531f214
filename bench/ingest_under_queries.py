"""Does heavy analytics starve ingestion? /v1/track latency alone, then under six clients
running uncached analytics queries, with the query slots unbounded (the baseline: every
query runs at once) and bounded (the default), each on a fresh server in the same run.

    .venv/bin/python bench/ingest_under_queries.py [--data traction-data] [--seconds 20]

Needs data with some history (`make demo`); a copy is used. Figures: median and p99 of
sequential single-event /v1/track requests, and how many analytics queries finished.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from demo_copy import demo_copy, demo_parser  # noqa: E402

from traction.settings import Settings  # noqa: E402
from traction.store.state import StateStore  # noqa: E402
from traction.workspaces.service import WorkspaceService  # noqa: E402


def keys(data: Path) -> tuple[str, str]:
    state = StateStore(Settings(data_dir=data).resolved_state_url)
    state.migrate()
    try:
        svc = WorkspaceService(state)
        ws = svc.list_workspaces()[0].id
        return svc.create_key(ws, "write", "bench").key, svc.create_key(ws, "admin", "bench").key
    finally:
        state.dispose()


def serve(
    data: Path, port: int, concurrency: int | None, threads: int | None = 0
) -> subprocess.Popen[bytes]:
    """`None`: the setting left to its default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACTION_QUERY_")}
    env["TRACTION_RUN_WORKER"] = "false"
    if concurrency is not None:
        env["TRACTION_QUERY_CONCURRENCY"] = env["TRACTION_QUERY_CONCURRENCY_PER_WORKSPACE"] = str(
            concurrency
        )
    if threads is not None:
        env["TRACTION_QUERY_THREADS"] = str(threads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "traction.cli", "serve", "--port", str(port), "--data-dir", str(data), "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def track_latencies(url: str, write_key: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, auth=(write_key, "")) as c:
        for i in range(n):
            t0 = time.perf_counter()
            c.post(
                "/v1/track", json={"userId": f"bench-{i % 50}", "event": "bench_ping"}
            ).raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


def load(url: str, secret: str, stop: threading.Event, done: list[int]) -> None:
    """Uncached heavy queries: a daily unique-persons trend by feature over a random 90 days."""
    rng = random.Random()
    with httpx.Client(base_url=url, auth=(secret, ""), timeout=120) as c:
        while not stop.is_set():
            end = date(2026, 12, 1) - timedelta(days=rng.randrange(0, 30))
            spec = {"series": [{"event": {"event": "feature_used"}, "math": "unique_persons"}],
                    "breakdown": "feature", "range": {"date_from": str(end - timedelta(days=89)), "date_to": str(end)}}  # fmt: skip
            r = c.post("/api/v1/insights/trend", json=spec)
            if r.status_code == 200:
                done.append(1)


def phase(
    url: str, write_key: str, secret: str, clients: int, seconds: float
) -> tuple[list[float], int]:
    stop, done = threading.Event(), []
    threads = [
        threading.Thread(target=load, args=(url, secret, stop, done)) for _ in range(clients)
    ]
    for t in threads:
        t.start()
    time.sleep(2 if clients else 0)  # let the load build up
    lat: list[float] = []
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        lat += track_latencies(url, write_key, 20)
    stop.set()
    for t in threads:
        t.join()
    return lat, len(done)


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98]


def main() -> None:
    ap = demo_parser(__doc__)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    rows = []
    with demo_copy(args.data) as copy:
        write_key, secret = keys(copy)
        defaults = Settings()
        slots, threads_default = (
            defaults.resolved_query_concurrency[0],
            defaults.resolved_query_threads,
        )
        rows_spec: list[tuple[str, int | None, int | None, int]] = [
            ("no analytics load", None, None, 0),
            ("6 clients, slots unbounded, all cores", 64, 0, 6),
            ("6 clients, 2 slots, all cores", 2, 0, 6),
            (f"6 clients, default ({slots} slot, {threads_default} thr)", None, None, 6),
        ]
        for label, concurrency, threads, clients in rows_spec:
            port = 18000 + len(rows)
            proc = serve(copy, port, concurrency, threads)
            try:
                lat, queries = phase(
                    f"http://127.0.0.1:{port}", write_key, secret, clients, args.seconds
                )
            finally:
                proc.terminate()
                proc.wait(30)
            rows.append((label, statistics.median(lat), p99(lat), len(lat), queries))
    base = rows[0][2]
    print(
        f"{'/v1/track, one event per request':<40}{'median ms':>10}{'p99 ms':>9}{'p99 vs alone':>14}{'queries':>9}"
    )
    for label, med, q99, _n, queries in rows:
        print(f"{label:<40}{med * 1000:>10.1f}{q99 * 1000:>9.1f}{q99 / base:>14.2f}{queries:>9}")


if __name__ == "__main__":
    main()
