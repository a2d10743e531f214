"""Read side of identity: a person as the dashboard and admin API show them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

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
            user_ids = set(
                s.scalars(
                    select(Identity.distinct_id).where(
                        Identity.workspace_id == workspace_id,
                        Identity.person_id == p.id,
                        Identity.is_user_id.is_(True),
                    )
                )
            )
            return PersonView(
                p.id,
                p.is_identified or bool(user_ids),  # known by a user id: identified
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

    def search(
        self, workspace_id: str, q: str = "", *, offset: int = 0, limit: int = 50
    ) -> tuple[list[dict[str, Any]], int]:
        """People most recently seen first, and how many match in all: `q` matches any of
        their ids (part of it) or any trait value (email, name, plan, …). Each row shows the
        person's own user id when they have one, and counts them identified if they do."""
        where = [Person.workspace_id == workspace_id, Person.merged_into.is_(None)]
        if q.strip():
            needle = f"%{q.strip().lower()}%"
            by_id = select(Identity.person_id).where(
                Identity.workspace_id == workspace_id, func.lower(Identity.distinct_id).like(needle)
            )
            where.append(
                or_(Person.id.in_(by_id), func.lower(cast(Person.traits, String)).like(needle))
            )
        with self.state.session() as s:
            total = int(s.scalar(select(func.count()).select_from(Person).where(*where)) or 0)
            rows = s.execute(
                select(
                    Person.id,
                    Person.is_identified,
                    Person.traits,
                    Person.last_seen_at,
                    Person.first_seen_at,
                )
                .where(*where)
                .order_by(Person.last_seen_at.desc().nulls_last(), Person.id)
                .offset(offset)
                .limit(limit)
            ).all()
            ids = _own_ids(s, workspace_id, [r[0] for r in rows])
        out = []
        for pid, identified, traits, last, first in rows:
            mine = ids.get(pid, [])
            user_ids = [d for d, is_user in mine if is_user]
            out.append({
                "id": pid, "traits": traits or {}, "last_seen_at": last, "first_seen_at": first,
                "user_id": user_ids[0] if user_ids else None,
                "shown_id": user_ids[0] if user_ids else (mine[0][0] if mine else pid),
                "is_identified": bool(identified) or bool(user_ids),
            })  # fmt: skip
        return out, total

    def export(self, workspace_id: str, person_id: str) -> Iterator[bytes] | None:
        """A person's data for access and portability requests, as NDJSON lines: first the
        person (traits, every id, accounts, first and last seen), then each event, oldest
        first. None when there is no such person."""
        view = self.get(workspace_id, person_id)
        if view is None:
            return None

        def lines() -> Iterator[bytes]:
            yield orjson.dumps({"type": "person", **view.as_dict()}) + b"\n"
            for event in self.events.person_events(workspace_id, view.id):
                yield orjson.dumps({"type": "event", **event}) + b"\n"

        return lines()

    def labels(self, workspace_id: str, person_ids: Sequence[str]) -> dict[str, str]:
        """What to call each person in a list: their email or name, else their own user id,
        else their first id."""
        if not person_ids:
            return {}
        with self.state.session() as s:
            traits: dict[str, Any] = dict(
                s.execute(select(Person.id, Person.traits).where(Person.id.in_(person_ids))).all()
            )
            ids = _own_ids(s, workspace_id, person_ids)
        out = {}
        for pid in person_ids:
            t = traits.get(pid) or {}
            mine = ids.get(pid, [])
            users = [d for d, u in mine if u]
            out[pid] = (
                t.get("email") or t.get("name") or (users or [d for d, _ in mine] or [pid])[0]
            )
        return out

    def counts(self, workspace_id: str) -> dict[str, int]:
        with self.state.session() as s:
            persons = s.scalar(
                select(func.count()).where(
                    Person.workspace_id == workspace_id, Person.merged_into.is_(None)
                )
            )
            accounts = s.scalar(select(func.count()).where(Account.workspace_id == workspace_id))
        return {"persons": int(persons or 0), "accounts": int(accounts or 0)}


Rows = list[dict[str, Any]]


def _own_ids(
    s: Session, workspace_id: str, person_ids: Sequence[str]
) -> dict[str, list[tuple[str, bool]]]:
    """Each person's distinct ids in the order they were first seen, flagged when a user id."""
    ids: dict[str, list[tuple[str, bool]]] = {}
    for pid, did, is_user in s.execute(
        select(Identity.person_id, Identity.distinct_id, Identity.is_user_id)
        .where(Identity.workspace_id == workspace_id, Identity.person_id.in_(person_ids))
        .order_by(Identity.id)
    ):
        ids.setdefault(pid, []).append((did, bool(is_user)))
    return ids


def _newest_first(t: datetime | None) -> float:
    """A sort key: later times first, unknown ones last."""
    return -(t - datetime(1970, 1, 1)).total_seconds() if t is not None else float("inf")


@dataclass
class AccountView:
    key: str
    traits: dict[str, Any]
    members: list[dict[str, Any]]  # person id, their email/name if known, when they joined
    since: datetime | None  # its first membership or first event (not when it was loaded)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "traits": self.traits,
            "members": [
                {**m, "joined_at": m["joined_at"].isoformat() if m["joined_at"] else None}
                for m in self.members
            ],
            "since": self.since.isoformat() if self.since else None,
        }


