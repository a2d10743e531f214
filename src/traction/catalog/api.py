"""The catalog over HTTP: what has been seen, and what people wrote about it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from traction.catalog.service import CatalogService, UnknownEntry
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])

Source = Literal["event", "person", "account"]


def _catalog(request: Request) -> CatalogService:
    return request.app.state.ctx.catalog  # type: ignore[no-any-return]


@router.get("/events")
def list_events(
    request: Request,
    q: str | None = Query(None, max_length=200, description="part of the name"),
    include_hidden: bool = True,
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    return _catalog(request).events(key.workspace_id, include_hidden=include_hidden, q=q)


class EventChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(None, max_length=2000)
    tags: list[str] | None = Field(None, max_length=20)
    verified: bool | None = None
    hidden: bool | None = None


@router.patch("/events/{name:path}")  # an event name may hold a "/"
def update_event(
    name: str, body: EventChange, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    if body.tags is not None and any(not t.strip() or len(t) > 50 for t in body.tags):
        raise HTTPException(422, "tags: each tag is 1 to 50 characters")
    try:
        return _catalog(request).update_event(
            key.workspace_id, name, **body.model_dump(exclude_none=True)
        )
    except UnknownEntry as e:
        raise HTTPException(404, str(e)) from None


@router.get("/properties")
def list_properties(
    request: Request,
    source: Source = "event",
    event: str | None = Query(None, max_length=200, description="an event's properties only"),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    return _catalog(request).properties(key.workspace_id, source=source, event=event)


@router.get("/values")
def list_values(
    request: Request,
    property: str = Query(..., min_length=1, max_length=200),
    source: Source = "event",
    event: str | None = Query(None, max_length=200),
    q: str | None = Query(None, max_length=200),
    limit: int = Query(20, ge=1, le=100),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    return _catalog(request).values(
        key.workspace_id, property, source=source, event=event, q=q, limit=limit
    )
