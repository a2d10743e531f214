"""How fast the simulator fills a data dir (what `make demo` spends its time on): everything
in one process (the baseline, and the default) against chunks parsed, validated and encoded
in ingest processes while the next one is simulated (`ingest_processes`), alternating.

    .venv/bin/python bench/simulate.py [--people 4000] [--days 120] [--processes 2] [--runs 2]

Both runs write the same events through the real validation, identity and writer code into a
fresh SQLite + DuckDB data dir each; the ratio is what to compare on a noisy machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from traction.context import Context  # noqa: E402
from traction.settings import Settings  # noqa: E402
from traction.simulate.runner import run_simulation  # noqa: E402
from traction.simulate.world import SimulationParams  # noqa: E402


def one(params: SimulationParams, processes: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.open(Settings(data_dir=Path(tmp), log_json=False), start_writer=False)
        try:
            ws = ctx.workspaces.create_workspace("bench").id
            t0 = time.perf_counter()
            stats = run_simulation(ctx, ws, params, processes=processes)
            return stats.events, time.perf_counter() - t0
        finally:
            ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=4000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    params = SimulationParams(people=args.people, days=args.days, seed=7)
    base: list[float] = []
    now: list[float] = []
    for _ in range(args.runs):
        n, t = one(params, 0)
        base.append(t)
        _, t = one(params, args.processes)
        now.append(t)
    print(f"{n:,} events ({args.people:,} visitors, {args.days} days), best of {args.runs}\n")
    print(f"{'':<34}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    b, w = min(base), min(now)
    print(f"{'one process (baseline)':<34}{b:>9.2f}{n / b:>11,.0f}{1:>7.2f}")
    label = f"{args.processes} ingest processes"
    print(f"{label:<34}{w:>9.2f}{n / w:>11,.0f}{w / b:>7.2f}")


if __name__ == "__main__":
    main()
