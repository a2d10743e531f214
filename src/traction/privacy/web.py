"""Dashboard pages for privacy (admins only): erase or export a person, the workspace's
consent and retention policy, a purge on demand."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ValidationError

from traction.privacy.domain import PrivacyPolicy
from traction.privacy.service import NoSuchPerson
from traction.validation import describe
from traction.web.downloads import ndjson_download
from traction.web.routes import admin_page, render, same_origin
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


@router.get("/w/{ws_id}/persons/{person_id}/export")
def person_export(request: Request, ws_id: str, person_id: str) -> StreamingResponse:
    """The person's data as NDJSON, for an access or portability request."""
    admin_page(request, ws_id, "persons")
    lines = request.app.state.ctx.privacy.export_person(ws_id, person_id)
    if lines is None:
        raise HTTPException(404, "no such person")
    return ndjson_download(lines, f"person-{person_id}.ndjson")


@router.post("/w/{ws_id}/persons/{person_id}/delete")
def person_delete(request: Request, ws_id: str, person_id: str) -> HTMLResponse:
    same_origin(request)
    page = admin_page(request, ws_id, "persons")
    try:
        erasure = request.app.state.ctx.privacy.delete_person(ws_id, person_id)
    except NoSuchPerson:
        raise HTTPException(404, "no such person") from None
    return render(request, "erased.html", **page, erasure=erasure)


def _privacy_page(request: Request, ws_id: str, status: int = 200, **extra: object) -> HTMLResponse:
    page = admin_page(request, ws_id, "privacy")
    ctx = request.app.state.ctx
    page.update(
        policy=ctx.privacy.policy(ws_id),
        pending=ctx.events.pending_purge(),
        interval_hours=ctx.settings.maintenance_interval_seconds / 3600,
    )
    page.update({"notice": None, "error": None} | extra)
    return render(request, "privacy.html", status, **page)


@router.get("/w/{ws_id}/privacy")
def privacy(request: Request, ws_id: str) -> HTMLResponse:
    return _privacy_page(request, ws_id)


@router.post("/w/{ws_id}/privacy")
def privacy_save(
    request: Request,
    ws_id: str,
    required_categories: str = Form(""),
    when_missing: str = Form("store"),
    do_not_track: str = Form("ignore"),
    retention_days: str = Form(""),
    suppress_erased_ids: str = Form(""),
) -> HTMLResponse:
    same_origin(request)
    admin_page(request, ws_id, "privacy")
    try:
        policy = PrivacyPolicy.model_validate(
            {
                "consent": {
                    "required_categories": [
                        c.strip() for c in required_categories[:10_000].split(",") if c.strip()
                    ],
                    "when_missing": when_missing,
                    "do_not_track": do_not_track,
                },
                "retention_days": int(retention_days) if retention_days.strip() else None,
                "suppress_erased_ids": bool(suppress_erased_ids),
            }
        )
    except ValueError as e:  # ValidationError is one; so is int("abc")
        msg = (
            describe(e)
            if isinstance(e, ValidationError)
            else "retention must be a whole number of days"
        )
        return _privacy_page(request, ws_id, 422, error=msg)
    request.app.state.ctx.privacy.set_policy(ws_id, policy)
    return _privacy_page(request, ws_id, notice="Saved. Ingestion applies it within a few seconds.")


@router.post("/w/{ws_id}/privacy/purge")
def privacy_purge(request: Request, ws_id: str) -> HTMLResponse:
    same_origin(request)
    admin_page(request, ws_id, "privacy")
    ctx = request.app.state.ctx
    if not ctx.events.pending_purge():
        return _privacy_page(request, ws_id, notice="Nothing to purge: no deletion is waiting.")
    r = ctx.privacy.purge()
    return _privacy_page(
        request, ws_id,
        notice=f"Purged in {r.seconds:.1f} s: the event file went from "
        f"{r.bytes_before / 1e6:,.1f} MB to {r.bytes_after / 1e6:,.1f} MB.",
    )  # fmt: skip
