"""What the events table's primary key (the dedupe index) costs as the log grows (issue 10).

    .venv/bin/python bench/dedupe_index.py [--rows 10000000] [--batch 2000]

Two DuckDB files in the same run, the same rows: one table with the events table's hashed
primary key (`dedupe_key UHUGEINT PRIMARY KEY`, md5 of workspace and event id), one without
(the baseline). Both are filled with large batches up to each size, then timed appending
100 commits of `--batch` new rows (the writer's group commit), and the time per row and the
ratio are printed at each size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

KEYED = "dedupe_key UHUGEINT NOT NULL PRIMARY KEY, "
COLUMNS = "workspace_id VARCHAR, event_id VARCHAR, seq BIGINT, properties VARCHAR"
# rows made inside DuckDB (no Python per row): what is measured is the insert and its index
ROWS = """SELECT {key}'ws_bench', 'evt-' || i::VARCHAR, i, '{{"feature":"reports","n":3}}'
FROM range($lo, $hi) t(i)"""


def fill(con: duckdb.DuckDBPyConnection, keyed: bool, lo: int, hi: int) -> None:
    key = "md5_number('ws_bench' || chr(0) || 'evt-' || i::VARCHAR), " if keyed else ""
    con.execute("BEGIN")
    con.execute(f"INSERT INTO events {ROWS.format(key=key)}", {"lo": lo, "hi": hi})
    con.execute("COMMIT")


def timed_commits(con: duckdb.DuckDBPyConnection, keyed: bool, start: int, batch: int) -> float:
    """Seconds per row over 100 commits of `batch` rows."""
    t0 = time.perf_counter()
    for k in range(100):
        fill(con, keyed, start + k * batch, start + (k + 1) * batch)
    return (time.perf_counter() - t0) / (100 * batch)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=2_000)
    a = ap.parse_args()
    sizes = [s for s in (1_000_000, 5_000_000, 10_000_000, 20_000_000) if s <= a.rows]
    with tempfile.TemporaryDirectory() as tmp:
        cons = {}
        for keyed in (True, False):
            con = duckdb.connect(str(Path(tmp) / f"{keyed}.duckdb"))
            con.execute(f"CREATE TABLE events ({KEYED if keyed else ''}{COLUMNS})")
            cons[keyed] = con
        print(
            f"{'rows in the table':>18} {'keyed µs/row':>13} {'plain µs/row':>13} {'ratio':>6} {'fill keyed s':>13} {'fill plain s':>13}"
        )
        done = 0
        for size in sizes:
            fills = {}
            for keyed, con in cons.items():
                t0 = time.perf_counter()
                for lo in range(done, size, 1_000_000):
                    fill(con, keyed, lo, min(size, lo + 1_000_000))
                fills[keyed] = time.perf_counter() - t0
            done = size
            per = {k: timed_commits(con, k, 10**12 + size, a.batch) for k, con in cons.items()}
            print(f"{size:>18,} {per[True] * 1e6:>13.2f} {per[False] * 1e6:>13.2f} "
                  f"{per[True] / per[False]:>6.1f} {fills[True]:>13.1f} {fills[False]:>13.1f}", flush=True)  # fmt: skip
        for con in cons.values():
            con.close()


if __name__ == "__main__":
    main()
