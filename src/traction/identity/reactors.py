from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, String, Table, bindparam, case, select, update

from traction.identity.models import Person
from traction.store.state import StateStore, UTCDateTime

Span = tuple[datetime, datetime]
_CHUNK = 2_000  # ids per IN list, well under SQLite's and PostgreSQL's caps on bound values


def _sqlite_text(value: datetime) -> str:  # (SQLAlchemy's own SQLite format)
    return value.isoformat(" ", "microseconds")


def _as_is(value: datetime) -> datetime:
    return value


def _widen(conn: Connection, spans: dict[str, Span]) -> None:
    """Lowers first_seen_at and raises last_seen_at of these persons to cover their spans:
    one statement per person, both columns at once, executemany."""
    table = cast(Table, Person.__table__)
    first, last = table.c.first_seen_at, table.c.last_seen_at
    # SQLite stores DateTime as ISO text with microseconds: formatted here once per value,
    # not by a type processor at each of the three places a value appears (most of the time)
    sqlite = conn.dialect.name == "sqlite"
    stored, kind = (_sqlite_text, String()) if sqlite else (_as_is, UTCDateTime())
    lo, hi = bindparam("lo", type_=kind), bindparam("hi", type_=kind)
    lower = first.is_(None) | (first > lo)
    higher = last.is_(None) | (last < hi)
    conn.execute(
        update(table)
        .where(table.c.id == bindparam("pid"), lower | higher)
        .values(
            first_seen_at=case((lower, lo), else_=first),
            last_seen_at=case((higher, hi), else_=last),
        ),
        [{"pid": pid, "lo": stored(a), "hi": stored(b)} for pid, (a, b) in spans.items()],
    )


def _survivors(conn: Connection, pids: Iterable[str]) -> dict[str, str]:
    """The persons among these that were merged, and whom into (merges are flattened: one
    hop is enough)."""
    out: dict[str, str] = {}
    ids = list(pids)
    for i in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(Person.id, Person.merged_into).where(
                Person.id.in_(ids[i : i + _CHUNK]), Person.merged_into.is_not(None)
            )
        )
        out.update({pid: str(into) for pid, into in rows})
    return out


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
