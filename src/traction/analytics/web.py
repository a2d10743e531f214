"""Dashboard pages for analytics: the scorecard and the insight editor."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from traction.analytics.domain.kpis import BY_KEY, format_value
from traction.analytics.domain.specs import (
    RELATIVE_RANGES,
    DateRange,
    FunnelSpec,
    TrendSpec,
    event_names,
)
from traction.analytics.saved import NotFound
from traction.analytics.service import QueryTooExpensive
from traction.validation import describe, load_json
from traction.web.routes import admin_page, alert, page_context, render, same_origin
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])

KINDS = {
    "funnel": "Funnel", "trend": "Trend", "retention": "Retention", "activation": "Activation",
    "sessions": "Sessions", "active_users": "Active users", "lifecycle": "Lifecycle",
    "feature_adoption": "Feature adoption",
}  # fmt: skip
API_KIND = {k: k.replace("_", "-") for k in KINDS}  # the API's path for each kind


def default_range(
    request: Request, ws_id: str, date_from: str | None, date_to: str | None
) -> DateRange:
    """The last 30 days of data (up to the latest event), unless the user chose."""
    try:
        if date_from and date_to:
            return DateRange(date_from=date_from, date_to=date_to)
    except ValidationError as e:
        raise HTTPException(422, describe(e)) from None
    return request.app.state.ctx.analytics.default_range(ws_id)  # type: ignore[no-any-return]


def example_spec(kind: str) -> dict[str, Any]:
    """What each kind's builder starts from: the simulator's product, the last 30 days."""
    rng = {"relative": "last_30_days"}
    examples: dict[str, dict[str, Any]] = {
        "funnel": {"steps": [{"event": "signed_up"}, {"event": "project_created"}, {"event": "teammate_invited"}], "range": rng, "window_days": 14},
        "trend": {"series": [{"event": {"event": "feature_used"}, "math": "unique_persons"}], "range": rng, "interval": "day", "breakdown": "feature", "breakdown_limit": 5},
        "retention": {"start_event": {"event": "signed_up"}, "return_event": {"event": "session_started"}, "range": {"relative": "last_90_days"}, "interval": "week", "periods": 8},
        "activation": {"start_event": {"event": "signed_up"}, "criteria": {"all": [{"event": {"event": "project_created"}}, {"event": {"event": "teammate_invited"}}]}, "window_days": 7, "range": {"relative": "last_90_days"}, "interval": "week"},
        "sessions": {"range": rng, "gap_minutes": 30, "first_sessions": 3},
        "active_users": {"range": rng},
        "lifecycle": {"range": {"relative": "last_90_days"}, "interval": "week"},
        "feature_adoption": {"range": rng, "features": [{"event": "report_created"}, {"event": "dashboard_viewed"}, {"event": "teammate_invited"}]},
    }  # fmt: skip
    return examples[kind]


@router.get("/w/{ws_id}/scorecard")
def scorecard_page(
    request: Request, ws_id: str, date_from: str | None = None, date_to: str | None = None
) -> HTMLResponse:
    """The page answers at once; its table comes from the fragment below, so a cold
    computation shows a loading state rather than a blank browser tab."""
    page = page_context(request, ws_id, "scorecard")
    r = default_range(request, ws_id, date_from, date_to)
    return render(request, "scorecard.html", **page, range=r)


@router.get("/w/{ws_id}/scorecard/rows")
def scorecard_rows(
    request: Request, ws_id: str, date_from: str | None = None, date_to: str | None = None
) -> HTMLResponse:
    """The table. Values made stale by new events are shown marked "updating" while they are
    recomputed in the background; the fragment then polls until they are exact."""
    page = page_context(request, ws_id, "scorecard")
    r = default_range(request, ws_id, date_from, date_to)
    rows = request.app.state.ctx.analytics.scorecard(ws_id, r, wait=False)
    updating = any(row["updating"] for row in rows)
    return render(request, "scorecard_rows.html", **page, rows=rows, range=r, updating=updating)


@router.get("/w/{ws_id}/scorecard/spark/{key}")
def sparkline(request: Request, ws_id: str, key: str, date_from: str, date_to: str) -> HTMLResponse:
    """The KPI over the six periods up to this one, as a small inline SVG (from the
    scorecard's cache: closed periods are not recomputed when events arrive)."""
    page_context(request, ws_id, "scorecard")
    kpi = BY_KEY.get(key)
    if kpi is None:
        raise HTTPException(404, "no such KPI")
    try:
        r = DateRange(date_from=date_from, date_to=date_to)
    except ValidationError as e:
        raise HTTPException(422, describe(e)) from None
    span = (r.date_to - r.date_from).days + 1
    ranges = []
    for i in range(5, -1, -1):
        shift = timedelta(days=span * i)
        ranges.append(DateRange(date_from=r.date_from - shift, date_to=r.date_to - shift))
    values = request.app.state.ctx.analytics.kpi_series(ws_id, key, ranges, wait=False)
    title = " · ".join(format_value(kpi, v) for v in values)
    return HTMLResponse(sparkline_svg(values, title))


def sparkline_svg(
    values: list[float | None], title: str = "", width: int = 120, height: int = 28
) -> str:
    """A polyline over the known values; gaps where a value is unknown."""
    known = [v for v in values if v is not None]
    if not known:
        return f'<svg class="spark" width="{width}" height="{height}" role="img"><title>no data</title></svg>'
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    step = width / max(1, len(values) - 1)
    pts = [
        f"{i * step:.1f},{height - 3 - (v - lo) / span * (height - 6):.1f}"
        for i, v in enumerate(values)
        if v is not None
    ]
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" data-points="{len(pts)}">'
        f"<title>{title}</title>"
        f'<polyline fill="none" stroke="#4f46e5" stroke-width="2" points="{" ".join(pts)}"/></svg>'
    )


