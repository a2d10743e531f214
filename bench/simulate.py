"""How fast the simulator fills a data dir (what `make demo` spends its time on), in the demo's
workspace set-up (plans, flags, the rollout, journeys): everything in one process (the
baseline) against the default (the days before the first journey or rollout simulated,
validated and encoded in a process of their own: `simulate/ahead.py`) and against ingest
processes for the chunks (`ingest_processes`), alternating.

    .venv/bin/python bench/simulate.py [--people 4000] [--days 120] [--processes 2] [--runs 2]

(`--people 20000` is the demo.) Every run writes the same events through the real
validation, identity and writer code into a fresh SQLite + DuckDB data dir; the ratio is
what to compare on a noisy machine.
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
from traction.simulate.demo import configure_demo  # noqa: E402
from traction.simulate.runner import run_simulation  # noqa: E402
from traction.simulate.world import SimulationParams  # noqa: E402


def one(params: SimulationParams, processes: int, ahead: bool) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.open(Settings(data_dir=Path(tmp), log_json=False), start_writer=False)
        try:
            ws = ctx.workspaces.create_workspace("bench").id
            configure_demo(ctx, ws)
            t0 = time.perf_counter()
            with ctx.state.bulk_load():  # as the demo builds
                stats = run_simulation(ctx, ws, params, processes=processes, ahead=ahead)
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
    modes = {
        "one process (baseline)": (0, False),
        "days ahead in a process (default)": (0, True),
        f"{args.processes} ingest processes, no days ahead": (args.processes, False),
    }
    times: dict[str, list[float]] = {label: [] for label in modes}
    for _ in range(args.runs):
        for label, (processes, ahead) in modes.items():
            n, t = one(params, processes, ahead)
            times[label].append(t)
    print(f"{n:,} events ({args.people:,} visitors, {args.days} days), best of {args.runs}\n")
    print(f"{'':<44}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    base = min(times["one process (baseline)"])
    for label, ts in times.items():
        print(f"{label:<44}{min(ts):>9.2f}{n / min(ts):>11,.0f}{min(ts) / base:>7.2f}")


if __name__ == "__main__":
    main()
