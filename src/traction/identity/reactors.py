from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, or_, select, update
from sqlalchemy.orm import aliased

from traction.identity.models import Person
from traction.store.state import StateStore


def person_or_survivor(pid: Any) -> ColumnElement[bool]:
    """This person's row and, if they were merged, their survivor's (merges are flattened, so
    one hop is enough). A batch read before a merge may be written after it: updating both
    rows keeps the survivor right whichever commits first."""
    other = aliased(Person)
    survivor = select(other.merged_into).where(other.id == pid).scalar_subquery()
    return or_(Person.id == pid, Person.id == survivor)


class SeenReactor:
    """Keeps persons.first_seen_at and last_seen_at at the earliest and latest event of the
    person, whatever order the events arrive in. min()/max() updates, so a redelivered batch
    is harmless. (Renamed from `identity.last_seen`: the new cursor replays the log once,
    which fixes first_seen_at on data stored before this rule.)"""

    name = "identity.seen"
    columns = ("person_id", "timestamp")

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        span: dict[str, tuple[datetime, datetime]] = {}
        for ev in batch:
            pid, ts = ev["person_id"], ev["timestamp"]
            lo, hi = span.get(pid, (ts, ts))
            span[pid] = (min(lo, ts), max(hi, ts))
        if not span:
            return
        pid = bindparam("pid")
        table = cast(Table, Person.__table__)  # Core statements: executemany over the persons
        first = (
            update(table)
            .where(
                person_or_survivor(pid),
                Person.first_seen_at.is_(None) | (Person.first_seen_at > bindparam("lo")),
            )
            .values(first_seen_at=bindparam("lo"))
        )
        last = (
            update(table)
            .where(
                person_or_survivor(pid),
                Person.last_seen_at.is_(None) | (Person.last_seen_at < bindparam("hi")),
            )
            .values(last_seen_at=bindparam("hi"))
        )
        params = [{"pid": p, "lo": lo, "hi": hi} for p, (lo, hi) in span.items()]
        with self.state.session() as s:
            conn = s.connection()
            conn.execute(first, params)
            conn.execute(last, params)
