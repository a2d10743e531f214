"""Experiments over HTTP (secret key): definitions, and results per metric and variation with
the SRM check and a verdict."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from traction.experiments.domain import ExperimentError
from traction.experiments.service import NotFound
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["experiments"])
ExpKey = Path(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$",
    description="the experiment key (the flag rule's `key`)",
)


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ExperimentError as e:
        raise HTTPException(422, str(e)) from None
    except NotFound as e:
        raise HTTPException(404, str(e)) from None


@router.get("/experiments")
def list_experiments(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"experiments": request.app.state.ctx.experiments.experiments(key.workspace_id)}


@router.put("/experiments/{experiment}")
def put_experiment(
    request: Request,
    experiment: str = ExpKey,
    body: Any = Body(
        description="hypothesis, variations (key, weight), unit, start, stop, primary/secondary/guardrails metrics, method"
    ),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    return _call(request.app.state.ctx.experiments.put, key.workspace_id, experiment, body)  # type: ignore[no-any-return]


@router.get("/experiments/{experiment}")
def get_experiment(
    request: Request, experiment: str = ExpKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    return _call(request.app.state.ctx.experiments.get, key.workspace_id, experiment)  # type: ignore[no-any-return]


@router.get("/experiments/{experiment}/results")
async def experiment_results(
    request: Request, experiment: str = ExpKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """Per metric and variation: units, means, lift with its interval, p-value (adjusted across
    metrics), chance to win and risk; the sample-ratio check; a plain-language verdict."""
    svc = request.app.state.ctx.experiments
    return await run_in_threadpool(_call, svc.results, key.workspace_id, experiment)  # type: ignore[no-any-return]
