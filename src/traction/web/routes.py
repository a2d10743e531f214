"""Dashboard pages. Each page is a thin view over a capability's service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import plotly
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from traction.analytics.domain.specs import TODAY
from traction.audit.service import ACTOR
from traction.ingest.domain import client_address, from_trusted_proxy
from traction.web.session import COOKIE, csrf_for, csrf_protect
from traction.workspaces.models import User, Workspace

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def static_mount() -> StaticFiles:
    return StaticFiles(directory=str(HERE / "static"))


def session_user(request: Request) -> User | None:
    ctx = request.app.state.ctx
    return ctx.workspaces.session_user(  # type: ignore[no-any-return]
        request.cookies.get(COOKIE), ctx.settings.session_idle_minutes
    )


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS: directly, or through a trusted proxy."""
    if request.url.scheme == "https":
        return True
    settings = request.app.state.ctx.settings
    peer = request.client.host if request.client else None
    return from_trusted_proxy(peer, settings.trusted_proxy_networks) and (
        request.headers.get("x-forwarded-proto", "").lower() == "https"
    )


def current_user(request: Request) -> User:
    user = session_user(request)
    if user is None:
        raise HTTPException(303, headers={"Location": "/login"})
    ACTOR.set(f"user:{user.email}")  # for the audit log, for the rest of this request
    return user  # type: ignore[no-any-return]


def page_context(request: Request, ws_id: str, section: str) -> dict[str, Any]:
    """What every page's layout needs: the user, the workspace (404 unless a member), the
    switcher's list and the nav section."""
    user, ws, spaces = _page(request, ws_id)
    role = request.app.state.ctx.workspaces.role(user.id, ws.id)
    # relative ranges ("last 7 days") in specs read on this request mean the workspace's days
    TODAY.set(datetime.now(ZoneInfo(ws.timezone)).date())
    return {"user": user, "ws": ws, "spaces": spaces, "section": section, "role": role}


def admin_page(request: Request, ws_id: str, section: str) -> dict[str, Any]:
    """`page_context`, for pages only a workspace admin may use (keys, members, settings)."""
    page = page_context(request, ws_id, section)
    if page["role"] != "admin":
        raise HTTPException(403, "only an admin of this workspace can do this: ask one of them")
    return page


def _page(request: Request, ws_id: str) -> tuple[User, Workspace, list[Workspace]]:
    """The signed-in user and the workspace they asked for, if they are a member of it."""
    user = current_user(request)
    spaces = request.app.state.ctx.workspaces.user_workspaces(user.id)
    current = next((w for w in spaces if w.id == ws_id), None)
    if current is None:
        raise HTTPException(404, "no such workspace")
    return user, current, spaces


