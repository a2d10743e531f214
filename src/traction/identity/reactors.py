from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from traction.identity import jsonrows
from traction.store.state import StateStore

Span = tuple[datetime, datetime]

# A batch's spans go to the database as one JSON parameter (`jsonrows`): one statement for
# thousands of persons, with no per-value work in Python (a 5,000-person batch: 2 ms).
_ROWS = {
    d: f"SELECT {jsonrows.text_at(d, 0)} AS pid, {jsonrows.time_at(d, 1)} AS lo, "
    f"{jsonrows.time_at(d, 2)} AS hi FROM {jsonrows.SOURCE[d]}"
    for d in jsonrows.SOURCE
}
_IDS = {
    "sqlite": "SELECT value FROM json_each(:rows)",
    "postgresql": "SELECT jsonb_array_elements_text(CAST(:rows AS jsonb))",
}


def _widen(conn: Connection, spans: dict[str, Span]) -> None:
    """Lowers first_seen_at and raises last_seen_at of these persons to cover their spans."""
    rows = _ROWS[conn.dialect.name]
    conn.execute(
        text(
            "UPDATE persons SET "
            "first_seen_at = CASE WHEN first_seen_at IS NULL OR first_seen_at > s.lo "
            "THEN s.lo ELSE first_seen_at END, "
            "last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < s.hi "
            "THEN s.hi ELSE last_seen_at END "
            f"FROM ({rows}) AS s "
            "WHERE persons.id = s.pid AND (first_seen_at IS NULL OR first_seen_at > s.lo "
            "OR last_seen_at IS NULL OR last_seen_at < s.hi)"
        ),
        jsonrows.param([(pid, lo, hi) for pid, (lo, hi) in spans.items()]),
    )


def _survivors(conn: Connection, pids: Iterable[str]) -> dict[str, str]:
    """The persons among these that were merged, and whom into (merges are flattened: one
    hop is enough)."""
    rows = conn.execute(
        text(
            "SELECT id, merged_into FROM persons WHERE merged_into IS NOT NULL "
            f"AND id IN ({_IDS[conn.dialect.name]})"
        ),
        jsonrows.param(list(pids)),
    )
    return {str(pid): str(into) for pid, into in rows}


class SeenReactor:
    """Keeps persons.first_seen_at and last_seen_at at the earliest and latest event of the
    person, whatever order the events arrive in. min()/max() updates, so a redelivered batch
    is harmless. A batch read before a merge may be written after it: the survivor's row is
    widened too, which keeps it right whichever commits first. (Renamed from
    `identity.last_seen`: the new cursor replays the log once, which fixes first_seen_at on
    data stored before this rule.)"""

    name = "identity.seen"
    columns = ("person_id", "timestamp")

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        span: dict[str, Span] = {}
        for ev in batch:
            pid, ts = ev["person_id"], ev["timestamp"]
            lo, hi = span.get(pid, (ts, ts))
            span[pid] = (min(lo, ts), max(hi, ts))
        if not span:
            return
        with self.state.session() as s:
            conn = s.connection()
            _widen(conn, span)  # first, so the write lock is held before survivors are read
            folded: dict[str, Span] = {}
            for pid, into in _survivors(conn, span).items():
                lo, hi = span[pid]
                was = folded.get(into, (lo, hi))
                folded[into] = (min(was[0], lo), max(was[1], hi))
            if folded:
                _widen(conn, folded)
