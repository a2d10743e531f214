"""How often CPython's cycle collector runs, in a server and during bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# young collections every 10,000 new containers (not 700), a full one after 100 of the middle
# generation's (not 10): see `fewer_collections` and `for_a_server` for what they saved
THRESHOLDS = (10_000, 20, 100)


def for_a_server() -> None:
    """Once a server process has built its app: what exists now (modules, the app, its
    services) lives as long as the process, so it is moved out of the collector's sight
    (`gc.freeze`) and each full collection walks only what came after, and collections run
    less often. Under the ingest bench's load at 16 connections the collector took 3.5 s of
    each 12-second run here, 2.5 s of it in 16 full collections of 160 ms each, with the GIL
    held (a pause for every request in flight). With this: 0.7 s and none; the p99 at 4
    connections went from 210-250 ms to 105-115 ms (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def fewer_collections(
    gen0: int = THRESHOLDS[0], gen1: int = THRESHOLDS[1], gen2: int = THRESHOLDS[2]
) -> Iterator[None]:
    """Bulk work (the demo's simulation) keeps millions of objects alive. With CPython's
    default thresholds (700, 10, 10) the collector walks all of them again and again:
    `make demo` ran 106 full collections, 24 s of its 3 minutes. With these, young cycles
    are still collected (in larger batches) and the demo ran none; its peak memory was the
    same (921 and 923 MB). The thresholds before are restored after."""
    before = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
    try:
        yield
    finally:
        gc.set_threshold(*before)