def same_origin(request: Request) -> None:
    """Forms post only from our own pages (the cookie is SameSite=Lax too)."""
    origin = request.headers.get("origin")
    if origin and urlparse(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin form post refused")


def render(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    ctx.setdefault("csrf", csrf_for(request))
    if "role" not in ctx and ctx.get("user") is not None and ctx.get("ws") is not None:
        ctx["role"] = request.app.state.ctx.workspaces.role(ctx["user"].id, ctx["ws"].id)
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def alert(request: Request, message: str, tag: str = "p") -> HTMLResponse:
    """An error as an htmx fragment, escaped like every rendered value."""
    return render(request, "alert.html", message=message, tag=tag)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/static/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, media_type="application/javascript")


@router.get("/")
def home(request: Request) -> Response:
    user = session_user(request)
    if user is None:
        return RedirectResponse("/login", 303)
    spaces = request.app.state.ctx.workspaces.user_workspaces(user.id)
    if not spaces:
        return render(request, "empty.html", user=user)
    return RedirectResponse(f"/w/{spaces[0].id}/scorecard", 303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", error=None)


@router.post("/login")
def login(request: Request, email: str = Form(""), password: str = Form("")) -> Response:
    same_origin(request)
    ctx = request.app.state.ctx
    settings = ctx.settings
    address = client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxy_networks,
    )
    wait = ctx.throttle.login_wait(email, address)
    if wait is not None:  # locked out: the password is not even checked
        minutes = max(1, round(wait / 60))
        refused = render(
            request, "login.html", email=email,
            error=f"Too many failed attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )  # fmt: skip
        refused.status_code = 429
        refused.headers["Retry-After"] = f"{wait:.0f}"
        return refused
    user = ctx.workspaces.verify_password(email, password)
    if user is None:
        ctx.throttle.login_failed(email, address)
        failed = render(request, "login.html", error="Wrong email or password.", email=email)
        failed.status_code = 401
        return failed
    ctx.throttle.login_succeeded(email)
    return signed_in(request, user.id, "/")


def signed_in(request: Request, user_id: str, to: str) -> Response:
    """A redirect that also starts the user's session (login, an accepted invitation)."""
    ctx = request.app.state.ctx
    token = ctx.workspaces.start_session(user_id, ctx.settings.session_days)
    resp = RedirectResponse(to, 303)
    mode = ctx.settings.secure_cookies
    secure = mode == "always" or (mode == "auto" and is_https(request))
    resp.set_cookie(
        COOKIE, token, httponly=True, samesite="lax", secure=secure,
        max_age=ctx.settings.session_days * 86400,
    )  # fmt: skip
    return resp


@router.post("/logout")
def logout(request: Request) -> Response:
    same_origin(request)
    token = request.cookies.get(COOKIE)
    if token:
        request.app.state.ctx.workspaces.end_session(token)
    resp = RedirectResponse("/login", 303)
    resp.delete_cookie(COOKIE)
    return resp


@router.get("/w/{ws_id}/events")
def events_page(request: Request, ws_id: str, name: str = "", person: str = "") -> HTMLResponse:
    user, ws, spaces = _page(request, ws_id)
    counts = request.app.state.ctx.persons.counts(ws.id)
    total = request.app.state.ctx.events.count(ws.id)
    return render(
        request, "events.html", user=user, ws=ws, spaces=spaces, section="events",
        name=name, person=person, counts=counts, total=total,
    )  # fmt: skip


@router.get("/w/{ws_id}/events/table")
def events_table(request: Request, ws_id: str, name: str = "", person: str = "") -> HTMLResponse:
    _, ws, _ = _page(request, ws_id)
    ctx = request.app.state.ctx
    person_id = None
    if person:
        view = ctx.persons.get(ws.id, person) or ctx.persons.by_distinct_id(ws.id, person)
        person_id = view.id if view else "-"
    rows = ctx.events.recent(ws.id, limit=100, name=name or None, person_id=person_id)
    return render(request, "events_table.html", ws=ws, rows=rows, filtered=bool(name or person))


@router.get("/w/{ws_id}/events/per-minute.json")
def events_per_minute(request: Request, ws_id: str, minutes: int = 60) -> dict[str, Any]:
    _, ws, _ = _page(request, ws_id)
    minutes = max(1, min(minutes, 24 * 60))
    end = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    counts = request.app.state.ctx.events.per_minute(ws.id, start)
    xs = [start + timedelta(minutes=i) for i in range(minutes)]  # every minute, zeros included
    return {"x": [x.isoformat() for x in xs], "y": [counts.get(x, 0) for x in xs]}


PAGE_SIZE = 50


def _page_number(page: int) -> int:
    return max(1, min(page, 100_000))


@router.get("/w/{ws_id}/persons")
def persons_page(request: Request, ws_id: str, q: str = "", page: int = 1) -> HTMLResponse:
    """Everyone, most recently seen first, searchable by any id or trait, a page at a time."""
    ctx = page_context(request, ws_id, "persons")
    page = _page_number(page)
    people, total = request.app.state.ctx.persons.search(
        ws_id, q[:200], offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    return render(
        request, "persons.html", **ctx, people=people, total=total, q=q, page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )  # fmt: skip


@router.get("/w/{ws_id}/persons/{person_id}")
def person_page(request: Request, ws_id: str, person_id: str, page: int = 1) -> HTMLResponse:
    ctx = page_context(request, ws_id, "persons")
    app = request.app.state.ctx
    view = app.persons.get(ws_id, person_id)
    if view is None:
        raise HTTPException(404, "no such person")
    page = _page_number(page)
    events = app.events.recent(
        ws_id, person_id=view.id, limit=PAGE_SIZE * 2, offset=(page - 1) * PAGE_SIZE * 2
    )
    total = app.events.count(ws_id, person_id=view.id)
    return render(
        request, "person.html", **ctx, p=view, events=events, total=total, page=page,
        pages=max(1, -(-total // (PAGE_SIZE * 2))),
        deliveries=app.engage.deliveries(ws_id, person_id=view.id, limit=50),
    )  # fmt: skip


@router.get("/w/{ws_id}/accounts")
def accounts_page(
    request: Request, ws_id: str, q: str = "", sort: str = "last_seen", page: int = 1
) -> HTMLResponse:
    ctx = page_context(request, ws_id, "accounts")
    page = _page_number(page)
    try:
        accounts, total = request.app.state.ctx.accounts.search(
            ws_id, q[:200], sort=sort, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return render(
        request, "accounts.html", **ctx, accounts=accounts, total=total, q=q, sort=sort,
        page=page, pages=max(1, -(-total // PAGE_SIZE)),
    )  # fmt: skip


@router.get("/w/{ws_id}/accounts/{account_key}")
def account_page(request: Request, ws_id: str, account_key: str) -> HTMLResponse:
    page = page_context(request, ws_id, "accounts")
    ctx = request.app.state.ctx
    view = ctx.accounts.get(ws_id, account_key)
    if view is None:
        raise HTTPException(404, "no such account")
    events = ctx.events.recent(ws_id, account_id=account_key, limit=200)
    return render(request, "account.html", **page, a=view, events=events)


@router.get("/w/{ws_id}/keys")
def keys_page(request: Request, ws_id: str) -> HTMLResponse:
    page = admin_page(request, ws_id, "keys")
    keys = request.app.state.ctx.workspaces.list_keys(ws_id)
    return render(request, "keys.html", **page, keys=keys, new=None)


@router.post("/w/{ws_id}/keys")
def create_key(
    request: Request, ws_id: str, scope: str = Form(...), name: str = Form("")
) -> HTMLResponse:
    same_origin(request)
    page = admin_page(request, ws_id, "keys")
    svc = request.app.state.ctx.workspaces
    if scope not in ("write", "server", "admin"):
        raise HTTPException(422, "scope must be write, server or admin")
    try:
        new = svc.create_key(ws_id, scope, name[:200])
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return render(request, "keys.html", **page, keys=svc.list_keys(ws_id), new=new)


@router.post("/w/{ws_id}/keys/{key_id}/revoke")
def revoke_key(request: Request, ws_id: str, key_id: str) -> Response:
    same_origin(request)
    admin_page(request, ws_id, "keys")
    request.app.state.ctx.workspaces.revoke_key(ws_id, key_id)
    return RedirectResponse(f"/w/{ws_id}/keys", 303)
