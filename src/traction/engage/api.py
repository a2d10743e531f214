"""Engagement over HTTP.

- Admin (secret key): `PUT/GET/DELETE /api/v1/journeys/{key}`, `GET /api/v1/journeys`,
  `GET /api/v1/journeys/{key}/stats`, deliveries (the dead-letter list, a person's log) and
  "retry", the suppression list, the webhook signing secret.
- The browser snippet (public write key, CORS like the tracking API): `GET /v1/inapp` (the
  person's pending messages) and `POST /v1/inapp/{id}/{shown|clicked|dismissed}`.
- Links in emails (signed, no key): `/m/u/{token}` unsubscribe (GET shows a page, POST is
  RFC 8058's one-click), `/m/o/{token}.gif` the open pixel, `/m/c/{token}?to=` the click.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from traction.engage.delivery import retry
from traction.engage.domain.journeys import JourneyError
from traction.engage.links import unsubscribe_parts
from traction.engage.models import Delivery
from traction.engage.service import NotFound
from traction.identity.models import Identity
from traction.ingest.api import key_from_headers
from traction.store.state import utcnow
from traction.web.answers import answer
from traction.web.routes import render
from traction.workspaces.api import admin_key
from traction.workspaces.service import AuthError, KeyInfo, ScopeError

router = APIRouter(prefix="/api/v1", tags=["journeys"])
public = APIRouter(tags=["in-app and email links"])
JourneyKey = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$", description="the journey's key")
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return answer(
        fn, *args, invalid=(JourneyError, ValueError), missing=(NotFound, LookupError), **kwargs
    )


@router.get("/journeys")
def list_journeys(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"journeys": request.app.state.ctx.engage.journeys(key.workspace_id)}


@router.put("/journeys/{journey}")
def put_journey(
    request: Request,
    journey: str = JourneyKey,
    body: Any = Body(
        description="trigger, entry, goal, holdout, quiet_hours, steps (docs/engage.md)"
    ),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Creates or replaces a journey, checked whole (templates included) before it is saved."""
    out, created = _call(request.app.state.ctx.engage.put, key.workspace_id, journey, body)
    return {**out, "created": created}


