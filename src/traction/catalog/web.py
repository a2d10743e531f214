"""The "Data management" page: every event seen, its properties and values, and notes."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from traction.catalog.service import UnknownEntry
from traction.web.routes import page_context, render, same_origin
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


@router.get("/w/{ws_id}/data")
def data_page(request: Request, ws_id: str, q: str | None = None) -> HTMLResponse:
    page = page_context(request, ws_id, "data")
    catalog = request.app.state.ctx.catalog
    return render(
        request,
        "catalog.html",
        **page,
        events=catalog.events(ws_id, q=q),
        q=q or "",
        person_traits=catalog.properties(ws_id, source="person"),
        account_traits=catalog.properties(ws_id, source="account"),
    )


@router.get("/w/{ws_id}/data/events.json")
def events_json(request: Request, ws_id: str, q: str | None = None) -> list[dict[str, Any]]:
    """For the insight builder's event picker: names by volume, hidden ones left out."""
    page_context(request, ws_id, "data")
    rows = request.app.state.ctx.catalog.events(ws_id, include_hidden=False, q=q)
    return [
        {"name": r["name"], "volume": r["volume"], "verified": r["verified"]} for r in rows[:500]
    ]


@router.get("/w/{ws_id}/data/properties.json")
def properties_json(
    request: Request, ws_id: str, event: str | None = None, source: str = "event"
) -> list[dict[str, Any]]:
    """For property pickers (filters, breakdowns): name, main type and how often seen."""
    page_context(request, ws_id, "data")
    try:
        rows = request.app.state.ctx.catalog.properties(ws_id, source=source, event=event)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return [{"name": r["name"], "type": r["type"], "count": r["count"]} for r in rows[:500]]


@router.get("/w/{ws_id}/data/values.json")
def values_json(
    request: Request, ws_id: str, property: str, event: str | None = None, source: str = "event"
) -> list[dict[str, Any]]:
    """For a filter's value box: the property's most frequent values."""
    page_context(request, ws_id, "data")
    rows = request.app.state.ctx.catalog.values(ws_id, property, source=source, event=event)
    return rows  # type: ignore[no-any-return]


@router.get("/w/{ws_id}/data/event/{name:path}")
def event_properties(request: Request, ws_id: str, name: str) -> HTMLResponse:
    """The event's properties and their top values, as a fragment under its row."""
    page_context(request, ws_id, "data")
    catalog = request.app.state.ctx.catalog
    props = catalog.properties(ws_id, event=name)
    for p in props:
        p["top"] = catalog.values(ws_id, p["name"], event=name, limit=8)
    return render(request, "catalog_properties.html", props=props, event=name)


@router.post("/w/{ws_id}/data/event/{name:path}")
def annotate_event(
    request: Request,
    ws_id: str,
    name: str,
    description: str = Form(""),
    tags: str = Form(""),
    verified: bool = Form(False),
    hidden: bool = Form(False),
) -> RedirectResponse:
    same_origin(request)
    page_context(request, ws_id, "data")
    with suppress(UnknownEntry):  # the list shows what exists; nothing else to annotate
        request.app.state.ctx.catalog.update_event(
            ws_id,
            name,
            description=description[:2000],
            tags=[t.strip()[:50] for t in tags.split(",") if t.strip()][:20],
            verified=verified,
            hidden=hidden,
        )
    return RedirectResponse(f"/w/{ws_id}/data", status_code=303)
