"""Admin API: persons and their events (the raw log, anonymous history included)."""

from __future__ import annotations

from typing import Any, Literal

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


@router.get("/persons/search")
def search_persons(
    request: Request,
    q: str = Query("", max_length=200, description="part of an id, or of any trait value"),
    offset: int = Query(0, ge=0, le=10_000_000),
    limit: int = Query(50, ge=1, le=1000),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """People most recently seen first, with how many match in all (for paging)."""
    rows, total = request.app.state.ctx.persons.search(
        key.workspace_id, q, offset=offset, limit=limit
    )
    return {"total": total, "persons": [_jsonable(r) for r in rows]}


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
    offset: int = Query(0, ge=0, le=10_000_000),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    ctx = request.app.state.ctx
    view = _found(ctx.persons.get(key.workspace_id, person_id), f"person {person_id}")
    events = ctx.events.recent(key.workspace_id, person_id=view.id, limit=limit, offset=offset)
    return [_jsonable(e) for e in events]


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
    request: Request,
    limit: int = Query(200, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
    q: str = Query("", max_length=200, description="part of the key, or of any trait value"),
    sort: Literal["last_seen", "events_30d", "members", "since", "key"] = "last_seen",
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    """Accounts with members, last seen, events in the last 30 days and since when they exist."""
    rows = request.app.state.ctx.accounts.list(
        key.workspace_id, limit, q=q, sort=sort, offset=offset
    )
    return [_jsonable(r) for r in rows]


@router.get("/accounts/{account_key}")
def get_account(
    account_key: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    view = _found(
        request.app.state.ctx.accounts.get(key.workspace_id, account_key),
        f"account {account_key!r}",
    )
    return view.as_dict()  # type: ignore[no-any-return]
