"""How fast the catalog reactor keeps up, against the identity reactor on the same batches.

    .venv/bin/python bench/catalog.py [--people 4000] [--days 60]

Simulates a product into a fresh data dir (the real ingest pipeline), then hands the whole
log, in the reactor runner's batches of 5,000, to (a) the identity `seen` reactor, the
baseline (two min/max updates per person), and (b) the catalog reactor. Prints events/s for
each and the ratio: how long a fresh `make demo` server needs before the Data page is full.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from traction.catalog.reactors import CatalogReactor  # noqa: E402
from traction.catalog.service import CatalogService  # noqa: E402
from traction.context import Context  # noqa: E402
from traction.identity.reactors import SeenReactor  # noqa: E402
from traction.settings import Settings  # noqa: E402
from traction.simulate.runner import run_simulation  # noqa: E402
from traction.simulate.world import SimulationParams  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=4000)
    ap.add_argument("--days", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="traction-bench-catalog-"))
    ctx = Context.open(Settings(data_dir=tmp, log_json=False))
    ws = ctx.workspaces.create_workspace("bench").id
    run_simulation(ctx, ws, SimulationParams(people=args.people, days=args.days))
    n = ctx.events.count(ws)
    print(f"{n:,} simulated events")
    results = {}
    for reactor in (SeenReactor(ctx.state), CatalogReactor(CatalogService(ctx.state))):
        pos, t0, read = 0, time.perf_counter(), 0.0
        while True:
            r0 = time.perf_counter()
            batch = ctx.events.events_after(pos, 5_000, reactor.columns)
            read += time.perf_counter() - r0
            if not batch:
                break
            reactor.handle(batch)
            pos = int(batch[-1]["seq"])
        total = time.perf_counter() - t0
        results[reactor.name] = total
        print(
            f"{reactor.name:<16} {n / total:>10,.0f} events/s  ({total:.1f} s, of which reading the log {read:.1f} s)"
        )
    print(f"catalog / seen time = {results['catalog'] / results['identity.seen']:.2f}")
    events = CatalogService(ctx.state).events(ws)
    print(f"catalogued: {len(events)} events, volume {sum(e['volume'] for e in events):,}")
    ctx.close()


if __name__ == "__main__":
    main()
