"""Admin API for the workspace a secret key belongs to. A write key gets 403 here."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from traction.audit.service import ACTOR
from traction.throttle import RateLimited
from traction.workspaces.domain import Scope
from traction.workspaces.service import AuthError, KeyInfo, ScopeError

router = APIRouter(prefix="/api/v1", tags=["workspace"])


async def admin_key(request: Request) -> KeyInfo:
    """The request's secret key. Async on purpose: the actor it sets for the audit log then
    holds for the rest of the request (a sync dependency runs in a thread of its own)."""
    info = await run_in_threadpool(_key, request, "admin")
    ACTOR.set(f"key:{info.id}")
    return info


async def server_key(request: Request) -> KeyInfo:
    """A server key (a product's backend) or a secret key: entitlements and usage. The hot
    path: checked on the event loop, as the tracking API checks write keys (the key lookup
    is cached, so this is memory work but for one query per key every few seconds)."""
    info = _key(request, "server")
    ACTOR.set(f"key:{info.id}")
    return info


def _key(request: Request, need: Scope) -> KeyInfo:
    from traction.ingest.api import Problem, basic_user

    try:
        token = basic_user(request)
    except Problem as p:
        raise HTTPException(401, p.message) from None
    ctx = request.app.state.ctx
    try:
        info: KeyInfo = ctx.workspaces.authenticate_key(token, need)
        ctx.throttle.check_key(info.id, ingest=False)
        return info
    except RateLimited as e:
        raise HTTPException(429, str(e), headers={"Retry-After": f"{e.retry_after:.0f}"}) from None
    except AuthError as e:
        raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
    except ScopeError as e:
        raise HTTPException(403, str(e)) from None


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["write", "server", "admin"]
    name: str = Field(default="", max_length=200)


@router.get("/workspace")
def workspace(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    ws = request.app.state.ctx.workspaces.get_workspace(key.workspace_id)
    return {"id": ws.id, "name": ws.name, "timezone": ws.timezone}


class WorkspaceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)


@router.patch("/workspace")
def update_workspace(
    body: WorkspaceChange, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    try:
        ws = request.app.state.ctx.workspaces.update_workspace(
            key.workspace_id, name=body.name, timezone=body.timezone
        )
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return {"id": ws.id, "name": ws.name, "timezone": ws.timezone}


@router.get("/keys")
def list_keys(request: Request, key: KeyInfo = Depends(admin_key)) -> list[dict[str, Any]]:
    return [
        {
            "id": k.id,
            "name": k.name,
            "scope": k.scope,
            "prefix": k.prefix,
            "created_at": k.created_at.isoformat(),
            "revoked": k.revoked_at is not None,
        }
        for k in request.app.state.ctx.workspaces.list_keys(key.workspace_id)
    ]


@router.post("/keys", status_code=201)
def create_key(body: NewKey, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    try:
        created = request.app.state.ctx.workspaces.create_key(
            key.workspace_id, body.scope, body.name
        )
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return {"id": created.id, "key": created.key, "scope": created.scope}


@router.delete("/keys/{key_id}")
def revoke_key(key_id: str, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    if not request.app.state.ctx.workspaces.revoke_key(key.workspace_id, key_id):
        raise HTTPException(404, f"no key {key_id} in this workspace")
    return {"revoked": key_id}


class NewMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    role: Literal["admin", "member"] = "member"


@router.get("/members")
def list_members(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    svc = request.app.state.ctx.workspaces
    return {
        "members": [
            {"user_id": u.id, "email": u.email, "role": role}
            for u, role in svc.members(key.workspace_id)
        ],
        "invites": [
            {"email": i.email, "role": i.role, "expires_at": i.expires_at.isoformat()}
            for i in svc.pending_invites(key.workspace_id)
        ],
    }


@router.post("/members", status_code=201)
def add_member(
    body: NewMember, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """An existing user is added (or their role changed); anyone else gets an invitation,
    whose one-time link is in the answer (send it to them: it is not stored)."""
    svc = request.app.state.ctx.workspaces
    try:
        if svc.find_user(body.email) is not None:
            svc.add_member(body.email, key.workspace_id, body.role)
            return {"email": body.email.strip().lower(), "role": body.role, "status": "added"}
        token = svc.invite(body.email, key.workspace_id, body.role)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    link = str(request.base_url).rstrip("/") + f"/invite/{token}"
    return {
        "email": body.email.strip().lower(),
        "role": body.role,
        "status": "invited",
        "invite_url": link,
    }


@router.delete("/members/{user_id}")
def remove_member(
    user_id: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    if not request.app.state.ctx.workspaces.remove_member(user_id, key.workspace_id):
        raise HTTPException(404, f"no member {user_id} in this workspace")
    return {"removed": user_id}
