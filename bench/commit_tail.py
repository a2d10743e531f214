"""Where the writer's slow commits come from: DuckDB's automatic checkpoints (issue 10).

    .venv/bin/python bench/commit_tail.py [--groups 2000] [--threshold 16MB ...]

Appends groups of 200 events (the writer's group commit at 4 connections; the events
table's schema and primary key, through `DuckDBEventStore.append`) to a fresh file for each
`checkpoint_threshold`, and prints the median append, the slow ones (over 3 times the median:
the checkpoints, when the WAL reaches the threshold) and their ratio to the median. The
baseline is the median append of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from traction.ingest.domain import normalize_segment
from traction.ingest.prepare import encode
from traction.store.events import EVENT_SCHEMA, DuckDBEventStore

GROUP = 200


def group(g: int, now: datetime) -> pa.Table:
    evs = [
        normalize_segment({"type": "track", "event": "feature_used", "userId": f"u{i}",
                           "messageId": f"{g}-{i}", "timestamp": "2026-12-01T10:00:00Z",
                           "properties": {"feature": "reports", "n": i}}, now)
        for i in range(GROUP)
    ]  # fmt: skip
    rows = encode(evs)
    filled = {
        "workspace_id": pa.array(["ws_bench"] * GROUP),
        "seq": pa.array(range(g * GROUP + 1, (g + 1) * GROUP + 1), pa.int64()),
        "person_id": pa.array([f"p{i}" for i in range(GROUP)]),
        "account_id": pa.array([None] * GROUP, pa.string()),
    }
    return pa.table(
        [filled[f.name] if f.name in filled else rows.column(f.name) for f in EVENT_SCHEMA],
        schema=EVENT_SCHEMA,
    )


def run(groups: int, threshold: str) -> None:
    now = datetime(2026, 12, 1, 10)
    tables = [group(g, now) for g in range(groups)]  # built first: only appends are timed
    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBEventStore(Path(tmp) / "events.duckdb", threads=1)
        store._con.execute(f"SET checkpoint_threshold = '{threshold}'")
        times = []
        for table in tables:
            started = time.perf_counter()
            store.append(table)
            times.append(time.perf_counter() - started)
        store.close()
    median = statistics.median(times)
    slow = [(i, t) for i, t in enumerate(times) if t > 3 * median]
    shown = ", ".join(f"#{i} {t * 1000:.0f} ms ({t / median:.0f}x)" for i, t in slow[:8])
    print(f"threshold {threshold:>6}: median {median * 1000:5.1f} ms, "
          f"{len(slow)} slow of {groups}: {shown or 'none'}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--threshold", nargs="+", default=["16MB", "64MB", "4MB"])
    a = ap.parse_args()
    for threshold in a.threshold:
        run(a.groups, threshold)


if __name__ == "__main__":
    main()
