"""Dashboard pages for experiments: the list with a set-up form (an A/B test or a safe
rollout, picked from the event catalog), and each experiment's page: per metric the
variations' means, the lift with its interval drawn, p-value or chance to win; the SRM banner;
the verdict; for a rollout its steps, its log and a rollback button."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from traction.experiments.domain import ExperimentError
from traction.experiments.service import NotFound
from traction.web.routes import page_context, render
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


def _list(request: Request, page: dict[str, Any], ws_id: str, status: int = 200,
          error: str | None = None, form: dict[str, str] | None = None) -> HTMLResponse:  # fmt: skip
    ctx = request.app.state.ctx
    return render(request, "experiments.html", status_code=status, **page, error=error, form=form or {},
                  experiments=ctx.experiments.experiments(ws_id), flags=ctx.flags.flags(ws_id),
                  events=[e["name"] for e in ctx.catalog.events(ws_id, include_hidden=False)][:500])  # fmt: skip


@router.get("/w/{ws_id}/experiments")
def experiments_page(request: Request, ws_id: str) -> HTMLResponse:
    return _list(request, page_context(request, ws_id, "experiments"), ws_id)


def document_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The set-up form as an experiment document: equal weights, one primary metric (unless it
    is a rollout) and at most one guardrail (more through "edit as JSON" or the API)."""

    def metric(prefix: str, direction: str) -> dict[str, Any]:
        kind = form.get(f"{prefix}_kind") or "conversion"
        return {"key": prefix, "name": form.get(f"{prefix}_event", ""), "kind": kind,
                "event": {"event": form.get(f"{prefix}_event", "")}, "direction": direction,
                "window_days": _number(form.get(f"{prefix}_window") or "14", f"{prefix} window")}  # fmt: skip

    doc: dict[str, Any] = {"hypothesis": form.get("hypothesis", ""), "unit": form.get("unit") or "person",
                           "method": form.get("stat_method") or "frequentist"}  # fmt: skip
    if form.get("guardrail_event"):
        doc["guardrails"] = [metric("guardrail", "down")]
    if form.get("mode") == "rollout":
        try:
            value = json.loads(form.get("value") or "")
        except json.JSONDecodeError:
            raise ExperimentError('rollout.value: a JSON value (true, 42, "text", {...})') from None
        steps = [
            _number(p, "steps") for p in (form.get("steps") or "").replace(" ", "").split(",") if p
        ]
        hours = _number(form.get("hours") or "24", "hours")
        doc["rollout"] = {"flag": form.get("flag", ""), "environment": form.get("environment") or "production",
                          "value": value, "steps": [{"percent": p, "hours": hours} for p in steps]}  # fmt: skip
        return doc
    names = [v.strip() for v in (form.get("variations") or "").split(",") if v.strip()]
    doc["variations"] = (
        [{"key": v, "weight": round(1 / len(names), 6)} for v in names] if names else []
    )
    if doc["variations"]:
        doc["variations"][-1]["weight"] = round(
            1 - sum(v["weight"] for v in doc["variations"][:-1]), 6
        )
    doc["primary"] = [metric("primary", "up")] if form.get("primary_event") else []
    return doc


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ExperimentError(f"{where}: {text!r} is not a number") from None


@router.post("/w/{ws_id}/experiments")
async def experiment_create(request: Request, ws_id: str) -> Any:
    page = page_context(request, ws_id, "experiments")
    if page["role"] != "admin":
        raise HTTPException(403, "only a workspace admin can set up experiments")
    form = {k: str(v) for k, v in (await request.form()).items()}
    key = form.get("key", "").strip()
    svc = request.app.state.ctx.experiments
    try:
        if not key:
            raise ExperimentError("key: the experiment's key (the flag rule's key) is required")
        if any(e["key"] == key for e in svc.experiments(ws_id)):
            raise ExperimentError(f"key: an experiment {key!r} exists already")
        svc.put(ws_id, key, document_from_form(form))
    except ExperimentError as e:
        return _list(request, page, ws_id, 422, str(e), form)
    return RedirectResponse(f"/w/{ws_id}/experiments/{key}", status_code=303)


@router.get("/w/{ws_id}/experiments/{key}")
def experiment_page(request: Request, ws_id: str, key: str) -> HTMLResponse:
    page = page_context(request, ws_id, "experiments")
    ctx = request.app.state.ctx
    try:
        definition = ctx.experiments.get(ws_id, key)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    try:
        results, error = ctx.experiments.results(ws_id, key), None
    except ExperimentError as e:
        results, error = None, str(e)
    metrics = definition["primary"] + definition["secondary"] + definition["guardrails"]
    names = {m["event"]["event"] for m in metrics if m.get("event") and m["event"].get("event")}
    return render(request, "experiment.html", **page, exp=definition, res=results, error=error,
                  unknown=ctx.catalog.unknown_events(ws_id, names))  # fmt: skip


@router.post("/w/{ws_id}/experiments/{key}/rollback")
async def experiment_rollback(request: Request, ws_id: str, key: str) -> RedirectResponse:
    page = page_context(request, ws_id, "experiments")
    if page["role"] != "admin":
        raise HTTPException(403, "only a workspace admin can roll back")
    form = await request.form()
    try:
        request.app.state.ctx.experiments.rollouts.roll_back(
            ws_id, key, str(form.get("reason") or "")
        )
    except ExperimentError as e:
        raise HTTPException(422, str(e)) from None
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    return RedirectResponse(f"/w/{ws_id}/experiments/{key}", status_code=303)
