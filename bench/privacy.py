"""What an erasure and a purge cost, and how long ingestion waits during a purge.

    .venv/bin/python bench/privacy.py [--events 1000000] [--people 20000]

Builds a fresh data dir with synthetic events (in the same run), then measures:
- erasing one person (their events found, deleted, the catalog scrubbed);
- a purge (the file rewritten without deleted rows) while a thread keeps committing
  100-event batches: commit latency during the purge against the same thread's latency just
  before it;
- the baseline: a one-step rewrite (`COPY FROM DATABASE` of the whole file), which is how
  long ingestion would wait if the purge held the writer throughout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rich.progress import Progress  # noqa: E402

from traction.context import Context  # noqa: E402
from traction.ingest.domain import normalize_segment  # noqa: E402
from traction.ingest.service import now_utc  # noqa: E402
from traction.settings import Settings  # noqa: E402


def build(ctx: Context, ws: str, events: int, people: int) -> None:
    chunk = 20_000
    with Progress() as bar:
        task = bar.add_task("writing events", total=events)
        for start in range(0, events, chunk):
            now = now_utc()
            msgs = [
                {"type": "track", "userId": f"user-{i % people}", "event": f"e{i % 20}",
                 "properties": {"plan": "pro", "n": i, "email": f"user-{i % people}@example.com"},
                 "timestamp": f"2026-0{1 + i % 9}-1{i % 10}T10:00:00Z", "messageId": f"m{i}"}
                for i in range(start, min(events, start + chunk))
            ]  # fmt: skip
            ctx.writer.write_now([(ws, normalize_segment(m, now)) for m in msgs])
            bar.advance(task, len(msgs))


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--people", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.open(
            Settings(data_dir=Path(tmp) / "data", log_json=False), start_writer=False
        )
        ws = ctx.workspaces.create_workspace("Bench").id
        build(ctx, ws, args.events, args.people)
        ctx.writer.start()

        t = time.perf_counter()
        erasure = ctx.privacy.delete_person(ws, "user-7")
        erase_s = time.perf_counter() - t

        latencies: list[tuple[float, float]] = []  # (when it finished, seconds)
        stop = threading.Event()

        def ingest() -> None:
            n = 0
            while not stop.is_set():
                now = now_utc()
                msgs = [{"type": "track", "userId": "live", "event": "e", "messageId": f"l{n}-{j}"}
                        for j in range(100)]  # fmt: skip
                t0 = time.perf_counter()
                ctx.writer.submit([(ws, normalize_segment(m, now)) for m in msgs]).result()
                latencies.append((time.perf_counter(), time.perf_counter() - t0))
                n += 1

        th = threading.Thread(target=ingest)
        th.start()
        time.sleep(3)
        purge_start = time.perf_counter()
        result = ctx.privacy.purge()
        purge_end = time.perf_counter()
        stop.set()
        th.join()
        before = [s for at, s in latencies if purge_start - 3 <= at < purge_start]
        during = [s for at, s in latencies if purge_start <= at <= purge_end + 0.5]

        # baseline: the whole file copied in one step (the writer would wait all along)
        with ctx.events.reading() as cur:
            db = cur.execute("SELECT current_database()").fetchall()[0][0]
            target = Path(tmp) / "one-step.duckdb"
            t = time.perf_counter()
            cur.execute(f"ATTACH '{target}' AS one_step")
            cur.execute(f'COPY FROM DATABASE "{db}" TO one_step')
            cur.execute("DETACH one_step")
            one_step_s = time.perf_counter() - t
        ctx.close()

    print(f"events: {args.events:,}, people: {args.people:,}")
    print(f"erase one person ({erasure.events:,} events): {erase_s * 1000:,.0f} ms")
    print(
        f"purge: {result.seconds:.2f} s, file {result.bytes_before / 1e6:,.1f} MB -> {result.bytes_after / 1e6:,.1f} MB"
    )
    print(f"commit latency before the purge: p50 {statistics.median(before) * 1000:.1f} ms, "
          f"p99 {percentile(before, 0.99) * 1000:.1f} ms, max {max(before) * 1000:.1f} ms ({len(before)} batches)")  # fmt: skip
    print(f"commit latency during the purge: p50 {statistics.median(during) * 1000:.1f} ms, "
          f"p99 {percentile(during, 0.99) * 1000:.1f} ms, max {max(during) * 1000:.1f} ms ({len(during)} batches)")  # fmt: skip
    print(
        f"baseline one-step rewrite (the writer's wait if it held the writer): {one_step_s:.2f} s"
    )
    print(
        f"ratio: longest ingest wait during the purge / one-step rewrite = "
        f"{max(during) / one_step_s:.2f}"
    )


if __name__ == "__main__":
    main()
