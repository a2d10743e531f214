"""The event log's checkpoints as the log grows, and what the WAL threshold changes (issue 10).

    .venv/bin/python bench/checkpoints.py [--sizes 0 2000000 6000000] [--events 600000]
        [--thresholds 16 64 256] [--variants keyed plain]

DuckDB appends a commit to its WAL and, when the WAL has grown past `checkpoint_threshold`
(16 MB by default), moves it into the database file inside the commit that crossed it: the
writer waits, and so does every request in its commit group. This times the writer's appends
(the real `DuckDBEventStore.append`, 200-row Arrow groups of the wrk bench's shape) on a log
already holding `--sizes` events, for each WAL threshold in MB, and reports:

- events/s over the whole run (the checkpoints included) and the append's p50/p99/max;
- the checkpoints (an append after which the WAL is shorter than before) and their time.

Two tables per size: `keyed` is the events table as it is (the dedupe primary key, an ART
index); `plain` is the same columns without the key (what a dedupe window would leave on the
log), the baseline for what the index costs a checkpoint. Each threshold runs on its own copy
of the filled file, so every run starts from the same log.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from traction.store.events import EVENT_SCHEMA, DuckDBEventStore

GROUP = 200
NOW = datetime(2026, 12, 1, 10)
PLAIN = """CREATE TABLE events (dedupe_key UHUGEINT NOT NULL, workspace_id VARCHAR NOT NULL,
event_id VARCHAR NOT NULL, seq BIGINT NOT NULL, type VARCHAR NOT NULL, name VARCHAR,
timestamp TIMESTAMP NOT NULL, original_timestamp TIMESTAMP, sent_at TIMESTAMP,
received_at TIMESTAMP NOT NULL, anonymous_id VARCHAR, user_id VARCHAR,
distinct_id VARCHAR NOT NULL, person_id VARCHAR NOT NULL, account_id VARCHAR,
properties JSON, context JSON)"""
# rows made inside DuckDB (no Python per row), the shape of the wrk bench's events
FILL = """INSERT INTO events SELECT md5_number('ws_fill' || chr(0) || 'f-' || i), 'ws_fill',
'f-' || i, i, 'track', 'feature_used', TIMESTAMP '2026-11-01' + to_seconds(i // 100),
TIMESTAMP '2026-11-01' + to_seconds(i // 100), NULL, TIMESTAMP '2026-11-01' + to_seconds(i // 100),
NULL, 'u' || (i % 10000), 'u' || (i % 10000), 'p' || (i % 10000), NULL,
'{"feature":"reports","n":' || (i % 100) || '}', '{"ip":"127.0.0.1"}' FROM range($lo, $hi) t(i)"""


def filled(path: Path, variant: str, size: int) -> None:
    """A log of `size` events, checkpointed (no WAL left)."""
    if variant == "plain":
        con = duckdb.connect(str(path))
        con.execute(PLAIN)
        con.close()
    store = DuckDBEventStore(path)
    con = store._con
    for lo in range(0, size, 1_000_000):
        con.execute(FILL, {"lo": lo, "hi": min(size, lo + 1_000_000)})
    con.execute("CHECKPOINT")
    con.close()


def template() -> pa.Table:
    n = GROUP
    cols = {
        "workspace_id": ["ws_bench"] * n,
        "type": ["track"] * n,
        "name": ["feature_used"] * n,
        "timestamp": [NOW] * n,
        "original_timestamp": [NOW] * n,
        "sent_at": [None] * n,
        "received_at": [NOW] * n,
        "anonymous_id": [None] * n,
        "user_id": [f"u{i}" for i in range(n)],
        "distinct_id": [f"u{i}" for i in range(n)],
        "person_id": [f"person-{i:032d}" for i in range(n)],
        "account_id": [None] * n,
        "properties": [orjson.dumps({"feature": "reports", "n": i}).decode() for i in range(n)],
        "context": ['{"ip":"127.0.0.1"}'] * n,
    }
    return pa.table(
        [
            pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type)
            for f in EVENT_SCHEMA
        ],
        schema=EVENT_SCHEMA,
    )


def group(base: pa.Table, k: int) -> pa.Table:
    """The k-th group: the template with new event ids and sequence numbers."""
    lo = 10**9 + k * GROUP
    t = base.set_column(
        EVENT_SCHEMA.get_field_index("event_id"),
        "event_id",
        pa.array([f"b-{lo + i}" for i in range(GROUP)]),
    )
    return t.set_column(
        EVENT_SCHEMA.get_field_index("seq"), "seq", pa.array(range(lo, lo + GROUP), pa.int64())
    )


def run(path: Path, threshold_mb: int, events: int) -> dict[str, float]:
    store = DuckDBEventStore(path)
    store._con.execute(f"SET checkpoint_threshold = '{threshold_mb}MB'")
    wal = path.with_name(path.name + ".wal")
    base = template()
    lat: list[float] = []
    checkpoints: list[float] = []
    before = 0
    start = time.perf_counter()
    for k in range(events // GROUP):
        t = group(base, k)
        t0 = time.perf_counter()
        store.append(t)
        lat.append(time.perf_counter() - t0)
        size = wal.stat().st_size if wal.exists() else 0
        if size < before:
            checkpoints.append(lat[-1])
        before = size
    total = time.perf_counter() - start
    store._con.close()
    lat.sort()
    p50 = statistics.median(lat)
    return {
        "events_s": events / total,
        "p50": p50,
        "p99": lat[int(len(lat) * 0.99)],
        "max": lat[-1],
        "checkpoints": len(checkpoints),
        "checkpoint_ms": statistics.mean(checkpoints) * 1e3 if checkpoints else 0.0,
        "share": sum(c - p50 for c in checkpoints) / total,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[0, 2_000_000, 6_000_000])
    ap.add_argument("--events", type=int, default=600_000, help="appended in each run")
    ap.add_argument("--thresholds", type=int, nargs="+", default=[16, 64, 256], help="MB")
    ap.add_argument("--variants", nargs="+", default=["keyed", "plain"])
    a = ap.parse_args()
    print(f"{'log events':>10} {'table':>6} {'WAL MB':>6} {'events/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'ckpts':>5} {'ms each':>8} {'of time':>7}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            for variant in a.variants:
                src = Path(tmp) / f"{variant}-{size}.duckdb"
                filled(src, variant, size)
                for mb in a.thresholds:
                    path = Path(tmp) / "run.duckdb"
                    shutil.copyfile(src, path)
                    r = run(path, mb, a.events)
                    path.unlink()
                    print(f"{size:>10,} {variant:>6} {mb:>6} {r['events_s']:>9,.0f} "
                          f"{r['p50'] * 1e3:>7.1f} {r['p99'] * 1e3:>7.1f} {r['max'] * 1e3:>7.0f} "
                          f"{r['checkpoints']:>5} {r['checkpoint_ms']:>8.0f} {r['share']:>7.1%}",
                          flush=True)  # fmt: skip
                src.unlink()


if __name__ == "__main__":
    main()
