"""Identity resolution for one commit group: distinct ids -> persons, merges, accounts, traits.

It runs inside the writer, once per group commit, with a handful of bulk queries instead
of one per event. Person ids stored on events are the person at ingest time; later merges
reach old events through `person_overrides` in the EventStore.

Most events are plain (no identify, alias, traits or group) from an id seen before. Those
take the person from an in-process cache, filled only after a commit succeeded. A cached
person that another replica has since merged away is still correct for every query, since
the override maps it to the survivor; a cached account may lag by ACCOUNT_TTL seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Update, case, delete, select, text, update
from sqlalchemy.orm import Session, aliased

from traction.identity import jsonrows
from traction.identity.domain import (
    Link,
    PersonState,
    apply_traits,
    decide_link,
    merge_traits,
    person_id_for,
)
from traction.identity.models import Account, AccountMembership, Identity, Person
from traction.ingest.domain import CanonicalEvent
from traction.store.events import Merge, Traits
from traction.store.state import utcnow

log = logging.getLogger(__name__)
_CHUNK = 500


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


@dataclass
class Resolution:
    person_ids: list[str]
    account_ids: list[str | None]
    merges: list[Merge]
    refused: int = 0
    # what the cache may learn once this resolution is committed
    learned_persons: dict[tuple[str, str], str] = field(default_factory=dict)
    learned_accounts: dict[tuple[str, str], str | None] = field(default_factory=dict)
    traits: list[Traits] = field(default_factory=list)  # mirrored into the EventStore


@dataclass
class _WorkspaceState:
    """What one group knows about one workspace's identities while it resolves them."""

    ws: str
    idmap: dict[str, str] = field(default_factory=dict)
    persons: dict[str, PersonState] = field(default_factory=dict)
    new_identities: dict[str, bool] = field(default_factory=dict)  # distinct_id -> is_user_id
    new_persons: dict[str, datetime] = field(default_factory=dict)
    dirty_persons: set[str] = field(default_factory=set)
    merges: list[Merge] = field(default_factory=list)
    memberships: dict[str, str] = field(default_factory=dict)  # person -> latest group key
    new_memberships: dict[tuple[str, str], datetime] = field(default_factory=dict)  # -> joined at
    account_traits: dict[str, dict[str, Any]] = field(default_factory=dict)
    final_account_traits: dict[str, dict[str, Any]] = field(default_factory=dict)


def _is_plain(ev: CanonicalEvent) -> bool:
    """Changes nobody's identity, traits or accounts."""
    return not (
        (ev.user_id and (ev.anonymous_id or ev.previous_id))
        or ev.traits_set
        or ev.traits_set_once
        or ev.group_key
    )


