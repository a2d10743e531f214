"""Experiments over HTTP (secret key): definitions, and results per metric and variation with
the SRM check and a verdict."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from traction.experiments import stats
from traction.experiments.domain import ExperimentError
from traction.experiments.service import NotFound
from traction.web.answers import answer
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["experiments"])
KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}"
ExpKey = Path(
    pattern=f"^{KEY_PATTERN}$",
    description="the experiment key (the flag rule's `key`)",
)


def _call(fn: Any, *args: Any) -> Any:
    return answer(fn, *args, invalid=ExperimentError, missing=NotFound)


@router.get("/experiments/power")
def power_calculator(
    mean: float = Query(
        gt=0, le=1e12, description="the control's mean (a conversion rate, or a mean value)"
    ),
    lift: float = Query(gt=0, le=100, description="the relative lift to detect (0.05: +5%)"),
    sd: float | None = Query(
        None, gt=0, le=1e12, description="the metric's standard deviation (a rate's is computed)"
    ),
    units_per_arm: int | None = Query(
        None, ge=2, le=10**10, description="for the power and MDE at that size"
    ),
    alpha: float = Query(0.05, gt=0, lt=0.5),
    power: float = Query(0.8, gt=0.5, lt=1),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """How many units per arm to detect `lift` with `power`; and at `units_per_arm`, the
    power and the minimum detectable effect (two-sided test; formulas in docs/experiments.md)."""
    if sd is None:
        if mean >= 1:
            raise HTTPException(422, "sd: required unless the mean is a rate below 1")
        sd = (mean * (1 - mean)) ** 0.5
    if not mean * lift / sd >= 1e-6:  # (also false for NaN: a rate of exactly 1 has sd 0)
        raise HTTPException(
            422, "lift: too small against the metric's spread for any sample size to detect"
        )
    try:
        out: dict[str, Any] = {"mean": mean, "sd": sd, "lift": lift, "alpha": alpha,
                               "units_per_arm_needed": stats.sample_size(mean, sd, lift, alpha, power)}  # fmt: skip
        if units_per_arm is not None:
            out["power_at_units"] = stats.power(units_per_arm, mean, sd, lift, alpha)
            out["mde_at_units"] = stats.mde(units_per_arm, mean, sd, alpha, power)
    except (ZeroDivisionError, OverflowError, ValueError):
        raise HTTPException(
            422, "these values are outside what the formulas can compute: check mean, sd and lift"
        ) from None
    return out


@router.get("/experiments")
def list_experiments(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"experiments": request.app.state.ctx.experiments.experiments(key.workspace_id)}


@router.post("/experiments", status_code=201)
def create_experiment(
    request: Request,
    body: Any = Body(description="`key` and the definition (as for PUT /experiments/{key})"),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Creates an experiment (or starts a safe rollout); 409 if the key is taken."""
    if not isinstance(body, dict) or not isinstance(body.get("key"), str):
        raise HTTPException(422, "key: the experiment's key (a string) is required")
    name = body["key"]
    if not re.fullmatch(KEY_PATTERN, name):
        raise HTTPException(
            422, "key: letters, digits and _.:- (at most 100), starting with a letter or digit"
        )
    svc = request.app.state.ctx.experiments
    if any(e["key"] == name for e in svc.experiments(key.workspace_id)):
        raise HTTPException(409, f"key: an experiment {name!r} exists already (PUT replaces it)")
    return _call(svc.put, key.workspace_id, name, {k: v for k, v in body.items() if k != "key"})  # type: ignore[no-any-return]


class RollbackBody(BaseModel):
    reason: str = Field("", max_length=1000, description="why (kept in the rollout's log)")


@router.post("/experiments/{experiment}/rollback")
def rollback(
    request: Request,
    experiment: str = ExpKey,
    body: RollbackBody = Body(default_factory=RollbackBody),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Stops a safe rollout by hand: everyone gets the control value again."""
    svc = request.app.state.ctx.experiments.rollouts
    return _call(svc.roll_back, key.workspace_id, experiment, body.reason)  # type: ignore[no-any-return]


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
