"""Which commits a DuckDB checkpoint holds up, and which it does not (issue 10).

    .venv/bin/python bench/checkpoint_locks.py [--sleep-ms 500]

The wrk bench's worst latencies are the writer's commits that wait for a checkpoint. DuckDB's
release notes since 1.5 speak of commits running during checkpoints; this checks what the
installed DuckDB does, with its `debug_checkpoint_scan_sleep_ms` setting stretching each
table's part of a checkpoint so that the waits are plain to see:

1. a `CHECKPOINT` on one connection, one-row inserts into each of the file's tables from
   other threads: when does each insert return?
2. the same, with the inserts going to a second file ATTACHed to the same database instance.
3. an automatic checkpoint (the WAL crossing `checkpoint_threshold` inside one writer's
   commit) and another writer's insert into another table meanwhile.

The baseline is an insert with no checkpoint running, timed in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import duckdb

TABLES = "abcd"


def _timed(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    t0 = time.perf_counter()
    con.cursor().execute(sql)
    return time.perf_counter() - t0


def _during(
    con: duckdb.DuckDBPyConnection, checkpoint_sql: str, inserts: list[str]
) -> tuple[float, list[float]]:
    """Start `checkpoint_sql`, then the inserts, each on its own thread; their durations."""
    took: dict[str, float] = {}
    ck = threading.Thread(target=lambda: took.__setitem__("ck", _timed(con, checkpoint_sql)))
    ck.start()
    time.sleep(0.05)  # the checkpoint has begun
    workers = [
        threading.Thread(target=lambda q=q: took.__setitem__(q, _timed(con, q))) for q in inserts
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ck.join()
    return took["ck"], [took[q] for q in inserts]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sleep-ms", type=int, default=500, help="DuckDB's per-table stretch")
    args = ap.parse_args()
    print(
        f"duckdb {duckdb.__version__}, each table's part of a checkpoint stretched by {args.sleep_ms} ms"
    )
    with tempfile.TemporaryDirectory() as tmp:
        main_file, hot_file = Path(tmp) / "main.duckdb", Path(tmp) / "hot.duckdb"
        con = duckdb.connect(str(main_file))
        con.execute(f"ATTACH '{hot_file}' AS hot")
        db = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        for t in TABLES:
            con.execute(f"CREATE TABLE {t} (x INTEGER, s VARCHAR)")
        con.execute("CREATE TABLE hot.h (x INTEGER, s VARCHAR)")
        con.execute("SET checkpoint_threshold = '100GB'")
        baseline = _timed(con, "INSERT INTO a VALUES (0, 'baseline')")
        print(f"insert, no checkpoint running: {baseline * 1e3:.1f} ms")
        con.execute(f"SET debug_checkpoint_scan_sleep_ms = {args.sleep_ms}")

        def fill() -> None:
            for t in TABLES:  # something for the checkpoint to write in every table
                con.execute(f"INSERT INTO {t} SELECT i, 'v' || i FROM range(1000) r(i)")
            con.execute("INSERT INTO hot.h SELECT i, 'v' || i FROM range(1000) r(i)")

        fill()
        ck, waits = _during(
            con, f'CHECKPOINT "{db}"', [f"INSERT INTO {t} VALUES (1, 'z')" for t in TABLES]
        )
        print(
            f"1. CHECKPOINT of the main file: {ck * 1e3:.0f} ms; inserts into its tables "
            + ", ".join(f"{t} {w * 1e3:.0f} ms" for t, w in zip(TABLES, waits, strict=True))
        )
        fill()
        ck, waits = _during(con, f'CHECKPOINT "{db}"', ["INSERT INTO hot.h VALUES (1, 'z')"] * 1)
        print(
            f"2. CHECKPOINT of the main file: {ck * 1e3:.0f} ms; insert into the attached file "
            f"{waits[0] * 1e3:.1f} ms"
        )
        con.execute(f'CHECKPOINT "{db}"')
        con.execute("SET checkpoint_threshold = '1MB'")
        writer = con.cursor()
        slow = 0.0
        other: list[float] = []
        done = threading.Event()

        def prober() -> None:
            while not done.is_set():
                other.append(_timed(con, "INSERT INTO b VALUES (2, 'z')"))
                time.sleep(0.01)

        probe = threading.Thread(target=prober)
        probe.start()
        for k in range(400):  # small commits until one crosses the threshold and checkpoints
            t = _timed(
                writer,
                f"INSERT INTO a SELECT i, 'w' || i FROM range({k * 2000}, {k * 2000 + 2000}) r(i)",
            )
            if t > args.sleep_ms / 1e3:
                slow = t
                break
        done.set()
        probe.join()
        print(
            f"3. automatic checkpoint inside a commit to a: {slow * 1e3:.0f} ms; the slowest insert "
            f"into b meanwhile {max(other) * 1e3:.0f} ms"
        )
        con.close()


if __name__ == "__main__":
    main()