class IdentityResolver:
    CACHE_MAX = 500_000
    ACCOUNT_TTL = 60.0

    def __init__(self) -> None:
        self._persons: dict[tuple[str, str], str] = {}
        self._accounts: dict[tuple[str, str], tuple[float, str | None]] = {}

    def remember(self, res: Resolution) -> None:
        """Call after the resolution was committed."""
        if len(self._persons) + len(res.learned_persons) > self.CACHE_MAX:
            self._persons.clear()
        if len(self._accounts) + len(res.learned_accounts) > self.CACHE_MAX:
            self._accounts.clear()
        self._persons.update(res.learned_persons)
        expires = time.monotonic() + self.ACCOUNT_TTL
        for key, acc in res.learned_accounts.items():
            self._accounts[key] = (expires, acc)

    def _cached(self, ws: str, ev: CanonicalEvent) -> str | None:
        """The person of an event that changes nobody, from the cache: a plain event's id, or
        an event naming a user id and an anonymous id that are already the same person (what
        linking them would decide, with nothing to change: most events of a signed-in SDK)."""
        if _is_plain(ev):
            return self._persons.get((ws, ev.distinct_id))
        if (ev.type == "identify" or ev.previous_id or ev.traits_set or ev.traits_set_once
                or ev.group_key or not (ev.user_id and ev.anonymous_id)):  # fmt: skip
            return None
        pid = self._persons.get((ws, ev.user_id))
        return pid if pid is not None and self._persons.get((ws, ev.anonymous_id)) == pid else None

    def forget(self) -> None:
        self._persons.clear()
        self._accounts.clear()

    def resolve(self, session: Session, items: Sequence[tuple[str, CanonicalEvent]]) -> Resolution:
        now = time.monotonic()
        cached = [self._cached(ws, ev) for ws, ev in items]
        if None not in cached:  # a steady load's group: every person known, nothing changes
            hints = {i: ev.account_hint for i, (_, ev) in enumerate(items) if ev.account_hint}
            workspaces = [ws for ws, _ in items]
            return self._resolve_known(session, workspaces, cast(list[str], cached), hints, now)
        states: dict[str, _WorkspaceState] = {}
        needed: dict[str, set[str]] = {ws: set() for ws, _ in items}
        for (ws, ev), hit in zip(items, cached, strict=True):
            if hit is not None:
                continue
            ids = needed[ws]
            for did in (ev.user_id, ev.anonymous_id, ev.previous_id):
                if did:
                    ids.add(did)
        for ws, ids in needed.items():
            states[ws] = self._load(session, ws, sorted(ids))

        person_ids: list[str] = []
        account_ids: list[str | None] = []
        pending: list[int] = []  # no account yet: the person's latest from before this batch
        refused = 0
        for i, ((ws, ev), hit) in enumerate(zip(items, cached, strict=True)):
            st = states[ws]
            if hit is not None:
                account = ev.account_hint or st.memberships.get(hit)
                if account is None:
                    pending.append(i)
                person_ids.append(hit)
                account_ids.append(account)
                continue
            if ev.user_id and (ev.anonymous_id or ev.previous_id):
                absorbed = ev.previous_id or ev.anonymous_id
                assert absorbed is not None
                if not self._link(session, st, absorbed, ev.user_id, ev.timestamp):
                    refused += 1
                    log.warning(
                        "identity merge refused: both ids already identified",
                        extra={"workspace_id": ws, "user_id": ev.user_id, "other_id": absorbed},
                    )
            pid = self._ensure(st, ev.distinct_id, ev.user_id is not None, ev.timestamp)
            if ev.type == "identify" and ev.user_id:
                self._person(session, st, pid).is_identified = True
                st.dirty_persons.add(pid)
            if ev.traits_set or ev.traits_set_once:
                p = self._person(session, st, pid)
                p.traits = apply_traits(p.traits, ev.traits_set, ev.traits_set_once)
                st.dirty_persons.add(pid)
            if ev.group_key:
                st.account_traits.setdefault(ev.group_key, {}).update(ev.group_traits or {})
                st.new_memberships.setdefault((pid, ev.group_key), ev.timestamp)
                st.memberships[pid] = ev.group_key
            # An event that names no account belongs to the person's latest one as of the
            # event: one joined earlier in this batch, or else one from before it.
            account = ev.account_hint or st.memberships.get(pid)
            if account is None:
                pending.append(i)
            person_ids.append(pid)
            account_ids.append(account)

        learned_accounts = self._fill_accounts(
            session, [ws for ws, _ in items], person_ids, account_ids, pending, now
        )
        for i, (ws, ev) in enumerate(items):
            person_ids[i] = states[ws].idmap.get(ev.distinct_id, person_ids[i])

        merges: list[Merge] = []
        learned_persons: dict[tuple[str, str], str] = {}
        traits: list[Traits] = []
        for st in states.values():
            self._flush(session, st)
            merges.extend(st.merges)
            gone = {m.old_person_id for m in st.merges}
            for pid in (st.dirty_persons | set(st.new_persons)) - gone:
                if st.persons[pid].traits or pid in st.dirty_persons:
                    traits.append(Traits(st.ws, "person", pid, st.persons[pid].traits))
            traits += [Traits(st.ws, "account", k, t) for k, t in st.final_account_traits.items()]
            learned_persons.update({(st.ws, did): pid for did, pid in st.idmap.items()})
            learned_accounts.update({(st.ws, pid): key for pid, key in st.memberships.items()})
        return Resolution(
            person_ids, account_ids, merges, refused, learned_persons, learned_accounts, traits
        )

    def resolve_cached(
        self,
        session: Session,
        workspaces: Sequence[str],
        types: Sequence[str],
        user_ids: Sequence[str | None],
        anonymous_ids: Sequence[str | None],
        hints: Mapping[int, str],
    ) -> Resolution | None:
        """`resolve` for a group of events that change nobody's traits, aliases or accounts
        (`hints`: the accounts some of them name), read off their columns: a steady load's
        group, without an event object each. None unless every event's person is in the
        cache and linking its ids would change nothing (`_cached`): then `resolve` it."""
        persons = self._persons
        person_ids: list[str] = []
        for ws, typ, user, anon in zip(workspaces, types, user_ids, anonymous_ids, strict=True):
            if user and anon:
                pid = None if typ == "identify" else persons.get((ws, user))
                if pid is None or persons.get((ws, anon)) != pid:
                    return None
            else:
                pid = persons.get((ws, user or anon or ""))
                if pid is None:
                    return None
            person_ids.append(pid)
        return self._resolve_known(session, workspaces, person_ids, hints, time.monotonic())

    def _resolve_known(
        self,
        session: Session,
        workspaces: Sequence[str],
        person_ids: list[str],
        hints: Mapping[int, str],
        now: float,
    ) -> Resolution:
        """Every event's person came from the cache and no event changes anyone: what the
        general path computes for such a group (no state loaded, nothing to write), in one
        pass instead of six."""
        account_ids: list[str | None] = [hints.get(i) for i in range(len(person_ids))]
        pending = [i for i, account in enumerate(account_ids) if account is None]
        learned = self._fill_accounts(session, workspaces, person_ids, account_ids, pending, now)
        return Resolution(person_ids, account_ids, [], 0, {}, learned, [])

    def _fill_accounts(
        self,
        session: Session,
        workspaces: Sequence[str],
        person_ids: Sequence[str],
        account_ids: list[str | None],
        pending: Sequence[int],
        now: float,
    ) -> dict[tuple[str, str], str | None]:
        """Events that name no account and joined none in this group belong to their
        person's latest account from before it: from the cache (entries younger than
        ACCOUNT_TTL), else one query per workspace. Returns what the queries learned."""
        cache = self._accounts
        missed: list[int] = []
        lookup: dict[str, set[str]] = {}
        for i in pending:
            ws, pid = workspaces[i], person_ids[i]
            hit = cache.get((ws, pid))
            if hit is not None and hit[0] >= now:
                account_ids[i] = hit[1]
            else:
                missed.append(i)
                lookup.setdefault(ws, set()).add(pid)
        learned: dict[tuple[str, str], str | None] = {}
        for ws, pids in lookup.items():
            latest = self._latest_memberships(session, ws, sorted(pids))
            for member in pids:
                learned[(ws, member)] = latest.get(member)
        for i in missed:
            account_ids[i] = learned[(workspaces[i], person_ids[i])]
        return learned

    # -- loading -------------------------------------------------------------------------

    def _load(self, session: Session, ws: str, ids: Sequence[str]) -> _WorkspaceState:
        st = _WorkspaceState(ws)
        for chunk in _chunks(ids):
            rows = session.execute(
                select(Identity.distinct_id, Identity.person_id).where(
                    Identity.workspace_id == ws, Identity.distinct_id.in_(chunk)
                )
            )
            st.idmap.update({r[0]: r[1] for r in rows})
        return st

    def _latest_memberships(self, session: Session, ws: str, pids: Sequence[str]) -> dict[str, str]:
        """Each person's most recently joined account, as stored before this batch."""
        latest: dict[str, str] = {}
        for chunk in _chunks(pids):
            rows = session.execute(
                select(AccountMembership.person_id, AccountMembership.group_key)
                .where(AccountMembership.workspace_id == ws, AccountMembership.person_id.in_(chunk))
                .order_by(AccountMembership.joined_at, AccountMembership.id)
            )
            for pid, key in rows:
                latest[pid] = key
        return latest

    def _person(self, session: Session, st: _WorkspaceState, pid: str) -> PersonState:
        p = st.persons.get(pid)
        if p is None:
            row = session.execute(
                select(Person.is_identified, Person.traits).where(Person.id == pid)
            ).first()
            p = (
                PersonState(pid, bool(row[0]), dict(row[1] or {}))
                if row
                else PersonState(pid, False, {})
            )
            st.persons[pid] = p
        return p

    # -- rules ---------------------------------------------------------------------------

    def _ensure(self, st: _WorkspaceState, did: str, is_user: bool, ts: datetime) -> str:
        pid = st.idmap.get(did)
        if pid is None:
            pid = person_id_for(st.ws, did)
            st.idmap[did] = pid
            st.new_identities[did] = is_user
            if pid not in st.new_persons:
                st.new_persons[pid] = ts
                st.persons[pid] = PersonState(pid, False, {})
        return pid

    def _link(
        self, session: Session, st: _WorkspaceState, absorbed: str, user: str, ts: datetime
    ) -> bool:
        a_pid, u_pid = st.idmap.get(absorbed), st.idmap.get(user)
        a = self._person(session, st, a_pid) if a_pid else None
        u = self._person(session, st, u_pid) if u_pid else None
        decision = decide_link(a, u)
        if decision is Link.REFUSE:
            return False
        if decision is Link.CREATE_SHARED:
            pid = self._ensure(st, user, True, ts)
            st.idmap[absorbed] = pid
            st.new_identities[absorbed] = False
        elif decision is Link.ATTACH_USER:
            assert a is not None
            pid = a.id
            st.idmap[user] = pid
            st.new_identities[user] = True
        elif decision is Link.SEPARATE_USER:
            pid = self._ensure(st, user, True, ts)
        elif decision is Link.ATTACH_ANON:
            assert u is not None
            pid = u.id
            st.idmap[absorbed] = pid
            st.new_identities[absorbed] = False
        elif decision is Link.SAME:
            assert u is not None
            pid = u.id
        else:  # MERGE
            assert a is not None and u is not None
            pid = u.id
            u.traits = merge_traits(a.traits, u.traits)
            for did, p in list(st.idmap.items()):
                if p == a.id:
                    st.idmap[did] = u.id
            for m in range(len(st.merges)):
                if st.merges[m].person_id == a.id:
                    st.merges[m] = Merge(st.ws, st.merges[m].old_person_id, u.id)
            st.merges.append(Merge(st.ws, a.id, u.id))
            if a.id in st.memberships and u.id not in st.memberships:
                st.memberships[u.id] = st.memberships[a.id]
            st.dirty_persons.add(a.id)
        person = self._person(session, st, pid)
        person.is_identified = True
        st.dirty_persons.add(pid)
        return True

    # -- writing -------------------------------------------------------------------------

    def _flush(self, session: Session, st: _WorkspaceState) -> None:
        merged_into = {m.old_person_id: m.person_id for m in st.merges}
        if st.new_persons:
            now = utcnow()
            _insert_rows(session, _NEW_PERSONS, [
                (pid, st.ws, st.persons[pid].is_identified, st.persons[pid].traits,
                 merged_into.get(pid), now, ts)
                for pid, ts in st.new_persons.items()
            ])  # fmt: skip
        if st.new_identities:
            _insert_rows(session, _NEW_IDENTITIES, [
                (st.ws, did, st.idmap[did], u) for did, u in st.new_identities.items()
            ])  # fmt: skip
        for m in st.merges:
            session.execute(_absorb_seen_times(m.old_person_id, m.person_id))
            session.execute(
                update(Identity)
                .where(Identity.workspace_id == st.ws, Identity.person_id == m.old_person_id)
                .values(person_id=m.person_id)
            )
            session.execute(
                update(Person)
                .where(Person.workspace_id == st.ws, Person.merged_into == m.old_person_id)
                .values(merged_into=m.person_id)
            )
            _move_memberships(session, st.ws, m.old_person_id, m.person_id)
        for pid in st.dirty_persons - set(st.new_persons):
            p = st.persons[pid]
            session.execute(
                update(Person)
                .where(Person.id == pid)
                .values(
                    is_identified=p.is_identified, traits=p.traits, merged_into=merged_into.get(pid)
                )
            )
        self._flush_accounts(session, st)

    def _flush_accounts(self, session: Session, st: _WorkspaceState) -> None:
        if st.account_traits:
            keys = sorted(st.account_traits)
            existing = {
                a.group_key: a
                for a in session.scalars(
                    select(Account).where(
                        Account.workspace_id == st.ws, Account.group_key.in_(keys)
                    )
                )
            }
            for key in keys:
                if key in existing:
                    acc = existing[key]
                    acc.traits = {**(acc.traits or {}), **st.account_traits[key]}
                else:
                    acc = Account(workspace_id=st.ws, group_key=key, traits=st.account_traits[key])
                    session.add(acc)
                st.final_account_traits[key] = dict(acc.traits)
        if st.new_memberships:
            final = {m.old_person_id: m.person_id for m in st.merges}  # merges are flattened
            joined: dict[tuple[str, str], datetime] = {}
            for (p, k), ts in st.new_memberships.items():
                pair = (final.get(p, p), k)
                joined[pair] = min(ts, joined.get(pair, ts))
            pairs = set(joined)
            pids = sorted({p for p, _ in pairs})
            have: set[tuple[str, str]] = set()
            for chunk in _chunks(pids):
                have |= {
                    (r[0], r[1])
                    for r in session.execute(
                        select(AccountMembership.person_id, AccountMembership.group_key).where(
                            AccountMembership.workspace_id == st.ws,
                            AccountMembership.person_id.in_(chunk),
                        )
                    )
                }
            for pid, key in sorted(pairs - have, key=lambda pk: (joined[pk], pk)):
                session.add(
                    AccountMembership(
                        workspace_id=st.ws,
                        person_id=pid,
                        group_key=key,
                        joined_at=joined[(pid, key)],
                    )
                )
        session.flush()