@router.get("/journeys/{journey}")
def get_journey(
    request: Request, journey: str = JourneyKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    return _call(request.app.state.ctx.engage.get, key.workspace_id, journey)  # type: ignore[no-any-return]


@router.delete("/journeys/{journey}", status_code=204)
def delete_journey(
    request: Request, journey: str = JourneyKey, key: KeyInfo = Depends(admin_key)
) -> Response:
    """Deletes it; its active runs exit at their next step."""
    _call(request.app.state.ctx.engage.delete, key.workspace_id, journey)
    return Response(status_code=204)


@router.get("/journeys/{journey}/stats")
async def journey_stats(
    request: Request, journey: str = JourneyKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """Entries by arm and status, messages by step and status (opens, clicks), and the goal's
    rate against the holdout with lift, interval and p-value (the experiment engine)."""
    svc = request.app.state.ctx.engage
    return await run_in_threadpool(_call, svc.stats, key.workspace_id, journey)  # type: ignore[no-any-return]


@router.get("/deliveries")
def list_deliveries(
    request: Request,
    status: str | None = Query(None, max_length=16, description="e.g. dead (the dead-letter list)"),
    person_id: str | None = Query(None, max_length=40),
    journey: str | None = Query(None, max_length=100),
    limit: int = Query(200, ge=1, le=1000),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    svc = request.app.state.ctx.engage
    return {"deliveries": svc.deliveries(key.workspace_id, person_id=person_id, status=status,
                                         journey=journey, limit=limit)}  # fmt: skip


@router.post("/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request, delivery_id: int = Path(ge=1, le=2**62), key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """A dead letter back in the queue."""
    return _call(retry, request.app.state.ctx.state, key.workspace_id, delivery_id)  # type: ignore[no-any-return]


class SuppressionBody(BaseModel):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    reason: str = Field("manual", max_length=40)


@router.get("/suppressions")
def list_suppressions(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"suppressions": request.app.state.ctx.engage.suppressions(key.workspace_id)}


@router.post("/suppressions", status_code=201)
def add_suppression(
    request: Request, body: SuppressionBody, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    request.app.state.ctx.engage.suppress(key.workspace_id, body.email, body.reason)
    return {"email": body.email.lower(), "reason": body.reason}


class BounceBody(BaseModel):
    email: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="the address that bounced",
    )
    kind: Literal["hard", "soft", "complaint"] = "hard"
    message_id: str | None = Field(None, max_length=300, description="the Message-ID it bounced")
    reason: str = Field("", max_length=1000, description="the diagnostic, as the ESP gave it")


@router.post("/bounces")
def report_bounce(
    request: Request, body: BounceBody, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """A bounce or complaint that came after the send (from an ESP's webhook or a DSN
    reader): hard bounces and complaints suppress the address; the message named by its
    Message-ID counts as bounced."""
    return _call(request.app.state.ctx.engage.bounce, key.workspace_id, body.email, body.kind,  # type: ignore[no-any-return]
                 body.message_id, body.reason)  # fmt: skip


@router.delete("/suppressions/{email}", status_code=204)
def remove_suppression(
    request: Request, email: str = Path(max_length=320), key: KeyInfo = Depends(admin_key)
) -> Response:
    if not request.app.state.ctx.engage.unsuppress(key.workspace_id, email):
        raise HTTPException(404, f"{email} is not suppressed")
    return Response(status_code=204)


@router.get("/journeys-webhook-secret")
def webhook_secret(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, str]:
    """The secret webhook receivers verify `X-Traction-Signature` with (docs/engage.md)."""
    return {"secret": request.app.state.ctx.engage.webhook_secret(key.workspace_id)}


# -- the browser snippet -----------------------------------------------------------------------


def _snippet_person(
    request: Request, user_id: str | None, anonymous_id: str | None
) -> tuple[str, str | None]:
    ctx = request.app.state.ctx
    try:
        info = ctx.workspaces.authenticate_key(key_from_headers(request.headers), "write")
    except (AuthError, ScopeError) as e:
        raise HTTPException(401, str(e)) from None
    ids = [i for i in (user_id, anonymous_id) if i]
    if not ids:
        raise HTTPException(422, "userId or anonymousId: who the messages are for")
    with ctx.state.session() as s:
        for distinct in ids:
            pid = s.scalar(select(Identity.person_id).where(Identity.workspace_id == info.workspace_id,
                                                            Identity.distinct_id == distinct))  # fmt: skip
            if pid:
                from traction.engage.runs import _survivor

                return info.workspace_id, _survivor(s, pid)
    return info.workspace_id, None


@public.get("/v1/inapp")
def inapp_pending(
    request: Request,
    user_id: str | None = Query(None, alias="userId", max_length=200),
    anonymous_id: str | None = Query(None, alias="anonymousId", max_length=200),
) -> dict[str, Any]:
    """The person's in-app messages to show (the public write key, like `track`)."""
    ws, pid = _snippet_person(request, user_id, anonymous_id)
    return {"messages": request.app.state.ctx.engage.pending_inapp(ws, pid) if pid else []}


@public.post("/v1/inapp/{delivery_id}/{what}")
def inapp_event(
    request: Request,
    delivery_id: int = Path(ge=1, le=2**62),
    what: str = Path(pattern="^(shown|clicked|dismissed)$"),
    user_id: str | None = Query(None, alias="userId", max_length=200),
    anonymous_id: str | None = Query(None, alias="anonymousId", max_length=200),
) -> dict[str, Any]:
    """Records what the person did with a message (the snippet also tracks `$message_*`)."""
    ws, pid = _snippet_person(request, user_id, anonymous_id)
    if pid is None:
        raise HTTPException(404, "no such person")
    return _call(request.app.state.ctx.engage.inapp_event, ws, pid, delivery_id, what)  # type: ignore[no-any-return]


# -- links in emails ---------------------------------------------------------------------------


def _token(request: Request, token: str, kind: str) -> list[str]:
    payload = request.app.state.ctx.engage.links.open(token)
    if payload is None or not payload.startswith(kind + ":"):
        raise HTTPException(404, "this link is not valid (it may have been cut short)")
    return payload.split(":", 2)


def unsubscribe_parts_of(request: Request, token: str) -> tuple[str, int | None, str]:
    _, ws, rest = _token(request, token, "u")
    delivery, email = unsubscribe_parts(rest)
    return ws, delivery, email


@public.get("/m/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str = Path(max_length=2000)) -> HTMLResponse:
    """Asks first: a link scanner that follows links must not unsubscribe anyone."""
    _, _, email = unsubscribe_parts_of(request, token)
    return render(request, "unsubscribe.html", email=email, done=False)


@public.post("/m/u/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, token: str = Path(max_length=2000)) -> HTMLResponse:
    """The page's button, and RFC 8058's one-click POST (`List-Unsubscribe=One-Click`)."""
    ws, delivery, email = unsubscribe_parts_of(request, token)
    request.app.state.ctx.engage.unsubscribe(ws, email, delivery)
    return render(request, "unsubscribe.html", email=email, done=True)


@public.get("/m/o/{token}.gif")
def opened(request: Request, token: str = Path(max_length=2000)) -> Response:
    try:
        _, delivery = _token(request, token, "o")[:2]
    except HTTPException:
        return Response(PIXEL, media_type="image/gif")  # a pixel never shows an error
    _mark(request, int(delivery), "opened_at")
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


@public.get("/m/c/{token}")
def clicked(request: Request, token: str = Path(max_length=4000)) -> RedirectResponse:
    _, delivery, url = _token(request, token, "c")
    _mark(request, int(delivery), "clicked_at")
    return RedirectResponse(url, status_code=302)


def _mark(request: Request, delivery_id: int, column: str) -> None:
    with request.app.state.ctx.state.session() as s:
        d = s.get(Delivery, delivery_id)
        if d is not None and getattr(d, column) is None:
            setattr(d, column, utcnow())
            if column == "clicked_at" and d.opened_at is None:
                d.opened_at = d.clicked_at  # a click is an open the pixel may have missed


@public.get("/traction.js", include_in_schema=False)
def snippet() -> Response:
    """The browser snippet (docs/engage.md): track, identify, page, and in-app content."""
    from pathlib import Path as FilePath

    body = (
        FilePath(__file__).resolve().parent.parent / "web" / "static" / "traction.js"
    ).read_bytes()
    return Response(
        body, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"}
    )
