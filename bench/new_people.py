"""What the writer's identity step costs for people it has not seen (issue 10).

    .venv/bin/python bench/new_people.py [--groups 60]

Resolves groups of 200 events on a fresh SQLite StateStore, as the writer does: first
every event from a new user (each creates a person and an identity), then the same users
again (all cached: the baseline, measured in the same run). Prints the median per group
and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.settings import Settings

GROUP = 200


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--groups", type=int, default=60)
    a = ap.parse_args()
    now = datetime(2026, 12, 1, 10)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.open(Settings(data_dir=Path(tmp), log_json=False), start_writer=False)
        try:
            ws = ctx.workspaces.create_workspace("Bench").id
            resolver = ctx.writer.resolver
            timings: dict[str, list[float]] = {"new": [], "known": []}
            for phase in ("new", "known"):
                for g in range(a.groups):
                    items = [
                        (ws, normalize_segment({"type": "track", "event": "x",
                                                "userId": f"u{g}-{i}", "messageId": f"{phase}{g}-{i}",
                                                "timestamp": "2026-12-01T10:00:00Z"}, now))
                        for i in range(GROUP)
                    ]  # fmt: skip
                    started = time.perf_counter()
                    with ctx.state.session() as s:  # (committed, as the writer's session is)
                        res = resolver.resolve(s, items)
                    timings[phase].append(time.perf_counter() - started)
                    resolver.remember(res)
        finally:
            ctx.close()
    new, known = (statistics.median(timings[p]) for p in ("new", "known"))
    print(
        f"{GROUP} new people:   {new * 1000:6.2f} ms a group ({new / GROUP * 1e6:.0f} µs a person)"
    )
    print(f"{GROUP} known people: {known * 1000:6.2f} ms a group (baseline)")
    print(f"ratio: {new / known:.1f}x")


if __name__ == "__main__":
    main()
