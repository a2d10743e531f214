"""Admin API: the workspace's audit log, paged or exported whole."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from traction.web.downloads import ndjson_download, ndjson_lines
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit")
def audit_entries(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(
        None, ge=1, le=2**62, description="the last id of the previous page"
    ),
    action: str | None = Query(None, max_length=100, description="e.g. `key.` or `person.deleted`"),
    since: datetime | None = Query(None, description="ISO 8601, UTC"),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Who changed what and when, newest first: keys, members and roles, workspace
    settings, KPI configuration, privacy policy, erasures, exports, retention."""
    if since is not None and since.tzinfo is not None:
        try:
            since = since.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise HTTPException(422, "since is out of range") from None
    entries = request.app.state.ctx.audit.entries(
        key.workspace_id, limit=limit, before_id=before_id, action=action, since=since
    )
    return {
        "entries": entries,
        "next_before_id": entries[-1]["id"] if len(entries) == limit else None,
    }


@router.get("/audit/export")
def audit_export(request: Request, key: KeyInfo = Depends(admin_key)) -> StreamingResponse:
    """The whole log, oldest first, as NDJSON."""
    entries = request.app.state.ctx.audit.export(key.workspace_id)
    return ndjson_download(ndjson_lines(entries), "audit-log.ndjson")
