"""Segments on the stores: definitions (checked whole, all or nothing), membership computed
by one DuckDB query and kept in the StateStore, and refreshes that turn each change into an
event. A refresh is one transaction: the members and the segment's generation move
together, and the change events (keyed by segment, person and generation, so a retried
refresh's events are deduplicated by the log) are written after the commit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select

from traction.identity.queries import event_identity
from traction.segments.compile import members_sql
from traction.segments.domain import (
    ENTERED,
    LEFT,
    Segment,
    SegmentError,
    changes,
    parse_segment,
)
from traction.segments.models import SegmentMember, SegmentRow
from traction.store.events import DuckDBEventStore
from traction.store.state import StateStore, utcnow

Emit = Callable[[str, list[dict[str, Any]]], None]
META = ("key", "version", "updated_at", "refreshed_at", "size")


class NotFound(LookupError):
    pass


class SegmentService:
    def __init__(self, state: StateStore, events: DuckDBEventStore | None, emit: Emit | None,
                 slot: Callable[[], AbstractContextManager[None]] | None = None) -> None:  # fmt: skip
        """`events` None: definitions only (the CLI while a server holds the event file).
        `slot`: the analytics' query slot, so refreshes share the bound that keeps a core for
        ingestion (a refresh is a scan of the workspace's log)."""
        self.state = state
        self.events = events
        self.emit = emit
        self.slot = slot or nullcontext
        self._refreshing = threading.Lock()  # one refresh at a time in this process

    # -- definitions ---------------------------------------------------------------------------

    def apply(self, workspace_id: str, bodies: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
        """Several segments, all or nothing: every one is checked before any is saved."""
        checked = {key: self._checked(key, body, len(bodies) > 1) for key, body in bodies.items()}
        out = []
        with self.state.session() as s:
            for key, doc in checked.items():
                row = s.scalars(select(SegmentRow).where(SegmentRow.workspace_id == workspace_id,
                                                         SegmentRow.key == key)).first()  # fmt: skip
                created = row is None
                if row is None:
                    row = SegmentRow(workspace_id=workspace_id, key=key, document=doc, version=1,
                                     updated_at=utcnow(), size=0, generation=0)  # fmt: skip
                    s.add(row)
                elif row.document != doc:
                    row.document, row.version, row.updated_at = doc, row.version + 1, utcnow()
                s.flush()
                out.append((_out(row), created))
        return out

    def put(self, workspace_id: str, key: str, body: Any) -> tuple[dict[str, Any], bool]:
        return self.apply(workspace_id, {key: body})[0]

    def plan(self, workspace_id: str, bodies: dict[str, Any]) -> list[dict[str, Any]]:
        """What `apply` would change (the CLI's diff), checked first."""
        from traction.flags.domain.flags import diff

        out = []
        for key, body in bodies.items():
            doc = self._checked(key, body, len(bodies) > 1)
            try:
                before = {k: v for k, v in self.get(workspace_id, key).items() if k not in META}
            except NotFound:
                before = None
            change = "create" if before is None else ("none" if before == doc else "update")
            out.append({"key": key, "change": change, "diff": diff(before or {}, doc)})
        return out

    @staticmethod
    def _checked(key: str, body: Any, prefix: bool) -> dict[str, Any]:
        try:
            return parse_segment(body).model_dump(mode="json", exclude_none=True)
        except SegmentError as e:
            raise SegmentError(f"{key}: {e}" if prefix else str(e)) from None

    def get(self, workspace_id: str, key: str) -> dict[str, Any]:
        with self.state.session() as s:
            return _out(self._row(s, workspace_id, key))

    def exists(self, workspace_id: str, key: str) -> bool:
        with self.state.session() as s:
            return s.scalar(select(SegmentRow.id).where(SegmentRow.workspace_id == workspace_id,
                                                        SegmentRow.key == key)) is not None  # fmt: skip

    def segments(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(select(SegmentRow).where(SegmentRow.workspace_id == workspace_id)
                             .order_by(SegmentRow.key))  # fmt: skip
            return [_out(r) for r in rows]

    def delete(self, workspace_id: str, key: str) -> None:
        """The segment and its members (no `$segment_left` events: nobody left, it ended)."""
        with self.state.session() as s:
            s.delete(self._row(s, workspace_id, key))
            s.execute(delete(SegmentMember).where(SegmentMember.workspace_id == workspace_id,
                                                  SegmentMember.segment == key))  # fmt: skip

    @staticmethod
    def _row(s: Any, workspace_id: str, key: str, lock: bool = False) -> SegmentRow:
        q = select(SegmentRow).where(SegmentRow.workspace_id == workspace_id, SegmentRow.key == key)
        row = s.scalars(q.with_for_update() if lock else q).first()
        if row is None:
            raise NotFound(f"no segment {key!r}")
        return row  # type: ignore[no-any-return]

    # -- membership ----------------------------------------------------------------------------

    def compute(self, workspace_id: str, seg: Segment, now: datetime | None = None) -> list[str]:
        """Who is in the segment now (person ids, merges followed), straight from the log."""
        if self.events is None:
            raise SegmentError("membership needs the event store: run this with the server")
        sql, params = members_sql(workspace_id, seg, now or utcnow())
        with self.slot(), self.events.reading() as cur:
            return [str(r[0]) for r in cur.execute(sql, params).fetchall()]

    def preview(self, workspace_id: str, body: Any, now: datetime | None = None) -> dict[str, Any]:
        """How many would be in it, and a few of them: the editor's live count."""
        people = self.compute(workspace_id, parse_segment(body), now)
        return {"size": len(people), "sample": people[:20]}

    def refresh(self, workspace_id: str, key: str, now: datetime | None = None) -> dict[str, Any]:
        """Recomputes the members; who entered and who left become events."""
        now = now or utcnow()
        doc = {k: v for k, v in self.get(workspace_id, key).items() if k not in META}
        people = set(self.compute(workspace_id, Segment.model_validate(doc), now))
        out: list[dict[str, Any]] = []
        with self._refreshing, self.state.session() as s:
            row = self._row(s, workspace_id, key, lock=True)  # (PostgreSQL: other processes wait)
            before = set(s.scalars(select(SegmentMember.person_id).where(
                SegmentMember.workspace_id == workspace_id, SegmentMember.segment == key)))  # fmt: skip
            entered, left = changes(before, people)
            if entered or left:
                row.generation += 1
            for pid in left:
                s.execute(delete(SegmentMember).where(SegmentMember.workspace_id == workspace_id,
                                                      SegmentMember.segment == key,
                                                      SegmentMember.person_id == pid))  # fmt: skip
            s.add_all(SegmentMember(workspace_id=workspace_id, segment=key, person_id=pid,
                                    entered_at=now) for pid in entered)  # fmt: skip
            row.refreshed_at, row.size = now, len(people)
            for event, who in ((ENTERED, entered), (LEFT, left)):
                for pid in who:
                    out.append({"type": "track", "event": event, **event_identity(s, workspace_id, pid),
                                "messageId": f"{event}:{workspace_id}:{key}:{pid}:{row.generation}",
                                "timestamp": now.isoformat() + "Z",
                                "properties": {"segment": key, "segment_name": doc.get("name") or key}})  # fmt: skip
        if out and self.emit is not None:
            self.emit(workspace_id, out)
        return {"segment": key, "size": len(people), "entered": len(entered), "left": len(left)}

    def refresh_all(self, now: datetime | None = None) -> int:
        """Every segment of every workspace (the maintenance loop); returns the changes."""
        with self.state.session() as s:
            keys = list(s.execute(select(SegmentRow.workspace_id, SegmentRow.key)).all())
        total = 0
        for ws, key in keys:
            try:
                r = self.refresh(ws, key, now)
            except NotFound:  # deleted meanwhile
                continue
            total += r["entered"] + r["left"]
        return total

    def members(
        self, workspace_id: str, key: str, *, limit: int = 100, offset: int = 0
    ) -> dict[str, Any]:
        self.get(workspace_id, key)
        with self.state.session() as s:
            where = (SegmentMember.workspace_id == workspace_id, SegmentMember.segment == key)
            total = s.scalar(select(func.count()).select_from(SegmentMember).where(*where)) or 0
            rows = s.execute(select(SegmentMember.person_id, SegmentMember.entered_at).where(*where)
                             .order_by(SegmentMember.entered_at.desc(), SegmentMember.person_id)
                             .limit(limit).offset(offset)).all()  # fmt: skip
            shown = _shown_ids(s, workspace_id, [p for p, _ in rows])
        return {"segment": key, "total": int(total),
                "members": [{"person_id": p, "id": shown.get(p, p), "entered_at": t.isoformat() + "Z"}
                            for p, t in rows]}  # fmt: skip

    def member_ids(self, workspace_id: str, key: str) -> list[str]:
        """The last computed members (the schedule trigger's audience)."""
        with self.state.session() as s:
            return list(s.scalars(select(SegmentMember.person_id).where(
                SegmentMember.workspace_id == workspace_id, SegmentMember.segment == key)
                .order_by(SegmentMember.person_id)))  # fmt: skip


def _shown_ids(s: Any, workspace_id: str, people: list[str]) -> dict[str, str]:
    """Each person's own id as their events name them (a user id before an anonymous one)."""
    from traction.identity.models import Identity

    out: dict[str, str] = {}
    rows = s.execute(select(Identity.person_id, Identity.distinct_id).where(
        Identity.workspace_id == workspace_id, Identity.person_id.in_(people))
        .order_by(Identity.is_user_id.asc())).all()  # fmt: skip
    for pid, distinct in rows:  # user ids come last and win
        out[pid] = distinct
    return out


def _out(row: SegmentRow) -> dict[str, Any]:
    return {"key": row.key, **row.document, "version": row.version,
            "updated_at": row.updated_at.isoformat() + "Z",
            "refreshed_at": row.refreshed_at.isoformat() + "Z" if row.refreshed_at else None,
            "size": row.size}  # fmt: skip
