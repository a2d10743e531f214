"""How fast the simulator fills a data dir (what `make demo` spends its time on): days sent
one by one (the baseline, as before) against days gathered into 50k-event batches (now).

    .venv/bin/python bench/simulate.py [--people 4000] [--days 120]

Both runs write the same events through the real validation, identity and writer code into a
fresh SQLite + DuckDB data dir each; the ratio is what to compare on a noisy machine.
"""

from __future__ import annotations

import argparse
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


def one(params: SimulationParams, chunk: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.open(Settings(data_dir=Path(tmp), log_json=False), start_writer=False)
        try:
            ws = ctx.workspaces.create_workspace("bench").id
            t0 = time.perf_counter()
            stats = run_simulation(ctx, ws, params, chunk=chunk)
            return stats.events, time.perf_counter() - t0
        finally:
            ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--people", type=int, default=4000)
    ap.add_argument("--days", type=int, default=120)
    args = ap.parse_args()
    params = SimulationParams(people=args.people, days=args.days, seed=7)
    # a day is ~1/120 of the events: chunk=1 sends each day as it comes, as before
    n, base = one(params, chunk=1)
    _, now = one(params, chunk=50_000)
    print(f"{n:,} events ({args.people:,} visitors, {args.days} days)\n")
    print(f"{'':<34}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    print(f"{'day by day (baseline)':<34}{base:>9.2f}{n / base:>11,.0f}{1:>7.2f}")
    print(f"{'50k-event batches (now)':<34}{now:>9.2f}{n / now:>11,.0f}{now / base:>7.2f}")


if __name__ == "__main__":
    main()