@router.get("/w/{ws_id}/insights")
def insights_page(
    request: Request, ws_id: str, kind: str = "funnel", insight: str | None = None
) -> HTMLResponse:
    """The builder for one kind; `insight` opens a saved insight (a dashboard tile) in it."""
    page = page_context(request, ws_id, "insights")
    kind = kind.replace("-", "_")
    if kind not in KINDS:
        raise HTTPException(404, f"no insight kind {kind!r}")
    spec, name = example_spec(kind), ""
    if insight:
        try:
            saved = request.app.state.ctx.saved.get(ws_id, insight)
        except NotFound:
            raise HTTPException(404, "no such insight") from None
        kind, spec, name = saved.kind, dict(saved.spec), saved.name
        if spec.get("range", {}).get("relative"):  # show the rule, not the day it was saved
            spec["range"] = {"relative": spec["range"]["relative"]}
    return render(
        request, "insights.html", **page, kind=kind, kinds=KINDS,
        spec_json=json.dumps(spec, indent=2), insight_name=name,
    )  # fmt: skip


@router.post("/w/{ws_id}/insights/run")
def run_insight(
    request: Request, ws_id: str, kind: str = Form(...), spec: str = Form(...)
) -> HTMLResponse:
    """Runs the spec and renders the result (or the problem) as a fragment for htmx."""
    same_origin(request)
    page_context(request, ws_id, "insights")
    from traction.analytics.api import INSIGHTS

    if kind not in KINDS:
        return render(request, "insight_result.html", error=f"unknown insight kind {kind!r}")
    model, method = INSIGHTS[API_KIND[kind]]
    try:
        parsed = model.model_validate(load_json(spec))
    except json.JSONDecodeError as e:
        return render(request, "insight_result.html", error=f"the spec is not valid JSON: {e}")
    except ValidationError as e:
        problems = describe(e)
        return render(request, "insight_result.html", error=problems)
    ctx = request.app.state.ctx
    try:
        result = getattr(ctx.analytics, method)(ws_id, parsed)
    except QueryTooExpensive as e:
        return render(request, "insight_result.html", error=str(e))
    return render(
        request,
        "insight_result.html",
        error=None,
        kind=kind,
        result=result.as_dict(),
        warnings=ctx.catalog.warnings(
            ws_id, event_names(parsed), lambda n: ctx.events.names_present(ws_id, n)
        ),
        spec_json=spec,
        ws_id=ws_id,
        breakdown=getattr(parsed, "breakdown", None),
    )


