"""The event log's side journal: appends acknowledged while the log's file checkpoints.

Why: a DuckDB checkpoint holds up every commit into its file until it ends (0.2-1 s here,
`bench/checkpoint_locks.py`), and the writer's requests with it. While the EventStore
checkpoints in the background, it writes each append here instead, fsyncs, and answers; once
the checkpoint is done it moves what it held into the file, a chunk at a time, in order. An
entry is applied in the same DuckDB transaction that records its id as applied
(`journal_applied`), so a restart applies exactly the entries after that id, whatever moment
a crash chose.

A record: a header (entry id, the two lengths, a CRC-32 of both parts), the merges and traits
as JSON, and the rows as an Arrow IPC stream. A record cut short by a crash was never
acknowledged (the fsync comes before the answer): reading stops at the first record that is
incomplete or whose CRC does not match.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

_HEADER = struct.Struct("<QIII")  # entry id, meta length, rows length, crc32(meta + rows)


@dataclass
class Entry:
    """One acknowledged append: the rows, and the merges and traits that came with them (as
    `(workspace, old person, person)` and `(workspace, kind, key, traits)` tuples)."""

    id: int
    table: pa.Table
    merges: list[tuple[str, str, str]] = field(default_factory=list)
    traits: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)


def encode(entry: Entry) -> bytes:
    meta = orjson.dumps({"merges": entry.merges, "traits": entry.traits})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, entry.table.schema) as w:
        w.write_table(entry.table)
    rows = sink.getvalue().to_pybytes()
    crc = zlib.crc32(rows, zlib.crc32(meta))
    return _HEADER.pack(entry.id, len(meta), len(rows), crc) + meta + rows


def decode_all(data: bytes) -> list[Entry]:
    """The whole records, in order, up to the first cut short or damaged one."""
    out: list[Entry] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        entry_id, n_meta, n_rows, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        end = start + n_meta + n_rows
        if end > len(data):
            break
        meta, rows = data[start : start + n_meta], data[start + n_meta : end]
        if zlib.crc32(rows, zlib.crc32(meta)) != crc:
            break
        parsed = orjson.loads(meta)
        out.append(
            Entry(
                entry_id,
                pa.ipc.open_stream(rows).read_all(),
                [tuple(m) for m in parsed["merges"]],  # type: ignore[misc]
                [tuple(t) for t in parsed["traits"]],  # type: ignore[misc]
            )
        )
        pos = end
    return out


class Journal:
    """One append-only file beside the log; emptied (not removed) once applied."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._damaged = False

    def write(self, entry: Entry) -> None:
        """On disk when this returns. A write that fails (a full disk) is cut off again:
        reading stops at a damaged record, so the next one must not come after it."""
        if self._damaged:
            raise OSError(f"{self.path} could not be cut back after a failed write: restart")
        f = self._open()
        start = f.tell()
        try:
            f.write(encode(entry))
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            try:
                f.truncate(start)
            except OSError:
                self._damaged = True
            raise

    def read(self) -> list[Entry]:
        if not self.path.exists():
            return []
        return decode_all(self.path.read_bytes())

    def clear(self) -> None:
        """Every entry is applied: the file starts again empty."""
        if self._file is None and not self.path.exists():
            return
        f = self._open()
        f.truncate(0)
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            created = not self.path.exists()
            self._file = open(self.path, "ab")  # noqa: SIM115  (kept open; closed by `close`)
            if created:  # the file's name must survive a crash as well as its bytes
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        return self._file
