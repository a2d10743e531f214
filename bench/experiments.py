"""Experiment analysis at scale: 10 metrics over 10 million events, cold.

    .venv/bin/python bench/experiments.py [--events 10000000] [--units 200000] [--runs 3]

Timed with DuckDB's default threads here (one core fewer than the machine has, so ingestion
keeps one) and with every core (`query_threads = 0`).

Builds a data dir whose event log holds --units exposed people (one `$experiment_viewed`
each, 50/50) and --events metric events among them over 30 days (generated inside DuckDB: the
bench measures the analysis, not the ingestion), then times `ExperimentService.results` for an
experiment with 10 metrics (conversion, count, sum, ratio, retention), each with CUPED's
pre-period, on a fresh service every run (nothing cached). Baseline in the same run: one
plain `count(*) GROUP BY name` scan of the same events, the least any analysis must read.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

NAMES = ["activated", "project_created", "report_created", "purchase", "session_started",
         "dashboard_viewed", "invite_sent", "export_done", "error_shown", "search"]  # fmt: skip


def metrics() -> list[dict[str, object]]:
    ev = lambda n: {"event": n}  # noqa: E731
    return [
        {"key": "activated", "kind": "conversion", "event": ev("activated"), "window_days": 7},
        {"key": "projects", "kind": "count", "event": ev("project_created")},
        {"key": "reports", "kind": "count", "event": ev("report_created")},
        {"key": "spend", "kind": "sum", "event": ev("purchase"), "property": "amount"},
        {"key": "sessions", "kind": "count", "event": ev("session_started")},
        {"key": "views_per_session", "kind": "ratio", "event": ev("dashboard_viewed"), "denominator": ev("session_started")},
        {"key": "invited", "kind": "conversion", "event": ev("invite_sent")},
        {"key": "exports", "kind": "count", "event": ev("export_done")},
        {"key": "errors", "kind": "count", "event": ev("error_shown"), "direction": "down"},
        {"key": "d7", "kind": "retention", "event": ev("search"), "day": 7},
    ]  # fmt: skip


def build(data: Path, events: int, units: int) -> str:
    from traction.context import Context
    from traction.settings import Settings

    ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
    ws = ctx.workspaces.create_workspace("Bench").id
    doc = {"variations": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
           "primary": metrics()[:1], "secondary": metrics()[1:], "cuped": True}  # fmt: skip
    ctx.experiments.put(ws, "exp", doc)
    ctx.close()
    con = duckdb.connect(str(data / "events.duckdb"))
    names = "[" + ", ".join(f"'{n}'" for n in NAMES) + "]"
    common = ("md5_number($ws || chr(0) || id), $ws, id, seq, 'track', name, ts, NULL, NULL, ts, NULL, "
              "u, u, u, NULL, props, NULL")  # fmt: skip
    con.execute(
        f"INSERT INTO events SELECT {common} FROM (SELECT 'x' || i AS id, i + 1 AS seq, '$experiment_viewed' AS name, "
        "TIMESTAMP '2026-03-01' + to_microseconds(i * 3600 * 24 * 10 * 1000000 // $units) AS ts, 'u' || i AS u, "
        "json_object('experiment_id', 'exp', 'variation_id', i % 2) AS props FROM range($units) t(i))",
        {"ws": ws, "units": units},
    )  # fmt: skip
    con.execute(
        f"INSERT INTO events SELECT {common} FROM (SELECT 'e' || i AS id, i + $units + 1 AS seq, "
        f"{names}[1 + (hash(i) % 10)::INT] AS name, "
        "TIMESTAMP '2026-02-20' + to_microseconds((hash(i * 7) % (3600 * 24 * 30))::BIGINT * 1000000) AS ts, "
        "'u' || (hash(i * 13) % $units)::BIGINT AS u, json_object('amount', (hash(i) % 100)::INT) AS props "
        "FROM range($events) t(i))",
        {"ws": ws, "units": units, "events": events},
    )  # fmt: skip
    con.execute("CHECKPOINT")
    con.close()
    return ws


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--units", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t = time.perf_counter()
        ws = build(data, a.events, a.units)
        print(
            f"built {a.events:,} metric events for {a.units:,} exposed units in {time.perf_counter() - t:.1f} s"
        )
        rows = []
        for threads in (None, 0):
            scan, full, res = _time(data, ws, a.runs, threads)
            rows.append((threads, scan, full))
        print(
            f"units {res['units']}, SRM p {res['srm_p_value']:.3g}, {len(res['results'])} metric results"
        )
        print(f"\n{'':<52}{'seconds':>9}{'vs scan':>9}")
        for threads, scan, full in rows:
            label = "default threads" if threads is None else "every core"
            print(f"{'one scan of the events (' + label + ')':<52}{scan:>9.3f}{1:>9.2f}")
            print(
                f"{'experiment results, 10 metrics, cold (' + label + ')':<52}{full:>9.3f}{full / scan:>9.2f}"
            )


def _time(
    data: Path, ws: str, runs: int, threads: int | None
) -> tuple[float, float, dict[str, Any]]:
    from traction.context import Context
    from traction.settings import Settings

    timings, scans = [], []
    for _ in range(runs):
        ctx = Context.open(
            Settings(data_dir=data, log_json=False, query_threads=threads), start_writer=False
        )
        try:
            t = time.perf_counter()
            with ctx.events.reading() as cur:
                cur.execute(
                    "SELECT name, count(*) FROM events WHERE workspace_id = ? GROUP BY 1", [ws]
                ).fetchall()
            scans.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = ctx.experiments.results(ws, "exp")
            timings.append(time.perf_counter() - t)
        finally:
            ctx.close()
    return statistics.median(scans), statistics.median(timings), res


if __name__ == "__main__":
    main()
