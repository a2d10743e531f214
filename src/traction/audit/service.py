"""Recording and reading the audit log.

Who acted is known where a request is authenticated (a dashboard session, an API key, the
CLI), far from the services that make the changes; so the adapters set `ACTOR` and the
services record against it, and every change is logged the same way whichever door it came
through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from traction.audit.models import AuditEntry
from traction.store.state import StateStore, utcnow

ACTOR: ContextVar[str] = ContextVar("traction_actor", default="system")
MAX_DETAIL_CHARS = 20_000


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = ACTOR.set(actor[:300])
    try:
        yield
    finally:
        ACTOR.reset(token)


def record(
    session: Session, workspace_id: str, action: str, target: str = "", **details: Any
) -> None:
    """Adds an entry in the caller's unit of work: it commits with the change it describes,
    or not at all."""
    session.add(
        AuditEntry(
            workspace_id=workspace_id,
            at=utcnow(),
            actor=ACTOR.get(),
            action=action,
            target=target[:300],
            details=_bounded(details),
        )
    )


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    text = repr(details)
    if len(text) <= MAX_DETAIL_CHARS:
        return details
    return {"truncated": text[:MAX_DETAIL_CHARS]}


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat() + "Z",
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": e.details or {},
    }


class AuditLog:
    def __init__(self, state: StateStore) -> None:
        self.state = state

    def entries(
        self,
        workspace_id: str,
        *,
        limit: int = 100,
        before_id: int | None = None,
        action: str | None = None,
        since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; page with `before_id` (the last id of the previous page)."""
        with self.state.session() as s:
            stmt = select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
            if before_id is not None:
                stmt = stmt.where(AuditEntry.id < before_id)
            if action:
                stmt = stmt.where(AuditEntry.action.startswith(action))
            if since is not None:
                stmt = stmt.where(AuditEntry.at >= since)
            rows = s.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit))
            return [entry_dict(e) for e in rows]

    def export(self, workspace_id: str, chunk: int = 1000) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first."""
        after = 0
        while True:
            with self.state.session() as s:
                rows = list(
                    s.scalars(
                        select(AuditEntry)
                        .where(AuditEntry.workspace_id == workspace_id, AuditEntry.id > after)
                        .order_by(AuditEntry.id)
                        .limit(chunk)
                    )
                )
                out = [entry_dict(e) for e in rows]
            if not out:
                return
            yield from out
            after = out[-1]["id"]
