"""Dashboard pages for experiments: the list, and each experiment's results (per metric: the
variations' means, the lift with its interval drawn, p-value or chance to win; the SRM banner;
the verdict)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from traction.experiments.domain import ExperimentError
from traction.experiments.service import NotFound
from traction.web.routes import page_context, render
from traction.web.session import csrf_protect

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


@router.get("/w/{ws_id}/experiments")
def experiments_page(request: Request, ws_id: str) -> HTMLResponse:
    page = page_context(request, ws_id, "experiments")
    return render(request, "experiments.html", **page,
                  experiments=request.app.state.ctx.experiments.experiments(ws_id))  # fmt: skip


@router.get("/w/{ws_id}/experiments/{key}")
def experiment_page(request: Request, ws_id: str, key: str) -> HTMLResponse:
    page = page_context(request, ws_id, "experiments")
    svc = request.app.state.ctx.experiments
    try:
        definition = svc.get(ws_id, key)
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    try:
        results, error = svc.results(ws_id, key), None
    except ExperimentError as e:
        results, error = None, str(e)
    return render(request, "experiment.html", **page, exp=definition, res=results, error=error)