class AccountQueries:
    """Accounts (groups) as the dashboard and admin API show them."""

    def __init__(self, state: StateStore, events: DuckDBEventStore | None = None) -> None:
        self.state = state
        self.events = events

    def member_count(self, workspace_id: str, key: str) -> int:
        """The account's members: the seats meter."""
        with self.state.session() as s:
            n = s.scalar(
                select(func.count(func.distinct(AccountMembership.person_id))).where(
                    AccountMembership.workspace_id == workspace_id,
                    AccountMembership.group_key == key,
                )
            )
        return int(n or 0)

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
        first_event = (
            self._activity(workspace_id, [key]).get(key, (None, 0))[0] if self.events else None
        )
        joined = [m["joined_at"] for m in members if m["joined_at"] is not None]
        since = min([*joined, first_event] if first_event else joined, default=None)
        return AccountView(acc.group_key, dict(acc.traits or {}), members, since)

    SORTS = ("last_seen", "events_30d", "members", "since", "key")

    def list(
        self,
        workspace_id: str,
        limit: int = 200,
        *,
        q: str = "",
        sort: str = "last_seen",
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        return self.search(workspace_id, q, sort=sort, offset=offset, limit=limit)[0]

    def search(
        self,
        workspace_id: str,
        q: str = "",
        *,
        sort: str = "last_seen",
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[Rows, int]:
        """Accounts with their activity: members, when a member was last seen, events in the
        30 days to the latest event, and since when the account exists (its first membership
        or first event, not when Traction loaded it). `q` matches the key or any trait."""
        if sort not in self.SORTS:
            raise ValueError(f"sort must be one of {', '.join(self.SORTS)}")
        where = [Account.workspace_id == workspace_id]
        if q.strip():
            needle = f"%{q.strip().lower()}%"
            where.append(
                or_(
                    func.lower(Account.group_key).like(needle),
                    func.lower(cast(Account.traits, String)).like(needle),
                )
            )
        with self.state.session() as s:
            stats = (
                select(
                    AccountMembership.group_key,
                    func.count().label("members"),
                    func.min(AccountMembership.joined_at).label("joined"),
                    func.max(Person.last_seen_at).label("last_seen"),
                )
                .join(Person, Person.id == AccountMembership.person_id, isouter=True)
                .where(AccountMembership.workspace_id == workspace_id)
                .group_by(AccountMembership.group_key)
                .subquery()
            )
            rows = s.execute(
                select(
                    Account.group_key,
                    Account.traits,
                    stats.c.members,
                    stats.c.joined,
                    stats.c.last_seen,
                )
                .join(stats, stats.c.group_key == Account.group_key, isouter=True)
                .where(*where)
            ).all()
        activity = self._activity(workspace_id, [r[0] for r in rows]) if self.events else {}
        out = []
        for key, traits, members, joined, last_seen in rows:
            first_event, n30 = activity.get(key, (None, 0))
            since = min((t for t in (joined, first_event) if t is not None), default=None)
            out.append({"key": key, "traits": traits or {}, "members": int(members or 0),
                        "last_seen_at": last_seen, "events_30d": n30, "since": since})  # fmt: skip
        order: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
            "last_seen": lambda a: (_newest_first(a["last_seen_at"]), a["key"]),
            "events_30d": lambda a: (-a["events_30d"], a["key"]),
            "members": lambda a: (-a["members"], a["key"]),
            "since": lambda a: (-_newest_first(a["since"]), a["key"]),
            "key": lambda a: (a["key"],),
        }
        out.sort(key=order[sort])
        return out[offset : offset + limit], len(out)

    def _activity(
        self, workspace_id: str, keys: Sequence[str]
    ) -> dict[str, tuple[datetime | None, int]]:
        """Per account: its first event, and its events in the 30 days to the latest event."""
        if not keys:
            return {}
        assert self.events is not None
        with self.events.reading() as cur:
            rows = cur.execute(
                "WITH latest AS (SELECT max(timestamp) AS t FROM events WHERE workspace_id = ?) "
                "SELECT account_id, min(timestamp), "
                "count(*) FILTER (WHERE timestamp > (SELECT t FROM latest) - INTERVAL 30 DAY) "
                "FROM events WHERE workspace_id = ? AND account_id IS NOT NULL GROUP BY account_id",
                [workspace_id, workspace_id],
            ).fetchall()
        return {k: (first, int(n)) for k, first, n in rows}


def event_identity(s: Session, workspace_id: str, person_id: str) -> dict[str, str]:
    """How the person's own events name them (their user id if they have one), for the events
    the engine writes about them (`$journey_entered`, `$segment_entered`, ...)."""
    row = s.execute(select(Identity.distinct_id, Identity.is_user_id).where(
        Identity.workspace_id == workspace_id, Identity.person_id == person_id)
        .order_by(Identity.is_user_id.desc())).first()  # fmt: skip
    if row is None:
        return {"anonymousId": person_id}
    return {"userId" if row[1] else "anonymousId": row[0]}
