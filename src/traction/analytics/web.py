"""Dashboard pages for analytics: the scorecard and the insight editor."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from traction.analytics.domain.kpis import BY_KEY, format_value
from traction.analytics.domain.specs import DateRange
from traction.analytics.service import QueryTooExpensive
from traction.web.routes import page_context, render, same_origin

router = APIRouter(include_in_schema=False)

KINDS = ("funnel", "trend", "retention", "activation")


def default_range(
    request: Request, ws_id: str, date_from: str | None, date_to: str | None
) -> DateRange:
    """The last 30 days of data (up to the latest event), unless the user chose."""
    try:
        if date_from and date_to:
            return DateRange(date_from=date_from, date_to=date_to)
    except ValidationError as e:
        raise HTTPException(422, e.errors()[0]["msg"]) from None
    latest = request.app.state.ctx.events.recent(ws_id, limit=1)
    end = latest[0]["timestamp"].date() if latest else date.today()
    return DateRange(date_from=end - timedelta(days=29), date_to=end)


def example_spec(kind: str, r: DateRange) -> dict[str, Any]:
    rng = {"date_from": r.date_from.isoformat(), "date_to": r.date_to.isoformat()}
    examples: dict[str, dict[str, Any]] = {
        "funnel": {"steps": [{"event": "signed_up"}, {"event": "project_created"}, {"event": "teammate_invited"}], "range": rng, "window_days": 14},
        "trend": {"series": [{"event": {"event": "feature_used"}, "math": "unique_persons"}], "range": rng, "interval": "day", "breakdown": "feature", "breakdown_limit": 5},
        "retention": {"start_event": {"event": "signed_up"}, "return_event": {"event": "session_started"}, "range": rng, "interval": "week", "periods": 8},
        "activation": {"start_event": {"event": "signed_up"}, "criteria": {"all": [{"event": {"event": "project_created"}}, {"event": {"event": "teammate_invited"}}]}, "window_days": 7, "range": rng, "interval": "week"},
    }  # fmt: skip
    return examples[kind]


@router.get("/w/{ws_id}/scorecard")
def scorecard_page(
    request: Request, ws_id: str, date_from: str | None = None, date_to: str | None = None
) -> HTMLResponse:
    page = page_context(request, ws_id, "scorecard")
    r = default_range(request, ws_id, date_from, date_to)
    rows = request.app.state.ctx.analytics.scorecard(ws_id, r)
    return render(request, "scorecard.html", **page, rows=rows, range=r)


@router.get("/w/{ws_id}/scorecard/spark/{key}")
def sparkline(request: Request, ws_id: str, key: str, date_from: str, date_to: str) -> HTMLResponse:
    """The KPI over the six periods up to this one, as a small inline SVG."""
    page_context(request, ws_id, "scorecard")
    kpi = BY_KEY.get(key)
    if kpi is None:
        raise HTTPException(404, "no such KPI")
    r = DateRange(date_from=date_from, date_to=date_to)
    span = (r.date_to - r.date_from).days + 1
    values = []
    for i in range(5, -1, -1):
        shift = timedelta(days=span * i)
        rr = DateRange(date_from=r.date_from - shift, date_to=r.date_to - shift)
        values.append(request.app.state.ctx.analytics.kpi(ws_id, key, rr))
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
def insights_page(request: Request, ws_id: str, kind: str = "funnel") -> HTMLResponse:
    page = page_context(request, ws_id, "insights")
    if kind not in KINDS:
        raise HTTPException(404, f"no insight kind {kind!r}")
    spec = example_spec(kind, default_range(request, ws_id, None, None))
    return render(
        request,
        "insights.html",
        **page,
        kind=kind,
        kinds=KINDS,
        spec_json=json.dumps(spec, indent=2),
    )


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
    model, method = INSIGHTS[kind]
    try:
        parsed = model.model_validate(json.loads(spec))
    except json.JSONDecodeError as e:
        return render(request, "insight_result.html", error=f"the spec is not valid JSON: {e}")
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        return render(request, "insight_result.html", error=problems)
    try:
        result = getattr(request.app.state.ctx.analytics, method)(ws_id, parsed)
    except QueryTooExpensive as e:
        return render(request, "insight_result.html", error=str(e))
    return render(request, "insight_result.html", error=None, kind=kind, result=result.as_dict())
