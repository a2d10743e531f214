"""Dashboard page for the audit log (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from traction.web.downloads import ndjson_download, ndjson_lines
from traction.web.routes import admin_page, render
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])
PAGE = 100


@router.get("/w/{ws_id}/audit")
def audit_page(
    request: Request, ws_id: str, action: str = "", before_id: int | None = None
) -> HTMLResponse:
    page = admin_page(request, ws_id, "audit")
    before = before_id if before_id is not None and 0 < before_id < 2**62 else None
    entries = request.app.state.ctx.audit.entries(
        ws_id, limit=PAGE, before_id=before, action=action[:100] or None
    )
    return render(
        request, "audit.html", **page, entries=entries, action=action[:100],
        next_before_id=entries[-1]["id"] if len(entries) == PAGE else None,
    )  # fmt: skip


@router.get("/w/{ws_id}/audit/export")
def audit_export(request: Request, ws_id: str) -> StreamingResponse:
    admin_page(request, ws_id, "audit")
    entries = request.app.state.ctx.audit.export(ws_id)
    return ndjson_download(ndjson_lines(entries), "audit-log.ndjson")