def _move_memberships(session: Session, ws: str, old: str, survivor: str) -> None:
    """A merged person's accounts become the survivor's. An account both belong to is kept
    once, joined when the first of them joined (a person is in an account at most once: a
    plain UPDATE broke that key, and the whole commit group with it)."""
    m = AccountMembership
    rows = session.execute(
        select(m.id, m.person_id, m.group_key, m.joined_at).where(
            m.workspace_id == ws, m.person_id.in_([old, survivor])
        )
    ).all()
    theirs = {key: (rid, joined) for rid, pid, key, joined in rows if pid == survivor}
    for rid, pid, key, joined in rows:
        if pid != old:
            continue
        if key not in theirs:
            session.execute(update(m).where(m.id == rid).values(person_id=survivor))
            continue
        session.execute(delete(m).where(m.id == rid))
        kept, since = theirs[key]
        if joined < since:
            session.execute(update(m).where(m.id == kept).values(joined_at=joined))


# New persons and identities as one JSON parameter each (`jsonrows`): an ORM bulk insert
# processed every value in Python, 10% of the server's interpreter while people were new.
def _new_rows(table: str, columns: str, values: Callable[[str], list[str]]) -> dict[str, str]:
    return {
        d: f"INSERT INTO {table} ({columns}) SELECT {', '.join(values(d))} FROM {jsonrows.SOURCE[d]}"
        for d in jsonrows.SOURCE
    }


