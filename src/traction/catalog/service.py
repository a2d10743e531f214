"""The catalog's use cases: keep it current from batches of events, read it, annotate it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from traction.catalog.domain import (
    SOURCES,
    PropertyKey,
    event_keys,
    main_type,
    merge_values,
    property_sources,
    subtract_values,
    tally,
)
from traction.catalog.models import CatalogEvent, CatalogProperty
from traction.store.state import StateStore

RESERVED = frozenset({"$any", "$page", "$screen"})  # matchers the analytics engine knows


class UnknownEntry(LookupError):
    pass


class CatalogService:
    def __init__(self, state: StateStore) -> None:
        self.state = state
        # An erasure and the reactor's updates exclude each other, and a batch the reactor
        # read before an erasure skips the erased people's events when it lands after it.
        self._lock = threading.Lock()
        self._erased: set[tuple[str, str]] = set()
        # where erasures go while the catalog reactor runs in another process (that
        # process's lock and memory of erased people): `reactor_process.ReactorProcess`
        self.elsewhere: Callable[[str, Iterable[str], Sequence[Mapping[str, Any]]], None] | None
        self.elsewhere = None

    # -- keeping it current (the catalog reactor) ---------------------------------------

    def apply(self, batch: Sequence[Mapping[str, Any]]) -> None:
        """Adds a batch of stored events. Idempotent: each row remembers the highest seq it
        has counted, and a redelivered event is skipped."""
        with self._lock:
            if self._erased:
                batch = [
                    ev
                    for ev in batch
                    if (ev["workspace_id"], ev.get("person_id")) not in self._erased
                ]
            self._apply(batch)

    def _apply(self, batch: Sequence[Mapping[str, Any]]) -> None:
        ekeys = event_keys(batch)
        scopes = {
            (ev["workspace_id"], source, event)
            for ev in batch
            for (source, event, _), _props in property_sources(ev)
        }
        if not ekeys and not scopes:
            return
        with self.state.session() as s:
            events = _events_by_key(s, ekeys)
            props = _properties_by_scope(s, scopes)
            counts: dict[tuple[str, str, str], int] = {}
            for ws, (source, event, _) in props:
                counts[(ws, source, event)] = counts.get((ws, source, event), 0) + 1
            t = tally(
                batch,
                {k: r.applied_seq for k, r in events.items()},
                {k: r.applied_seq for k, r in props.items()},
                counts,
            )
            for (ws, name), et in t.events.items():
                row = events.get((ws, name))
                if row is None:
                    row = CatalogEvent(
                        workspace_id=ws, name=name, volume=0, applied_seq=0,
                        description="", tags=[], verified=False, hidden=False,
                    )  # fmt: skip
                    s.add(row)
                row.volume = (row.volume or 0) + et.count
                if row.first_seen_at is None or (et.first and et.first < row.first_seen_at):
                    row.first_seen_at = et.first
                if row.last_seen_at is None or (et.last and et.last > row.last_seen_at):
                    row.last_seen_at = et.last
                row.applied_seq = et.max_seq
            for (ws, (source, event, name)), pt in t.properties.items():
                prow = props.get((ws, (source, event, name)))
                if prow is None:
                    prow = CatalogProperty(
                        workspace_id=ws, source=source, event=event, name=name, count=0,
                        types={}, top_values={}, applied_seq=0, description="",
                    )  # fmt: skip
                    s.add(prow)
                prow.count = (prow.count or 0) + pt.count
                types = dict(prow.types or {})
                for typ, n in pt.types.items():
                    types[typ] = types.get(typ, 0) + n
                prow.types = types
                prow.top_values = merge_values(prow.top_values or {}, pt.values)
                prow.applied_seq = pt.max_seq

    def forget(
        self, workspace_id: str, person_ids: Iterable[str], batch: Sequence[Mapping[str, Any]]
    ) -> None:
        """Takes erased events back out: volumes and counts come down by what the catalog had
        counted of them, and top values left with no count are dropped."""
        if self.elsewhere is not None:
            self.elsewhere(workspace_id, person_ids, batch)
        else:
            self.forget_here(workspace_id, person_ids, batch)

    def forget_here(
        self, workspace_id: str, person_ids: Iterable[str], batch: Sequence[Mapping[str, Any]]
    ) -> None:
        """`forget` in this process, whichever runs the catalog reactor."""
        with self._lock:
            self._erased.update((workspace_id, pid) for pid in person_ids)
            ekeys = event_keys(batch)
            scopes = {
                (workspace_id, source, event)
                for ev in batch
                for (source, event, _), _props in property_sources(ev)
            }
            with self.state.session() as s:
                events = _events_by_key(s, ekeys)
                props = _properties_by_scope(s, scopes)
                # only what each row has counted (up to its applied_seq) comes off
                t = tally(
                    batch,
                    {k: r.applied_seq for k, r in events.items()},
                    {k: r.applied_seq for k, r in props.items()},
                    counted=True,
                )
                for ekey, et in t.events.items():
                    if (row := events.get(ekey)) is not None:
                        row.volume = max(0, (row.volume or 0) - et.count)
                for pkey, pt in t.properties.items():
                    if (prow := props.get(pkey)) is None:
                        continue
                    prow.count = max(0, (prow.count or 0) - pt.count)
                    types = {typ: n - pt.types.get(typ, 0) for typ, n in (prow.types or {}).items()}
                    prow.types = {typ: n for typ, n in types.items() if n > 0}
                    prow.top_values = subtract_values(prow.top_values or {}, pt.values)

    # -- reading ----------------------------------------------------------------------------

    def events(
        self, workspace_id: str, *, include_hidden: bool = True, q: str | None = None
    ) -> list[dict[str, Any]]:
        with self.state.session() as s:
            stmt = select(CatalogEvent).where(CatalogEvent.workspace_id == workspace_id)
            if not include_hidden:
                stmt = stmt.where(CatalogEvent.hidden.is_(False))
            if q:
                stmt = stmt.where(func.lower(CatalogEvent.name).contains(q.lower()))
            rows = s.scalars(stmt.order_by(CatalogEvent.volume.desc(), CatalogEvent.name))
            return [_event_dict(r) for r in rows]

    def event(self, workspace_id: str, name: str) -> dict[str, Any]:
        with self.state.session() as s:
            return _event_dict(_one_event(s, workspace_id, name))

    def update_event(self, workspace_id: str, name: str, **changes: Any) -> dict[str, Any]:
        """Description, tags, verified, hidden: what people know about an event."""
        with self.state.session() as s:
            row = _one_event(s, workspace_id, name)
            for key in ("description", "tags", "verified", "hidden"):
                if changes.get(key) is not None:
                    setattr(row, key, changes[key])
            s.flush()
            return _event_dict(row)

    def properties(
        self, workspace_id: str, *, source: str = "event", event: str | None = None
    ) -> list[dict[str, Any]]:
        """An event's properties (or, with no event, every event property by name), or the
        person or account traits."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}")
        with self.state.session() as s:
            stmt = select(CatalogProperty).where(
                CatalogProperty.workspace_id == workspace_id, CatalogProperty.source == source
            )
            if source == "event" and event and event != "$any":
                stmt = stmt.where(CatalogProperty.event == event)
            merged: dict[str, dict[str, Any]] = {}
            for r in s.scalars(stmt):
                m = merged.setdefault(r.name, {"name": r.name, "count": 0, "types": {}})
                m["count"] += r.count
                for typ, n in (r.types or {}).items():
                    m["types"][typ] = m["types"].get(typ, 0) + n
            out = sorted(merged.values(), key=lambda m: (-m["count"], m["name"]))
            for m in out:
                m["type"] = main_type(m["types"])
            return out

    def values(
        self,
        workspace_id: str,
        prop: str,
        *,
        source: str = "event",
        event: str | None = None,
        q: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """The most frequent values of a property (those the catalog keeps), for suggestions."""
        with self.state.session() as s:
            stmt = select(CatalogProperty).where(
                CatalogProperty.workspace_id == workspace_id,
                CatalogProperty.source == source,
                CatalogProperty.name == prop,
            )
            if source == "event" and event and event != "$any":
                stmt = stmt.where(CatalogProperty.event == event)
            counts: dict[str, int] = {}
            for r in s.scalars(stmt):
                for value, n in (r.top_values or {}).items():
                    counts[value] = counts.get(value, 0) + int(n)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if q:
            ranked = [kv for kv in ranked if q.lower() in kv[0].lower()]
        return [{"value": v, "count": n} for v, n in ranked[:limit]]

    def warnings(
        self,
        workspace_id: str,
        names: Iterable[str],
        in_log: Callable[[list[str]], set[str]] | None = None,
    ) -> list[str]:
        """What to tell someone whose insight names events that never arrived: a misspelt
        event silently counts zero otherwise. The catalog trails the log by its reactor (after
        a bulk import, for a minute or so): `in_log` confirms a name it does not know yet
        against the events themselves, so a warning is never false."""
        unknown = self.unknown_events(workspace_id, names)
        if unknown and in_log is not None:
            present = in_log(unknown)
            unknown = [n for n in unknown if n not in present]
        return [
            f"event {n!r} has never been received in this workspace: it counts as zero "
            "(check the spelling, or pick it from the catalog)"
            for n in unknown
        ]

    def unknown_events(self, workspace_id: str, names: Iterable[str]) -> list[str]:
        """The names among `names` this workspace has never received (reserved ones aside)."""
        wanted = sorted(set(names) - RESERVED)
        if not wanted:
            return []
        with self.state.session() as s:
            seen = set(
                s.scalars(
                    select(CatalogEvent.name).where(
                        CatalogEvent.workspace_id == workspace_id, CatalogEvent.name.in_(wanted)
                    )
                )
            )
        return [n for n in wanted if n not in seen]


def _one_event(s: Session, workspace_id: str, name: str) -> CatalogEvent:
    row = s.scalars(
        select(CatalogEvent).where(
            CatalogEvent.workspace_id == workspace_id, CatalogEvent.name == name
        )
    ).first()
    if row is None:
        raise UnknownEntry(f"no event {name!r} in this workspace's catalog")
    return row


def _event_dict(r: CatalogEvent) -> dict[str, Any]:
    return {
        "name": r.name,
        "volume": r.volume,
        "first_seen_at": r.first_seen_at.isoformat() if r.first_seen_at else None,
        "last_seen_at": r.last_seen_at.isoformat() if r.last_seen_at else None,
        "description": r.description,
        "tags": list(r.tags or []),
        "verified": r.verified,
        "hidden": r.hidden,
    }


def _events_by_key(s: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], CatalogEvent]:
    if not keys:
        return {}
    rows = s.scalars(
        select(CatalogEvent).where(
            tuple_(CatalogEvent.workspace_id, CatalogEvent.name).in_(sorted(keys))
        )
    )
    return {(r.workspace_id, r.name): r for r in rows}


def _properties_by_scope(
    s: Session, scopes: set[tuple[str, str, str]]
) -> dict[tuple[str, PropertyKey], CatalogProperty]:
    if not scopes:
        return {}
    rows = s.scalars(
        select(CatalogProperty).where(
            tuple_(CatalogProperty.workspace_id, CatalogProperty.source, CatalogProperty.event).in_(
                sorted(scopes)
            )
        )
    )
    return {(r.workspace_id, (r.source, r.event, r.name)): r for r in rows}
