"""Admin API: persons and their events (the raw log, anonymous history included)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["identity"])


def _found(view: Any, what: str) -> Any:
    """The view, or a 404 naming what was not found in this workspace."""
    if view is None:
        raise HTTPException(404, f"no {what}")
    return view


def _jsonable(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in ev.items()}


@router.get("/persons")
def find_person(
    request: Request,
    distinct_id: str = Query(min_length=1, max_length=200),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    view = _found(
        request.app.state.ctx.persons.by_distinct_id(key.workspace_id, distinct_id),
        f"person with distinct id {distinct_id!r}",
    )
    return view.as_dict()  # type: ignore[no-any-return]


@router.get("/persons/{person_id}")
def get_person(
    person_id: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    view = _found(
        request.app.state.ctx.persons.get(key.workspace_id, person_id), f"person {person_id}"
    )
    return view.as_dict()  # type: ignore[no-any-return]


@router.get("/persons/{person_id}/events")
def person_events(
    person_id: str,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    ctx = request.app.state.ctx
    view = _found(ctx.persons.get(key.workspace_id, person_id), f"person {person_id}")
    return [
        _jsonable(e) for e in ctx.events.recent(key.workspace_id, person_id=view.id, limit=limit)
    ]


@router.get("/events")
def list_events(
    request: Request,
    name: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    events = request.app.state.ctx.events.recent(key.workspace_id, name=name, limit=limit)
    return [_jsonable(e) for e in events]


@router.get("/accounts")
def list_accounts(
    request: Request, limit: int = Query(200, ge=1, le=1000), key: KeyInfo = Depends(admin_key)
) -> list[dict[str, Any]]:
    return request.app.state.ctx.accounts.list(key.workspace_id, limit)  # type: ignore[no-any-return]


@router.get("/accounts/{account_key}")
def get_account(
    account_key: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    view = _found(
        request.app.state.ctx.accounts.get(key.workspace_id, account_key),
        f"account {account_key!r}",
    )
    return view.as_dict()  # type: ignore[no-any-return]
