from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update

from traction.identity.models import Person
from traction.store.state import StateStore


class LastSeenReactor:
    """Keeps persons.last_seen_at current. A max() update, so a redelivered batch is harmless."""

    name = "identity.last_seen"
    columns = ("person_id", "timestamp")

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        latest: dict[str, datetime] = {}
        for ev in batch:
            pid, ts = ev["person_id"], ev["timestamp"]
            if pid not in latest or ts > latest[pid]:
                latest[pid] = ts
        with self.state.session() as s:
            for pid, ts in latest.items():
                s.execute(
                    update(Person)
                    .where(
                        Person.id == pid,
                        (Person.last_seen_at.is_(None)) | (Person.last_seen_at < ts),
                    )
                    .values(last_seen_at=ts)
                )
