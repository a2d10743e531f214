"""Insights over HTTP: a spec in, a result out. Invalid specs answer 422 naming the field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal

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
    event_names,
)
from traction.validation import describe
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
        ctx = request.app.state.ctx
        out: dict[str, Any] = getattr(ctx.analytics, method)(key.workspace_id, spec).as_dict()
        out["warnings"] = ctx.catalog.warnings(
            key.workspace_id,
            event_names(spec),
            lambda n: ctx.events.names_present(key.workspace_id, n),
        )
        return out

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
    offset: int = Query(0, ge=0, le=100_000_000, description="for the next page: add `limit`"),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    if step >= len(spec.steps) - 1:
        raise HTTPException(
            422, f"step must be below {len(spec.steps) - 1} (the last step has no drop-off)"
        )
    rows = request.app.state.ctx.analytics.funnel_dropoffs(
        key.workspace_id, spec, step, limit, offset
    )
    return [{"person_id": r["actor"], "started_at": r["started_at"].isoformat()} for r in rows]


@router.post("/trend/people")
def trend_people(
    spec: TrendSpec,
    request: Request,
    bucket: datetime = Query(..., description="the point's bucket start, as in the trend's x"),
    series: int = Query(0, ge=0, description="0-based series index"),
    breakdown: str | None = Query(None, max_length=200, description="the line's breakdown value"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=100_000_000),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    """The people behind one point of a trend line, most events first."""
    if series >= len(spec.series):
        raise HTTPException(422, f"series must be below {len(spec.series)}")
    rows = request.app.state.ctx.analytics.trend_people(
        key.workspace_id, spec, series, bucket.replace(tzinfo=None), breakdown, limit, offset
    )
    return [{"person_id": r["actor"], "events": r["events"]} for r in rows]


@router.get("/scorecard", name="scorecard")
def scorecard(
    request: Request,
    date_from: date | None = Query(None, description="first day, workspace time zone"),
    date_to: date | None = Query(None, description="last day, included"),
    key: KeyInfo = Depends(admin_key),
) -> list[dict[str, Any]]:
    """Every KPI over the range and the one before it. Without dates: the 30 days up to the
    latest event, as on the dashboard. Each row repeats the range it is for."""
    analytics = request.app.state.ctx.analytics
    if (date_from is None) != (date_to is None):
        raise HTTPException(422, "give both date_from and date_to, or neither (the last 30 days)")
    try:
        r = (
            DateRange(date_from=date_from, date_to=date_to)
            if date_from and date_to
            else analytics.default_range(key.workspace_id)
        )
    except ValidationError as e:
        raise HTTPException(422, describe(e)) from None
    rows = analytics.scorecard(key.workspace_id, r)
    span = {"date_from": r.date_from.isoformat(), "date_to": r.date_to.isoformat()}
    return [row | span for row in rows]


# -- saved insights and dashboards -------------------------------------------------------------

saved_router = APIRouter(prefix="/api/v1", tags=["dashboards"])


class NewInsight(BaseModel):
    name: str
    kind: str
    spec: dict[str, Any]


class NewDashboard(BaseModel):
    name: str


class NewTile(BaseModel):
    insight_id: str


class Move(BaseModel):
    offset: Literal[-1, 1]


def _insight(i: Any) -> dict[str, Any]:
    return {
        "id": i.id,
        "name": i.name,
        "kind": i.kind,
        "spec": i.spec,
        "created_at": i.created_at.isoformat(),
    }


@saved_router.get("/saved-insights")
def list_saved(request: Request, key: KeyInfo = Depends(admin_key)) -> list[dict[str, Any]]:
    return [_insight(i) for i in request.app.state.ctx.saved.list_insights(key.workspace_id)]


@saved_router.post("/saved-insights", status_code=201)
def save_insight(
    body: NewInsight, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    try:
        return _insight(
            request.app.state.ctx.saved.save(key.workspace_id, body.name, body.kind, body.spec)
        )
    except ValidationError as e:
        raise HTTPException(
            422,
            describe(e, "spec."),
        ) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


@saved_router.delete("/saved-insights/{insight_id}")
def delete_saved(
    insight_id: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, str]:
    _or_404(lambda: request.app.state.ctx.saved.delete(key.workspace_id, insight_id))
    return {"deleted": insight_id}


@saved_router.get("/dashboards")
def list_dashboards(request: Request, key: KeyInfo = Depends(admin_key)) -> list[dict[str, Any]]:
    return [
        {"id": d.id, "name": d.name}
        for d in request.app.state.ctx.saved.dashboards(key.workspace_id)
    ]


@saved_router.post("/dashboards", status_code=201)
def create_dashboard(
    body: NewDashboard, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    try:
        d = request.app.state.ctx.saved.create_dashboard(key.workspace_id, body.name)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return {"id": d.id, "name": d.name}


@saved_router.get("/dashboards/{dashboard_id}")
def get_dashboard(
    dashboard_id: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    saved = request.app.state.ctx.saved
    d = _or_404(lambda: saved.dashboard(key.workspace_id, dashboard_id))
    tiles = saved.tiles(key.workspace_id, dashboard_id)
    return {
        "id": d.id,
        "name": d.name,
        "tiles": [
            {"id": t.id, "position": t.position, "insight": _insight(t.insight)} for t in tiles
        ],
    }


@saved_router.post("/dashboards/{dashboard_id}/tiles", status_code=201)
def add_tile(
    dashboard_id: str, body: NewTile, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, int]:
    return {
        "id": _or_404(
            lambda: request.app.state.ctx.saved.add_tile(
                key.workspace_id, dashboard_id, body.insight_id
            )
        )
    }


@saved_router.delete("/dashboards/{dashboard_id}/tiles/{tile_id}")
def remove_tile(
    dashboard_id: str, tile_id: int, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, int]:
    _or_404(
        lambda: request.app.state.ctx.saved.remove_tile(key.workspace_id, dashboard_id, tile_id)
    )
    return {"removed": tile_id}


@saved_router.post("/dashboards/{dashboard_id}/tiles/{tile_id}/move")
def move_tile(
    dashboard_id: str, tile_id: int, body: Move, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, int]:
    _or_404(
        lambda: request.app.state.ctx.saved.move_tile(
            key.workspace_id, dashboard_id, tile_id, body.offset
        )
    )
    return {"moved": tile_id}


def _or_404(fn: Callable[[], Any]) -> Any:
    from traction.analytics.saved import NotFound

    try:
        return fn()
    except NotFound as e:
        raise HTTPException(404, str(e)) from None


@saved_router.get("/kpi-config")
def get_kpi_config(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return request.app.state.ctx.saved.kpi_config(key.workspace_id).model_dump(mode="json")  # type: ignore[no-any-return]


@saved_router.put("/kpi-config")
def put_kpi_config(
    body: dict[str, Any], request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """The whole configuration: fields left out take their defaults."""
    try:
        config = request.app.state.ctx.saved.set_kpi_config(key.workspace_id, body)
    except ValidationError as e:
        raise HTTPException(
            422,
            describe(e),
        ) from None
    return config.model_dump(mode="json")  # type: ignore[no-any-return]
