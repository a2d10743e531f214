"""How fast the reactors follow the log: what the server does after `make demo` (the demo
build runs only the journeys; catalog, seen and meters catch up when the server starts) and
what they cost while ingestion goes on.

    .venv/bin/python bench/reactors.py [--data traction-data] [--batch 5000]

On a copy of a data dir whose catalog, seen and meter cursors are behind (a fresh demo build:
at 0), runs the server's reactors over the whole log, one shared read per batch as the server
does, and times the read and each reactor. The baseline is the read of the log itself (the
reactors cannot be faster than reading what they follow): each reactor's time is printed as a
ratio to it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from demo_copy import demo_copy, demo_parser  # noqa: E402
from rich.console import Console  # noqa: E402

from traction.context import Context  # noqa: E402
from traction.settings import Settings  # noqa: E402
from traction.worker import ReactorRunner, default_reactors  # noqa: E402


def main() -> None:
    ap = demo_parser(__doc__)
    ap.add_argument("--batch", type=int, default=5_000)
    args = ap.parse_args()
    console = Console()
    with demo_copy(args.data, console) as copy:
        ctx = Context.open(Settings(data_dir=copy, log_json=False), start_writer=False)
        try:
            reactors = default_reactors(ctx.state, ctx.catalog, ctx.billing, ctx.engage.engine)
            runner = ReactorRunner(ctx.state, ctx.events, reactors, ctx.metrics,
                                   batch_size=args.batch)  # fmt: skip
            head = ctx.events.max_seq()
            behind = {r.name: head - runner.position(r.name) for r in reactors}
            spent: dict[str, float] = {"read the log": 0.0}
            for r in reactors:
                spent[r.name] = 0.0
                r.handle = _timed(r.handle, r.name, spent)  # type: ignore[method-assign]
            read = ctx.events.events_after

            def timed_read(*a: Any, **k: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return read(*a, **k)
                finally:
                    spent["read the log"] += time.perf_counter() - t0

            ctx.events.events_after = timed_read  # type: ignore[method-assign]
            with console.status(f"catching up on {head:,} events ..."):
                t0 = time.perf_counter()
                runner.run_once()
                total = time.perf_counter() - t0
        finally:
            ctx.close()
    base = spent["read the log"]
    print(f"reactors catching up on {head:,} events (batches of {args.batch:,}): {total:.1f} s\n")
    print(f"{'':<22}{'behind':>12}{'seconds':>10}{'us/event':>10}{'vs read':>9}")
    for name, seconds in spent.items():
        n = behind.get(name, max(behind.values()))
        per = seconds / n * 1e6 if n else 0.0
        print(f"{name:<22}{n:>12,}{seconds:>10.1f}{per:>10.2f}{seconds / base:>9.2f}")


def _timed(handle: Any, name: str, spent: dict[str, float]) -> Any:
    def run(batch: Any) -> None:
        t0 = time.perf_counter()
        try:
            handle(batch)
        finally:
            spent[name] += time.perf_counter() - t0

    return run


if __name__ == "__main__":
    main()