@router.post("/w/{ws_id}/insights/dropoffs")
def funnel_dropoffs(request: Request, ws_id: str, step: int, spec: str = Form(...)) -> HTMLResponse:
    """The people who reached `step` and stopped there, each linked to their page."""
    same_origin(request)
    page_context(request, ws_id, "insights")
    try:
        parsed = FunnelSpec.model_validate(load_json(spec))
        rows = request.app.state.ctx.analytics.funnel_dropoffs(ws_id, parsed, step, 100)
    except ValidationError as e:
        return alert(request, describe(e))
    except (json.JSONDecodeError, ValueError) as e:
        return alert(request, str(e))
    return render(
        request, "dropoffs.html", ws_id=ws_id, step=step, event=parsed.steps[step].event, rows=rows
    )


@router.post("/w/{ws_id}/insights/trend-people")
def trend_people(
    request: Request,
    ws_id: str,
    spec: str = Form(...),
    series: int = Form(0),
    bucket: str = Form(...),
    breakdown: str = Form(""),
) -> HTMLResponse:
    """The people behind a clicked point of a trend line, each linked to their page."""
    same_origin(request)
    page_context(request, ws_id, "insights")
    try:
        parsed = TrendSpec.model_validate(load_json(spec))
        when = datetime.fromisoformat(bucket)
        rows = request.app.state.ctx.analytics.trend_people(
            ws_id, parsed, series, when, breakdown or None, 100
        )
    except ValidationError as e:
        return alert(request, describe(e))
    except (json.JSONDecodeError, ValueError) as e:
        return alert(request, str(e))
    people = request.app.state.ctx.persons.labels(ws_id, [r["actor"] for r in rows])
    return render(
        request, "trend_people.html", ws_id=ws_id, rows=rows, people=people, bucket=when,
        breakdown=breakdown, event=parsed.series[series].event.event,
    )  # fmt: skip


# -- saved insights and dashboards -------------------------------------------------------------


@router.post("/w/{ws_id}/insights/save")
def save_insight(
    request: Request, ws_id: str, kind: str = Form(...), spec: str = Form(...), name: str = Form("")
) -> HTMLResponse:
    same_origin(request)
    page = page_context(request, ws_id, "insights")
    try:
        saved = request.app.state.ctx.saved.save(
            ws_id, name, _kind(kind), load_json(spec), page["user"].id
        )
    except json.JSONDecodeError as e:
        return alert(request, f"the spec is not valid JSON: {e}", "span")
    except ValidationError as e:
        return alert(request, describe(e), "span")
    except ValueError as e:
        return alert(request, str(e), "span")
    return render(request, "saved_notice.html", name=saved.name, ws_id=ws_id)


def _kind(kind: str) -> str:
    return kind.replace("-", "_")


@router.get("/w/{ws_id}/dashboards")
def dashboards_page(request: Request, ws_id: str) -> HTMLResponse:
    page = page_context(request, ws_id, "dashboards")
    saved = request.app.state.ctx.saved
    return render(
        request,
        "dashboards.html",
        **page,
        dashboards=saved.dashboards(ws_id),
        insights=saved.list_insights(ws_id),
    )


@router.post("/w/{ws_id}/dashboards")
def create_dashboard(request: Request, ws_id: str, name: str = Form("")) -> RedirectResponse:
    same_origin(request)
    page = page_context(request, ws_id, "dashboards")
    try:
        d = request.app.state.ctx.saved.create_dashboard(ws_id, name, page["user"].id)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    return RedirectResponse(f"/w/{ws_id}/dashboards/{d.id}", 303)


