"""Reading event files for `traction import`: NDJSON, CSV or Parquet, one Segment message a row.

CSV/Parquet columns are Segment keys; `properties`, `traits` and `context` may be JSON text,
and `properties.plan` style columns fill nested keys. Each row keeps its line number so
errors can point at it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

NESTED = ("properties", "traits", "context", "integrations")
Row = tuple[int, Any]  # (line number, message or an error string)


class RowError(str):
    """A row that could not even be read as a message."""


def _unflatten(record: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or value == "":
            continue
        if key in NESTED and isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                return {"__error__": f"column {key} is not valid JSON"}
        head, dot, rest = key.partition(".")
        if dot and head in NESTED:
            out.setdefault(head, {})[rest] = value
        else:
            out[key] = value
    return out


def read_rows(path: Path) -> Iterator[Row]:
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".jsonl", ".json"):
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    yield n, RowError(f"not valid JSON: {e}")
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            for n, record in enumerate(csv.DictReader(f), 2):
                msg = _unflatten(record)
                yield n, RowError(msg["__error__"]) if "__error__" in msg else msg
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            for record in batch.to_pylist():
                n += 1
                for k, v in list(record.items()):
                    if hasattr(v, "isoformat"):
                        record[k] = v.isoformat()
                msg = _unflatten(record)
                yield n, RowError(msg["__error__"]) if "__error__" in msg else msg
    else:
        raise ValueError(f"unsupported file type {suffix!r}: use .ndjson, .jsonl, .csv or .parquet")


def count_rows(path: Path) -> int | None:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        return sum(1 for _ in f) - (1 if suffix == ".csv" else 0)