_NEW_PERSONS = _new_rows(
    "persons",
    "id, workspace_id, is_identified, traits, merged_into, created_at, first_seen_at, last_seen_at",
    lambda d: [jsonrows.text_at(d, 0), jsonrows.text_at(d, 1), jsonrows.bool_at(d, 2),
               jsonrows.json_at(d, 3), jsonrows.text_at(d, 4), jsonrows.time_at(d, 5),
               jsonrows.time_at(d, 6), jsonrows.time_at(d, 6)],
)  # fmt: skip
_NEW_IDENTITIES = _new_rows(
    "identities",
    "workspace_id, distinct_id, person_id, is_user_id",
    lambda d: [jsonrows.text_at(d, 0), jsonrows.text_at(d, 1), jsonrows.text_at(d, 2),
               jsonrows.bool_at(d, 3)],
)  # fmt: skip


def _insert_rows(session: Session, sql: dict[str, str], rows: list[tuple[Any, ...]]) -> None:
    conn = session.connection()
    conn.execute(text(sql[conn.dialect.name]), jsonrows.param(rows))


def _absorb_seen_times(absorbed: str, survivor: str) -> Update:
    """The survivor of a merge was first seen when either person was first seen, and last
    seen when either was last seen. Computed in SQL from both rows as they are now."""
    old = aliased(Person)
    old_first = select(old.first_seen_at).where(old.id == absorbed).scalar_subquery()
    old_last = select(old.last_seen_at).where(old.id == absorbed).scalar_subquery()
    return (
        update(Person)
        .where(Person.id == survivor)
        .values(
            first_seen_at=case(
                (Person.first_seen_at.is_(None) | (old_first < Person.first_seen_at), old_first),
                else_=Person.first_seen_at,
            ),
            last_seen_at=case(
                (Person.last_seen_at.is_(None) | (old_last > Person.last_seen_at), old_last),
                else_=Person.last_seen_at,
            ),
        )
        .execution_options(synchronize_session=False)
    )


def backfill_traits(session: Session, workspace_ids: Iterable[str] | None = None) -> list[Traits]:
    """Every person's and account's current traits, for filling the EventStore's mirror when it
    is empty (data written before the mirror existed)."""
    persons = select(Person.workspace_id, Person.id, Person.traits).where(
        Person.merged_into.is_(None)
    )
    accounts = select(Account.workspace_id, Account.group_key, Account.traits)
    out = [Traits(ws, "person", pid, dict(t or {})) for ws, pid, t in session.execute(persons) if t]
    out += [
        Traits(ws, "account", key, dict(t or {})) for ws, key, t in session.execute(accounts) if t
    ]
    if workspace_ids is not None:
        keep = set(workspace_ids)
        out = [t for t in out if t.workspace_id in keep]
    return out
