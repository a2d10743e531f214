"""Admin API: erase or export a person, the workspace's privacy policy, a purge on demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse

from traction.privacy.domain import PrivacyPolicy
from traction.privacy.service import NoSuchPerson
from traction.web.downloads import ndjson_download
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["privacy"])


@router.delete("/persons/{person_id}")
def delete_person(
    person_id: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """Erases a person (GDPR art. 17): every event of theirs and of every id merged into
    them, their ids, traits and memberships, and their values in the catalog. Their ids are
    suppressed (unless the policy says otherwise), so events still queued in an SDK do not
    bring them back. Queries stop seeing them at once; the bytes leave the event file at the
    next purge (`purge_pending`), which the server runs on its maintenance schedule."""
    try:
        erasure = request.app.state.ctx.privacy.delete_person(key.workspace_id, person_id)
    except NoSuchPerson as e:
        raise HTTPException(404, str(e)) from None
    return erasure.as_dict()  # type: ignore[no-any-return]


@router.get("/persons/{person_id}/export")
def export_person(
    person_id: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> StreamingResponse:
    """Everything stored about a person (access and portability requests), as NDJSON: the
    person first, then every event, the anonymous history included. Streamed; logged."""
    lines = request.app.state.ctx.privacy.export_person(key.workspace_id, person_id)
    if lines is None:
        raise HTTPException(404, f"no person {person_id}")
    return ndjson_download(lines, f"person-{person_id}.ndjson")


@router.get("/privacy")
def get_policy(request: Request, key: KeyInfo = Depends(admin_key)) -> PrivacyPolicy:
    """The workspace's consent policy, retention period and erasure settings."""
    return request.app.state.ctx.privacy.policy(key.workspace_id)  # type: ignore[no-any-return]


@router.put("/privacy")
def put_policy(
    policy: PrivacyPolicy, request: Request, key: KeyInfo = Depends(admin_key)
) -> PrivacyPolicy:
    """Replaces the policy (fields left out take their defaults). Ingestion applies it within
    a few seconds; retention runs on the server's maintenance schedule."""
    return request.app.state.ctx.privacy.set_policy(key.workspace_id, policy)  # type: ignore[no-any-return]


@router.post("/privacy/purge")
def purge(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    """Rewrites the event file now, so deleted events leave the disk (otherwise the server
    does it on its schedule). Nothing to do when no deletion is pending."""
    ctx = request.app.state.ctx
    if not ctx.events.pending_purge():
        return {"purged": False, "reason": "no deletion is waiting for a purge"}
    result = ctx.privacy.purge()
    return {"purged": True, "bytes_before": result.bytes_before,
            "bytes_after": result.bytes_after, "seconds": round(result.seconds, 3)}  # fmt: skip
