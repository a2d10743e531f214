"""Read side of identity: a person as the dashboard and admin API show them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from traction.identity.models import Account, AccountMembership, Identity, Person
from traction.store.events import DuckDBEventStore
from traction.store.state import StateStore


@dataclass
class PersonView:
    id: str
    is_identified: bool
    traits: dict[str, Any]
    distinct_ids: list[str]
    accounts: list[str]
    first_seen_at: datetime | None
    last_seen_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_identified": self.is_identified,
            "traits": self.traits,
            "distinct_ids": self.distinct_ids,
            "accounts": self.accounts,
            "first_seen_at": self.first_seen_at.isoformat() if self.first_seen_at else None,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
        }


class PersonQueries:
    def __init__(self, state: StateStore, events: DuckDBEventStore) -> None:
        self.state = state
        self.events = events

    def get(self, workspace_id: str, person_id: str) -> PersonView | None:
        """A merged-away id leads to the person it became."""
        with self.state.session() as s:
            p = s.get(Person, person_id)
            hops = 0
            while p is not None and p.merged_into and hops < 10:
                p = s.get(Person, p.merged_into)
                hops += 1
            if p is None or p.workspace_id != workspace_id:
                return None
            ids = list(
                s.scalars(
                    select(Identity.distinct_id)
                    .where(Identity.workspace_id == workspace_id, Identity.person_id == p.id)
                    .order_by(Identity.id)
                )
            )
            accounts = list(
                s.scalars(
                    select(AccountMembership.group_key)
                    .where(
                        AccountMembership.workspace_id == workspace_id,
                        AccountMembership.person_id == p.id,
                    )
                    .order_by(AccountMembership.joined_at)
                )
            )
            return PersonView(
                p.id,
                p.is_identified,
                dict(p.traits or {}),
                ids,
                accounts,
                p.first_seen_at,
                p.last_seen_at,
            )

    def by_distinct_id(self, workspace_id: str, distinct_id: str) -> PersonView | None:
        with self.state.session() as s:
            pid = s.scalars(
                select(Identity.person_id).where(
                    Identity.workspace_id == workspace_id, Identity.distinct_id == distinct_id
                )
            ).first()
        return self.get(workspace_id, pid) if pid else None

    def events_of(
        self, workspace_id: str, person_id: str, limit: int = 500
    ) -> list[dict[str, Any]]:
        return self.events.recent(workspace_id, person_id=person_id, limit=limit)

    def recent_persons(self, workspace_id: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.execute(
                select(Person.id, Person.is_identified, Person.traits, Person.last_seen_at)
                .where(Person.workspace_id == workspace_id, Person.merged_into.is_(None))
                .order_by(Person.last_seen_at.desc())
                .limit(limit)
            )
            return [
                {"id": r[0], "is_identified": r[1], "traits": r[2] or {}, "last_seen_at": r[3]}
                for r in rows
            ]

    def counts(self, workspace_id: str) -> dict[str, int]:
        with self.state.session() as s:
            persons = s.scalar(
                select(func.count()).where(
                    Person.workspace_id == workspace_id, Person.merged_into.is_(None)
                )
            )
            accounts = s.scalar(select(func.count()).where(Account.workspace_id == workspace_id))
        return {"persons": int(persons or 0), "accounts": int(accounts or 0)}
