"""Privacy use cases: erase a person, export a person, apply consent and retention, purge.

An erasure holds the writer (no commit runs meanwhile, queued events wait) and the store's
maintenance lock, then removes the person everywhere in an order that can be retried: ids
are suppressed first, the events and the person's rows in DuckDB next, the state last.
If anything fails midway, erasing again finds what is left (from either store) and finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from traction.audit.service import record
from traction.catalog.service import CatalogService
from traction.identity.models import AccountMembership, Identity, Person
from traction.identity.queries import PersonQueries
from traction.ingest.writer import EventWriter
from traction.privacy.domain import (
    PrivacyPolicy,
    Suppressions,
    id_hash,
    retention_cutoff,
)
from traction.privacy.models import PrivacySettings, SuppressedId
from traction.store.events import DuckDBEventStore, PurgeResult
from traction.store.state import StateStore, utcnow
from traction.workspaces.models import Workspace

log = logging.getLogger(__name__)


class NoSuchPerson(LookupError):
    pass


@dataclass(frozen=True)
class Erasure:
    person_id: str
    person_ids: int  # the person and everyone merged into them
    distinct_ids: int
    events: int
    suppressed: bool
    purge_pending: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PrivacyService:
    POLICY_TTL = 5.0  # seconds a workspace's policy is cached for the ingest path

    def __init__(
        self,
        state: StateStore,
        events: DuckDBEventStore,
        writer: EventWriter,
        catalog: CatalogService,
        persons: PersonQueries,
    ) -> None:
        self.state = state
        self.events = events
        self.writer = writer
        self.catalog = catalog
        self.persons = persons
        self._policies: dict[str, tuple[float, PrivacyPolicy]] = {}
        self._lock = threading.Lock()
        with state.session() as s:
            rows = s.execute(select(SuppressedId.workspace_id, SuppressedId.digest)).all()
        writer.suppressed = Suppressions((ws, d) for ws, d in rows)

    # -- policy -------------------------------------------------------------------------------

    def policy(self, workspace_id: str) -> PrivacyPolicy:
        now = time.monotonic()
        with self._lock:
            hit = self._policies.get(workspace_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.state.session() as s:
            row = s.get(PrivacySettings, workspace_id)
            policy = PrivacyPolicy.model_validate(row.policy) if row else PrivacyPolicy()
        with self._lock:
            self._policies[workspace_id] = (now + self.POLICY_TTL, policy)
        return policy

    def set_policy(self, workspace_id: str, policy: PrivacyPolicy) -> PrivacyPolicy:
        with self.state.session() as s:
            row = s.get(PrivacySettings, workspace_id)
            before = row.policy if row else PrivacyPolicy().model_dump()
            after = policy.model_dump()
            if row is None:
                s.add(PrivacySettings(workspace_id=workspace_id, policy=after, updated_at=utcnow()))
            else:
                row.policy, row.updated_at = after, utcnow()
            if before != after:
                record(s, workspace_id, "privacy.policy_changed", "", before=before, after=after)
        with self._lock:
            self._policies.pop(workspace_id, None)
        return policy

    # -- access and portability -----------------------------------------------------------------

    def export_person(self, workspace_id: str, person_id: str) -> Iterator[bytes] | None:
        """The person's data as NDJSON lines (see `PersonQueries.export`); the export is
        in the audit log."""
        lines = self.persons.export(workspace_id, person_id)
        if lines is None:
            return None
        with self.state.session() as s:
            record(s, workspace_id, "person.exported", person_id)
        return lines

    # -- erasure --------------------------------------------------------------------------------

    def delete_person(self, workspace_id: str, person_id: str) -> Erasure:
        """Erases the person (any of their ids works) and every person merged into them."""
        suppress = self.policy(workspace_id).suppress_erased_ids
        with self.events.maintenance_lock, self.writer.paused():
            pids, dids = self._ids(workspace_id, person_id)
            if not pids:
                raise NoSuchPerson(f"no person {person_id} in this workspace")
            target = sorted(pids)[0] if person_id not in pids else person_id
            batch = self._events_of(workspace_id, pids)
            digests = {id_hash(workspace_id, d) for d in dids}
            if suppress:  # first: from here on their late events are dropped
                self._suppress(workspace_id, digests)
            deleted = self.events.delete_people(workspace_id, sorted(pids))
            self.catalog.forget(workspace_id, pids, batch)
            with self.state.session() as s:
                s.execute(
                    delete(Identity).where(
                        Identity.workspace_id == workspace_id, Identity.person_id.in_(pids)
                    )
                )
                s.execute(
                    delete(AccountMembership).where(
                        AccountMembership.workspace_id == workspace_id,
                        AccountMembership.person_id.in_(pids),
                    )
                )
                s.execute(
                    delete(Person).where(Person.workspace_id == workspace_id, Person.id.in_(pids))
                )
                record(
                    s, workspace_id, "person.deleted", target,
                    person_ids=len(pids), distinct_ids=len(dids), events=deleted,
                    suppressed=suppress,
                )  # fmt: skip
        self.state.scrub()
        return Erasure(target, len(pids), len(dids), deleted, suppress, True)

    def _ids(self, workspace_id: str, person_id: str) -> tuple[set[str], set[str]]:
        """Every person id and distinct id to erase, from both stores (either may hold what
        the other lost in an interrupted erasure)."""
        with self.state.session() as s:
            start = s.scalars(
                select(Identity.person_id).where(
                    Identity.workspace_id == workspace_id, Identity.distinct_id == person_id
                )
            ).first()
            root = start or person_id
            p = s.get(Person, root)
            hops = 0
            while p is not None and p.merged_into and hops < 10:  # a merged-away id
                p = s.get(Person, p.merged_into)
                hops += 1
            if p is not None and p.workspace_id == workspace_id:
                root = p.id
            pids = {root} if p is not None and p.workspace_id == workspace_id else set()
            frontier = set(pids)
            while frontier:  # everyone merged into them, however deep
                frontier = (
                    set(
                        s.scalars(
                            select(Person.id).where(
                                Person.workspace_id == workspace_id,
                                Person.merged_into.in_(frontier),
                            )
                        )
                    )
                    - pids
                )
                pids |= frontier
        store_pids, dids = self.events.merged_ids(workspace_id, root)
        if self.events.count(workspace_id, person_id=root) or len(store_pids) > 1:
            pids |= store_pids
        if not pids:
            return set(), set()
        with self.state.session() as s:
            dids |= set(
                s.scalars(
                    select(Identity.distinct_id).where(
                        Identity.workspace_id == workspace_id, Identity.person_id.in_(pids)
                    )
                )
            )
        return pids, dids

    def _events_of(self, workspace_id: str, pids: set[str]) -> list[dict[str, Any]]:
        """What the catalog counted of the person: their events, as the reactor saw them."""
        keep = ("workspace_id", "seq", "type", "name", "timestamp", "properties")
        by_seq: dict[int, dict[str, Any]] = {}
        for pid in sorted(pids):  # a merged id's events come with each of its people
            for ev in self.events.person_events(workspace_id, pid):
                by_seq[ev["seq"]] = {k: ev.get(k) for k in keep}
        return list(by_seq.values())

    def _suppress(self, workspace_id: str, digests: set[str]) -> None:
        with self.state.session() as s:
            known = set(
                s.scalars(
                    select(SuppressedId.digest).where(
                        SuppressedId.workspace_id == workspace_id,
                        SuppressedId.digest.in_(digests),
                    )
                )
            )
            for d in sorted(digests - known):
                s.add(SuppressedId(workspace_id=workspace_id, digest=d, created_at=utcnow()))
        self.writer.suppressed.add(workspace_id, digests)

    # -- retention and purge --------------------------------------------------------------------

    def apply_retention(self, now: datetime | None = None) -> dict[str, int]:
        """Deletes every workspace's events past its retention period; returns how many per
        workspace (those with a period)."""
        now = now or utcnow()
        with self.state.session() as s:
            workspace_ids = list(s.scalars(select(Workspace.id)))
        out: dict[str, int] = {}
        for ws in workspace_ids:
            cutoff = retention_cutoff(now, self.policy(ws).retention_days)
            if cutoff is None:
                continue
            with self.events.maintenance_lock:
                n = self.events.delete_before(ws, cutoff)
            out[ws] = n
            if n:
                log.info("retention", extra={"workspace": ws, "events": n, "before": cutoff})
                with self.state.session() as s:
                    record(s, ws, "events.retention", "", events=n, before=cutoff.isoformat())
        return out

    def purge(self) -> PurgeResult:
        """Rewrites the event file so deleted events leave the disk (see `DuckDBEventStore.purge`)."""
        result = self.events.purge()
        log.info("purge", extra=asdict(result))
        return result

    def maintain(self, now: datetime | None = None) -> tuple[dict[str, int], PurgeResult | None]:
        """What the server runs on a schedule: retention, then a purge if anything was deleted."""
        deleted = self.apply_retention(now)
        result = self.purge() if self.events.pending_purge() else None
        return deleted, result
