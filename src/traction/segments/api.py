"""Segments over HTTP (secret key): `PUT/GET/DELETE /api/v1/segments/{key}`,
`GET /api/v1/segments`, `POST /api/v1/segments/preview` (a count before saving),
`POST /api/v1/segments/{key}/refresh` (recompute now) and `GET /api/v1/segments/{key}/members`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from traction.segments.domain import SegmentError
from traction.segments.service import NotFound
from traction.web.answers import answer
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["segments"])
SegmentKey = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$", description="the segment's key")
DOCUMENT = Body(description="name, description, traits (filters), performed (docs/segments.md)")


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return answer(fn, *args, invalid=SegmentError, missing=NotFound, **kwargs)


@router.get("/segments")
def list_segments(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"segments": request.app.state.ctx.segments.segments(key.workspace_id)}


@router.post("/segments/preview")
def preview_segment(request: Request, body: Any = DOCUMENT,
                    key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:  # fmt: skip
    """How many people the definition matches now, and a few of them; nothing is saved."""
    return _call(request.app.state.ctx.segments.preview, key.workspace_id, body)  # type: ignore[no-any-return]


@router.put("/segments/{segment}")
def put_segment(request: Request, segment: str = SegmentKey, body: Any = DOCUMENT,
                key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:  # fmt: skip
    """Creates or replaces a segment; its members are computed at the next refresh (or
    `POST .../refresh`)."""
    out, created = _call(request.app.state.ctx.segments.put, key.workspace_id, segment, body)
    return {**out, "created": created}


@router.get("/segments/{segment}")
def get_segment(request: Request, segment: str = SegmentKey,
                key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:  # fmt: skip
    return _call(request.app.state.ctx.segments.get, key.workspace_id, segment)  # type: ignore[no-any-return]


@router.delete("/segments/{segment}", status_code=204)
def delete_segment(request: Request, segment: str = SegmentKey,
                   key: KeyInfo = Depends(admin_key)) -> Response:  # fmt: skip
    _call(request.app.state.ctx.segments.delete, key.workspace_id, segment)
    return Response(status_code=204)


@router.post("/segments/{segment}/refresh")
def refresh_segment(request: Request, segment: str = SegmentKey,
                    key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:  # fmt: skip
    """Recomputes the members now: who entered and who left become `$segment_entered` and
    `$segment_left` events."""
    return _call(request.app.state.ctx.segments.refresh, key.workspace_id, segment)  # type: ignore[no-any-return]


@router.get("/segments/{segment}/members")
def segment_members(request: Request, segment: str = SegmentKey,
                    limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000),
                    key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:  # fmt: skip
    """The members as of the last refresh, newest first, with the total."""
    return _call(request.app.state.ctx.segments.members, key.workspace_id, segment,  # type: ignore[no-any-return]
                 limit=limit, offset=offset)  # fmt: skip
