"""Dashboard pages for segments: the list (size, last refresh) with a form for a new one, and
a segment's page (its members, "refresh now", and the JSON editor with a live count)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from traction.segments.domain import SegmentError
from traction.segments.service import META, NotFound
from traction.web.answers import json_document
from traction.web.routes import page_context, render
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])
EXAMPLE = {
    "name": "Engaged free users",
    "traits": [{"property": "plan", "source": "person", "operator": "equals", "value": "free"}],
    "performed": [{"event": {"event": "$any"}, "at_least": 5, "within_days": 14}],
}


def _admin(page: dict[str, Any]) -> None:
    if page["role"] != "admin":
        raise HTTPException(403, "only a workspace admin can change segments")


@router.get("/w/{ws_id}/segments")
def segments_page(request: Request, ws_id: str) -> HTMLResponse:
    return _list(request, page_context(request, ws_id, "segments"), ws_id)


def _list(request: Request, page: dict[str, Any], ws_id: str, status: int = 200,
          error: str | None = None, key: str = "", text: str | None = None) -> HTMLResponse:  # fmt: skip
    return render(request, "segments.html", status_code=status, **page,
                  segments=request.app.state.ctx.segments.segments(ws_id), error=error, key=key,
                  document=text if text is not None else json.dumps(EXAMPLE, indent=2))  # fmt: skip


@router.post("/w/{ws_id}/segments")
async def segment_create(request: Request, ws_id: str) -> Any:
    page = page_context(request, ws_id, "segments")
    _admin(page)
    form = await request.form()
    key, text = str(form.get("key") or "").strip(), str(form.get("document") or "")
    svc = request.app.state.ctx.segments
    try:
        if not key or not key.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise SegmentError("key: letters, digits, - _ . (e.g. engaged-free)")
        svc.put(ws_id, key, json_document(text, SegmentError))
        svc.refresh(ws_id, key)
    except SegmentError as e:
        return _list(request, page, ws_id, 422, str(e), key, text)
    return RedirectResponse(f"/w/{ws_id}/segments/{key}", status_code=303)


@router.post("/w/{ws_id}/segments/count")
async def segment_count(request: Request, ws_id: str) -> HTMLResponse:
    """The editor's live count (htmx, as the JSON is typed)."""
    page = page_context(request, ws_id, "segments")
    text = str((await request.form()).get("document") or "")
    try:
        result, error = (
            request.app.state.ctx.segments.preview(ws_id, json_document(text, SegmentError)),
            None,
        )
    except SegmentError as e:
        result, error = None, str(e)
    return render(request, "segment_count.html", **page, result=result, error=error)


@router.get("/w/{ws_id}/segments/{key}")
def segment_page(request: Request, ws_id: str, key: str,
                 offset: int = Query(0, ge=0, le=10_000_000)) -> HTMLResponse:  # fmt: skip
    return _segment(request, page_context(request, ws_id, "segments"), ws_id, key, offset=offset)


def _segment(request: Request, page: dict[str, Any], ws_id: str, key: str, status: int = 200,
             error: str | None = None, text: str | None = None, saved: bool = False,
             offset: int = 0) -> HTMLResponse:  # fmt: skip
    svc = request.app.state.ctx.segments
    try:
        doc = svc.get(ws_id, key)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    body = {k: v for k, v in doc.items() if k not in META}
    return render(request, "segment.html", status_code=status, **page, s=doc, error=error,
                  saved=saved, members=svc.members(ws_id, key, limit=100, offset=offset), offset=offset,
                  document=text if text is not None else json.dumps(body, indent=2))  # fmt: skip


@router.post("/w/{ws_id}/segments/{key}")
async def segment_save(request: Request, ws_id: str, key: str) -> HTMLResponse:
    page = page_context(request, ws_id, "segments")
    _admin(page)
    text = str((await request.form()).get("document") or "")
    svc = request.app.state.ctx.segments
    try:
        svc.put(ws_id, key, json_document(text, SegmentError))
        svc.refresh(ws_id, key)
    except SegmentError as e:
        return _segment(request, page, ws_id, key, 422, str(e), text)
    return _segment(request, page, ws_id, key, saved=True)


@router.post("/w/{ws_id}/segments/{key}/refresh")
def segment_refresh(request: Request, ws_id: str, key: str) -> RedirectResponse:
    _admin(page_context(request, ws_id, "segments"))
    try:
        request.app.state.ctx.segments.refresh(ws_id, key)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    return RedirectResponse(f"/w/{ws_id}/segments/{key}", status_code=303)