@router.get("/w/{ws_id}/dashboards/{dashboard_id}")
def dashboard_page(
    request: Request,
    ws_id: str,
    dashboard_id: str,
    relative: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> HTMLResponse:
    page = page_context(request, ws_id, "dashboards")
    saved = request.app.state.ctx.saved
    try:
        d = saved.dashboard(ws_id, dashboard_id)
    except NotFound:
        raise HTTPException(404, "no such dashboard") from None
    return render(
        request,
        "dashboard.html",
        **page,
        dashboard=d,
        tiles=saved.tiles(ws_id, dashboard_id),
        insights=saved.list_insights(ws_id),
        relative=relative or "",
        date_from=date_from or "",
        date_to=date_to or "",
        presets=RELATIVE_RANGES,
        tile_query=urlencode(
            {
                k: v
                for k, v in (("relative", relative), ("date_from", date_from), ("date_to", date_to))
                if v
            }
        ),
    )


@router.post("/w/{ws_id}/dashboards/{dashboard_id}/tiles")
def dashboard_tiles(
    request: Request,
    ws_id: str,
    dashboard_id: str,
    action: str = Form(...),
    insight_id: str = Form(""),
    tile_id: int = Form(0),
) -> RedirectResponse:
    """add / remove / up / down, from the dashboard page's buttons."""
    same_origin(request)
    page_context(request, ws_id, "dashboards")
    saved = request.app.state.ctx.saved
    try:
        if action == "add":
            saved.add_tile(ws_id, dashboard_id, insight_id)
        elif action == "remove":
            saved.remove_tile(ws_id, dashboard_id, tile_id)
        elif action in ("up", "down"):
            saved.move_tile(ws_id, dashboard_id, tile_id, -1 if action == "up" else 1)
        else:
            raise HTTPException(422, f"unknown action {action!r}")
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    return RedirectResponse(f"/w/{ws_id}/dashboards/{dashboard_id}", 303)


def dashboard_range(
    relative: str | None, date_from: str | None, date_to: str | None
) -> dict[str, Any] | None:
    """The dashboard's own date control, which its tiles follow (None: each tile's own)."""
    if relative:
        return {"relative": relative}
    if date_from and date_to:
        return {"date_from": date_from, "date_to": date_to}
    return None


@router.get("/w/{ws_id}/saved/{insight_id}/render")
def render_saved(
    request: Request,
    ws_id: str,
    insight_id: str,
    tile: int = 0,
    relative: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> HTMLResponse:
    page_context(request, ws_id, "dashboards")
    from traction.analytics.api import INSIGHTS

    try:
        insight = request.app.state.ctx.saved.get(ws_id, insight_id)
    except NotFound:
        raise HTTPException(404, "no such insight") from None
    method = {m: m for _, m in INSIGHTS.values()}[insight.kind]
    spec = dict(insight.spec)
    override = dashboard_range(relative, date_from, date_to)
    if override and "range" in spec:
        spec["range"] = override
    try:
        parsed = request.app.state.ctx.saved.parse(insight.kind, spec)
    except ValidationError as e:
        return render(request, "insight_result.html", error=describe(e))
    try:
        result = getattr(request.app.state.ctx.analytics, method)(ws_id, parsed)
    except QueryTooExpensive as e:
        return render(request, "insight_result.html", error=str(e))
    if not hasattr(result, "as_dict") or insight.kind not in KINDS:
        return HTMLResponse(
            f"<pre>{json.dumps(result.as_dict(), indent=2, default=str)[:4000]}</pre>"
        )
    return render(
        request,
        "insight_result.html",
        error=None,
        kind=insight.kind,
        result=result.as_dict(),
        chart_id=f"chart-{tile}",
    )


@router.get("/w/{ws_id}/settings")
def settings_page(request: Request, ws_id: str) -> HTMLResponse:
    page = page_context(request, ws_id, "settings")
    config = request.app.state.ctx.saved.kpi_config(ws_id)
    config_json = json.dumps(config.model_dump(mode="json"), indent=2)
    return render(
        request, "settings.html", **page, config_json=config_json, error=None, saved=False
    )


@router.post("/w/{ws_id}/settings")
def save_settings(
    request: Request, ws_id: str, timezone: str = Form(...), kpi_config: str = Form(...)
) -> HTMLResponse:
    same_origin(request)
    admin_page(request, ws_id, "settings")
    ctx = request.app.state.ctx
    error = None
    try:
        ctx.workspaces.update_workspace(ws_id, timezone=timezone.strip())
        ctx.saved.set_kpi_config(ws_id, load_json(kpi_config))
    except json.JSONDecodeError as e:
        error = f"the KPI configuration is not valid JSON: {e}"
    except ValidationError as e:
        error = describe(e)
    except ValueError as e:
        error = str(e)
    page = page_context(request, ws_id, "settings")  # the time zone may have changed
    return render(
        request,
        "settings.html",
        422 if error else 200,
        **page,
        config_json=kpi_config,
        error=error,
        saved=error is None,
    )
