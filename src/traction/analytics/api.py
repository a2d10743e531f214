"""Insights over HTTP: a spec in, a result out. Invalid specs answer 422 naming the field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ValidationError

from traction.analytics.domain.specs import (
    ActivationSpec,
    ActiveUsersSpec,
    DateRange,
    FeatureAdoptionSpec,
    FunnelSpec,
    LifecycleSpec,
    RetentionSpec,
    SessionsSpec,
    TrendSpec,
)
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1/insights", tags=["analytics"])

# path -> (spec model, AnalyticsService method): one route each, the same shape for all
INSIGHTS: dict[str, tuple[type[BaseModel], str]] = {
    "funnel": (FunnelSpec, "funnel"),
    "trend": (TrendSpec, "trend"),
    "retention": (RetentionSpec, "retention"),
    "activation": (ActivationSpec, "activation"),
    "sessions": (SessionsSpec, "sessions"),
    "active-users": (ActiveUsersSpec, "active_users"),
    "lifecycle": (LifecycleSpec, "lifecycle"),
    "feature-adoption": (FeatureAdoptionSpec, "feature_adoption"),
}


def _route(model: type[BaseModel], method: str) -> Callable[..., dict[str, Any]]:
    def run(spec: BaseModel, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
        result = getattr(request.app.state.ctx.analytics, method)(key.workspace_id, spec)
        return result.as_dict()  # type: ignore[no-any-return]

    # FastAPI reads the body model from the annotation: give it the real class, not a string
    run.__annotations__ = {
        "spec": model,
        "request": Request,
        "key": KeyInfo,
        "return": dict[str, Any],
    }
    run.__name__ = f"insight_{method}"
    return run


for _path, (_model, _method) in INSIGHTS.items():
    router.add_api_route(f"/{_path}", _route(_model, _method), methods=["POST"], name=_method)


@router.post("/funnel/dropoffs")
def funnel_dropoffs(
    spec: FunnelSpec,
    request: Request,
    step: int = Query(0, ge=0, description="0-based step the people reached and stopped at"),
    limit: int = Query(100, ge=1, le=1000),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    if step >= len(spec.steps) - 1:
        raise HTTPException(
            422, f"step must be below {len(spec.steps) - 1} (the last step has no drop-off)"
        )
    rows = request.app.state.ctx.analytics.funnel_dropoffs(key.workspace_id, spec, step, limit)
    return [{"person_id": r["actor"], "started_at": r["started_at"].isoformat()} for r in rows]


@router.get("/scorecard", name="scorecard")
def scorecard(
    request: Request,
    date_from: date = Query(..., description="first day, workspace time zone"),
    date_to: date = Query(..., description="last day, included"),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    try:
        r = DateRange(date_from=date_from, date_to=date_to)
    except ValidationError as e:
        raise HTTPException(422, e.errors()[0]["msg"]) from None
    return request.app.state.ctx.analytics.scorecard(key.workspace_id, r)  # type: ignore[no-any-return]
