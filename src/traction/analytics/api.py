"""Insights over HTTP: a spec in, a result out. Invalid specs answer 422 naming the field."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from traction.analytics.domain.specs import ActivationSpec, FunnelSpec, RetentionSpec, TrendSpec
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1/insights", tags=["analytics"])


@router.post("/funnel")
def funnel(spec: FunnelSpec, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return request.app.state.ctx.analytics.funnel(key.workspace_id, spec).as_dict()  # type: ignore[no-any-return]


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


@router.post("/retention")
def retention(
    spec: RetentionSpec, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    return request.app.state.ctx.analytics.retention(key.workspace_id, spec).as_dict()  # type: ignore[no-any-return]


@router.post("/trend")
def trend(spec: TrendSpec, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return request.app.state.ctx.analytics.trend(key.workspace_id, spec).as_dict()  # type: ignore[no-any-return]


@router.post("/activation")
def activation(
    spec: ActivationSpec, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    return request.app.state.ctx.analytics.activation(key.workspace_id, spec).as_dict()  # type: ignore[no-any-return]
