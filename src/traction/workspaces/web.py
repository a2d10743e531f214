"""Dashboard pages for workspaces and people: create a workspace, see and invite members,
accept an invitation. Only admins manage members; anyone signed in may create a workspace
(they become its admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from traction.web.routes import admin_page, current_user, render, same_origin, signed_in
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


@router.get("/workspaces/new")
def new_workspace_form(request: Request) -> HTMLResponse:
    user = current_user(request)
    spaces = request.app.state.ctx.workspaces.user_workspaces(user.id)
    return render(request, "workspace_new.html", user=user, spaces=spaces, created=None, error=None)


@router.post("/workspaces/new")
def new_workspace(
    request: Request, name: str = Form(""), timezone: str = Form("UTC")
) -> HTMLResponse:
    same_origin(request)
    user = current_user(request)
    svc = request.app.state.ctx.workspaces
    try:
        if not name.strip() or len(name) > 200:
            raise ValueError("give the workspace a name (up to 200 characters)")
        created = svc.create_workspace(name.strip(), timezone.strip() or "UTC")
        svc.add_member(user.email, created.id, "admin")
    except ValueError as e:
        return render(
            request, "workspace_new.html", 422, user=user, spaces=svc.user_workspaces(user.id),
            created=None, error=str(e), name=name, timezone=timezone,
        )  # fmt: skip
    spaces = svc.user_workspaces(user.id)
    return render(request, "workspace_new.html", user=user, spaces=spaces, created=created)


def _members_page(request: Request, ws_id: str, status: int = 200, **extra: object) -> HTMLResponse:
    page = admin_page(request, ws_id, "members")
    svc = request.app.state.ctx.workspaces
    page.update(members=svc.members(ws_id), invites=svc.pending_invites(ws_id))
    page.update({"notice": None, "error": None, "invite_url": None} | extra)
    return render(request, "members.html", status, **page)


@router.get("/w/{ws_id}/members")
def members(request: Request, ws_id: str) -> HTMLResponse:
    return _members_page(request, ws_id)


@router.post("/w/{ws_id}/members")
def invite(
    request: Request, ws_id: str, email: str = Form(""), role: str = Form("member")
) -> HTMLResponse:
    """An existing user is added at once; anyone else gets a one-time link to send."""
    same_origin(request)
    admin_page(request, ws_id, "members")
    svc = request.app.state.ctx.workspaces
    try:
        if svc.find_user(email) is not None:
            svc.add_member(email, ws_id, role)  # type: ignore[arg-type]
            return _members_page(
                request, ws_id, notice=f"{email.strip().lower()} is now {role} here."
            )
        token = svc.invite(email, ws_id, role)  # type: ignore[arg-type]
    except ValueError as e:
        return _members_page(request, ws_id, 422, error=str(e))
    link = str(request.base_url).rstrip("/") + f"/invite/{token}"
    return _members_page(request, ws_id, invite_url=link, invite_email=email.strip().lower())


@router.post("/w/{ws_id}/members/{user_id}/remove")
def remove(request: Request, ws_id: str, user_id: str) -> Response:
    same_origin(request)
    page = admin_page(request, ws_id, "members")
    if user_id == page["user"].id:
        raise HTTPException(422, "you cannot remove yourself; another admin can")
    request.app.state.ctx.workspaces.remove_member(user_id, ws_id)
    return RedirectResponse(f"/w/{ws_id}/members", 303)


def _invite_page(request: Request, token: str, error: str | None = None) -> HTMLResponse:
    ctx = request.app.state.ctx
    pending = ctx.workspaces.pending_invite(token)
    if pending is None:
        raise HTTPException(404, "this invitation has expired or was used: ask for a new one")
    ws = ctx.workspaces.get_workspace(pending.workspace_id)
    return render(
        request, "invite.html", 422 if error else 200, token=token, email=pending.email,
        role=pending.role, workspace_name=ws.name if ws else "", error=error,
    )  # fmt: skip


@router.get("/invite/{token}")
def invite_form(request: Request, token: str) -> HTMLResponse:
    return _invite_page(request, token)


@router.post("/invite/{token}")
def accept(request: Request, token: str, password: str = Form("")) -> Response:
    same_origin(request)
    ctx = request.app.state.ctx
    pending = ctx.workspaces.pending_invite(token)
    if pending is None:
        raise HTTPException(404, "this invitation has expired or was used: ask for a new one")
    try:
        user = ctx.workspaces.accept_invite(token, password)
    except ValueError as e:
        return _invite_page(request, token, str(e))
    return signed_in(request, user.id, f"/w/{pending.workspace_id}/scorecard")
