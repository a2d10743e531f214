"""Dashboard pages for journeys: the list, a journey's page (its steps as a graph, entries by
arm, each message's deliveries, opens and clicks, the goal's lift over the holdout; the JSON
editor with errors inline), and the dead-letter list with "retry"."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from traction.engage.delivery import retry
from traction.engage.domain.journeys import Journey, JourneyError, successors
from traction.engage.service import META, NotFound
from traction.web.answers import json_document
from traction.web.routes import page_context, render
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


def _admin(page: dict[str, Any]) -> None:
    if page["role"] != "admin":
        raise HTTPException(403, "only a workspace admin can change journeys")


@router.get("/w/{ws_id}/journeys")
def journeys_page(request: Request, ws_id: str) -> HTMLResponse:
    page = page_context(request, ws_id, "journeys")
    svc = request.app.state.ctx.engage
    rows = []
    for j in svc.journeys(ws_id):
        stats = svc.stats(ws_id, j["key"])
        rows.append({**j, "stats": stats})
    return render(request, "journeys.html", **page, journeys=rows,
                  dead=svc.deliveries(ws_id, status="dead", limit=100))  # fmt: skip


@router.post("/w/{ws_id}/journeys/deliveries/{delivery_id}/retry")
def delivery_retry(request: Request, ws_id: str, delivery_id: int) -> RedirectResponse:
    _admin(page_context(request, ws_id, "journeys"))
    try:
        retry(request.app.state.ctx.state, ws_id, delivery_id)
    except LookupError as e:
        raise HTTPException(404, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return RedirectResponse(f"/w/{ws_id}/journeys", status_code=303)


def graph(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each step with where it leads."""
    j = Journey.model_validate({k: v for k, v in doc.items() if k not in META})
    return [{"id": s.id, "type": s.type, "to": successors(j, s)} for s in j.steps]


BOX_W, BOX_H, GAP_X, GAP_Y = 150, 38, 50, 18


def layout(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the page draws each step: columns by the longest path from the first step (the
    graph is acyclic), steps of a column one under the other, and a line per edge."""
    level: dict[str, int] = {s["id"]: 0 for s in steps}
    for _ in steps:  # relax edges until settled (at most one pass per step)
        for s in steps:
            for t in s["to"]:
                level[t] = max(level[t], level[s["id"]] + 1)
    rows: dict[int, int] = {}
    at: dict[str, tuple[int, int]] = {}
    for s in steps:
        col = level[s["id"]]
        row = rows.get(col, 0)
        rows[col] = row + 1
        at[s["id"]] = (col * (BOX_W + GAP_X) + 4, row * (BOX_H + GAP_Y) + 4)
    nodes = [{**s, "x": at[s["id"]][0], "y": at[s["id"]][1]} for s in steps]
    edges = []
    for s in steps:
        (x1, y1) = at[s["id"]]
        for t in s["to"]:
            (x2, y2) = at[t]
            if level[t] == level[s["id"]] + 1:  # the next column: a straight line
                d = f"M {x1 + BOX_W} {y1 + BOX_H // 2} L {x2} {y2 + BOX_H // 2}"
            else:  # over a column or more: a curve below the boxes, bottom to bottom
                a, b, dip = x1 + BOX_W // 2, x2 + BOX_W // 2, max(y1, y2) + BOX_H + 34
                d = f"M {a} {y1 + BOX_H} C {a} {dip} {b} {dip} {b} {y2 + BOX_H}"
            edges.append({"d": d, "from": s["id"], "to": t})
    width = (max(level.values(), default=0) + 1) * (BOX_W + GAP_X)
    height = max(rows.values(), default=1) * (BOX_H + GAP_Y) + 40
    return {
        "nodes": nodes,
        "edges": edges,
        "width": width,
        "height": height,
        "w": BOX_W,
        "h": BOX_H,
    }


@router.get("/w/{ws_id}/journeys/{key}")
def journey_page(request: Request, ws_id: str, key: str) -> HTMLResponse:
    return _journey(request, page_context(request, ws_id, "journeys"), ws_id, key)


def _journey(request: Request, page: dict[str, Any], ws_id: str, key: str, status: int = 200,
             error: str | None = None, text: str | None = None, saved: bool = False) -> HTMLResponse:  # fmt: skip
    svc = request.app.state.ctx.engage
    try:
        doc = svc.get(ws_id, key)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    body = {k: v for k, v in doc.items() if k not in META}
    steps = graph(doc)
    return render(request, "journey.html", status_code=status, **page, j=doc, graph=steps, drawing=layout(steps),
                  stats=svc.stats(ws_id, key), error=error, saved=saved,
                  document=text if text is not None else json.dumps(body, indent=2))  # fmt: skip


@router.post("/w/{ws_id}/journeys/{key}")
async def journey_save(request: Request, ws_id: str, key: str) -> HTMLResponse:
    page = page_context(request, ws_id, "journeys")
    _admin(page)
    text = str((await request.form()).get("document") or "")
    try:
        body = json_document(text, JourneyError)
        request.app.state.ctx.engage.put(ws_id, key, body)
    except JourneyError as e:
        return _journey(request, page, ws_id, key, 422, str(e), text)
    return _journey(request, page, ws_id, key, saved=True)


@router.post("/w/{ws_id}/journeys/{key}/preview")
async def journey_preview(request: Request, ws_id: str, key: str) -> HTMLResponse:
    """The editor's live preview (htmx, as the JSON is typed): each message as it would
    render for a recent person, or the reason the journey would be refused."""
    page = page_context(request, ws_id, "journeys")
    text = str((await request.form()).get("document") or "")
    try:
        body = json_document(text, JourneyError)
        previews, error = request.app.state.ctx.engage.preview(ws_id, body), None
    except JourneyError as e:
        previews, error = [], str(e)
    return render(request, "journey_preview.html", **page, previews=previews, error=error)
