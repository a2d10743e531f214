"""The head of the event log in memory: the rows the latest appends stored, as Arrow.

Why: the reactors follow the log's head, a few hundred to a few thousand events behind. In
the embedded shape the server read each of their batches back from DuckDB (a scan and a
join with `person_overrides`) to serve the reactor process, on the same two cores that
take the requests, while the rows were still in memory from the append. The tail keeps
them and answers such a read exactly as the file would, or declines and the file answers.

What keeps it exact: it holds every stored row with `start < seq <= end`, as written.
- Only an append that stored every row it was given and merged nobody extends it: a plain
  INSERT (it fails whole on a duplicate). An INSERT OR IGNORE stored rows we do not know,
  and a merge changes how earlier rows resolve their person, so either empties it and it
  starts again at the new end. So does a delete and a purge.
- The rows of an append that merged nobody need no resolving: the writer gives a merged
  person's later events the surviving person's id (the merge moved their identities), so
  no override names them.
- A read that reaches past `end` (the file has a commit the tail has not been told of yet)
  is answered only if it fills its limit before `end`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

# its memory by default: the latest appends' tables up to this size (the buffers they hold)
TAIL_MB = 64


class LogTail:
    def __init__(self, schema: pa.Schema, end: int, max_bytes: int = TAIL_MB * 2**20) -> None:
        """`schema`: the appended tables'; `end`: the log's last seq when it opens (nothing
        after it is stored); `max_bytes` 0: it holds nothing and answers nothing."""
        self.schema = schema
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._start = self._end = end
        self._tables: deque[tuple[int, int, pa.Table]] = deque()  # (first seq, last seq, rows)
        self._bytes = 0

    def stored(self, table: pa.Table) -> None:
        """Every row of `table` was stored (and nobody was merged)."""
        if not table.num_rows or not self.max_bytes:
            return
        seqs = table.column("seq")
        first, last = pc.min(seqs).as_py(), pc.max(seqs).as_py()
        ordered = table.num_rows == 1 or bool(
            pc.all(pc.greater(seqs[1:], seqs[:-1])).as_py()
        )  # (the writer's are: seq is numbered as the rows are)
        with self._lock:
            if not ordered or first <= self._end:
                self._restart(max(last, self._end))
                return
            self._tables.append((first, last, table))
            self._bytes += _size(table)
            self._end = last
            while self._bytes > self.max_bytes:
                _, dropped_last, dropped = self._tables.popleft()
                self._bytes -= _size(dropped)
                self._start = dropped_last

    def changed(self, end: int | None = None) -> None:
        """Rows were stored, deleted or re-resolved other than by `stored`: forget them all
        and hold what comes after `end` (the log's last seq now; at least the old end)."""
        with self._lock:
            self._restart(max(end or 0, self._end))

    def _restart(self, end: int) -> None:
        self._tables.clear()
        self._bytes = 0
        self._start = self._end = end

    def read(
        self,
        seq: int,
        limit: int,
        upto: int | None,
        names: Sequence[str],
        kinds: tuple[frozenset[str], frozenset[str]] | None,
    ) -> pa.Table | None:
        """The stored rows with `seq < row seq <= upto` in seq order, at most `limit`, only
        the columns `names` and the events `kinds` names (names, types) if given; None when
        the tail cannot say."""
        with self._lock:
            start, end, tables = self._start, self._end, list(self._tables)
        if seq < start or not self.max_bytes:
            return None
        top = end if upto is None else min(upto, end)
        parts: list[pa.Table] = []
        n = 0
        for first, last, table in tables:
            if last <= seq:
                continue
            if first > top or n >= limit:
                break
            part = table
            if first <= seq or last > top:
                s = part.column("seq")
                part = part.filter(pc.and_(pc.greater(s, seq), pc.less_equal(s, top)))
            if kinds is not None:
                part = part.filter(
                    pc.or_(
                        pc.is_in(part.column("name"), pa.array(sorted(kinds[0]), pa.string())),
                        pc.is_in(part.column("type"), pa.array(sorted(kinds[1]), pa.string())),
                    )
                )
            if part.num_rows:
                parts.append(part.select(names))
                n += part.num_rows
        if n < limit and (upto is None or upto > end):
            return None  # the rest may be in a commit not handed here yet
        if not parts:
            return self.schema.empty_table().select(names)
        out = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        return out.slice(0, limit) if out.num_rows > limit else out


def _size(table: pa.Table) -> int:
    """The memory it keeps alive: whole buffers, also where it is a slice of a larger one
    (rows from an ingest process's message, say)."""
    return int(table.get_total_buffer_size())
