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


@dataclass
class AccountView:
    key: str
    traits: dict[str, Any]
    members: list[dict[str, Any]]  # person id, their email/name if known, when they joined
    created_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "traits": self.traits,
            "members": [
                {**m, "joined_at": m["joined_at"].isoformat() if m["joined_at"] else None}
                for m in self.members
            ],
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


class AccountQueries:
    """Accounts (groups) as the dashboard and admin API show them."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def get(self, workspace_id: str, key: str) -> AccountView | None:
        with self.state.session() as s:
            acc = s.scalars(
                select(Account).where(
                    Account.workspace_id == workspace_id, Account.group_key == key
                )
            ).first()
            if acc is None:
                return None
            rows = s.execute(
                select(AccountMembership.person_id, AccountMembership.joined_at, Person.traits)
                .join(Person, Person.id == AccountMembership.person_id, isouter=True)
                .where(
                    AccountMembership.workspace_id == workspace_id,
                    AccountMembership.group_key == key,
                )
                .order_by(AccountMembership.joined_at)
            )
            members = [
                {
                    "person_id": pid,
                    "label": (t or {}).get("email") or (t or {}).get("name") or pid,
                    "joined_at": j,
                }
                for pid, j, t in rows
            ]
            return AccountView(acc.group_key, dict(acc.traits or {}), members, acc.created_at)

    def list(self, workspace_id: str, limit: int = 200) -> list[dict[str, Any]]:
        with self.state.session() as s:
            members = (
                select(AccountMembership.group_key, func.count().label("n"))
                .where(AccountMembership.workspace_id == workspace_id)
                .group_by(AccountMembership.group_key)
                .subquery()
            )
            rows = s.execute(
                select(Account.group_key, Account.traits, func.coalesce(members.c.n, 0))
                .join(members, members.c.group_key == Account.group_key, isouter=True)
                .where(Account.workspace_id == workspace_id)
                .order_by(Account.created_at.desc())
                .limit(limit)
            )
            return [{"key": k, "traits": t or {}, "members": int(n)} for k, t, n in rows]
