"""A copy of a `make demo` data dir, for the benches that add events to it or move its
reactor cursors (the demo's own data dir is left as it was)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console


def demo_parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's arguments, starting with `--data`: the demo's data dir by default."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parent.parent / "traction-data"
    )
    return ap


@contextmanager
def demo_copy(data: Path, console: Console | None = None) -> Iterator[Path]:
    """A temporary copy of `data`, removed afterwards; exits saying how to make the data
    when there is none."""
    if not (data / "events.duckdb").exists():
        sys.exit(f"no data in {data}: run `make demo` (or `traction demo --no-serve`) first")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "data"
        with (console or Console(stderr=True)).status(f"copying {data} ..."):
            shutil.copytree(data, copy)
        yield copy
