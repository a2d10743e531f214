"""Flags over HTTP: the admin API (secret key) and GrowthBook's SDK endpoints on the same
server, keyed by a public per-environment client key (`tr_sdk_...`):

- `GET /api/features/{client_key}`: the payload (`features`, `savedGroups`, `dateUpdated`),
  encrypted when the key says so — point any GrowthBook SDK's `apiHost` here;
- `GET /sub/{client_key}`: Server-Sent Events, a `features` event whenever it changes;
- `POST /api/eval/{client_key}`: remote evaluation (attributes in, values out), so a browser
  never sees the rules. An `account` attribute brings the account's plan and entitlements
  from billing (`plan`, `features.<name>`), so targeting "business plans" is one condition.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from traction.flags.domain.evaluate import Context as EvalContext
from traction.flags.domain.flags import ENV_PATTERN, KEY_PATTERN, FlagError
from traction.flags.service import NotFound
from traction.web.answers import answer
from traction.workspaces.api import admin_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["flags"])
sdk = APIRouter(tags=["GrowthBook SDK"])

FlagKey = Path(pattern=KEY_PATTERN, description="the flag's key")
GroupKey = Path(pattern=KEY_PATTERN, description="the saved group's key")
ClientKey = Path(min_length=8, max_length=64, pattern=r"^tr_sdk_[A-Za-z0-9_-]+$")
SSE_POLL_SECONDS = 1.0


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return answer(fn, *args, invalid=FlagError, missing=NotFound, **kwargs)


@router.get("/flags")
def list_flags(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"flags": request.app.state.ctx.flags.flags(key.workspace_id)}


@router.get("/flags/{flag}")
def get_flag(
    request: Request, flag: str = FlagKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    return _call(request.app.state.ctx.flags.get, key.workspace_id, flag)  # type: ignore[no-any-return]


@router.put("/flags/{flag}")
def put_flag(
    request: Request,
    flag: str = FlagKey,
    body: Any = Body(
        description="`{value_type, default_value, description, tags, environments: {name: "
        "{enabled, rules: [GrowthBook feature rules]}}}`"
    ),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Creates or replaces the flag, all or nothing; every change is in its history."""
    doc, created = _call(request.app.state.ctx.flags.put, key.workspace_id, flag, body)
    return {**doc, "created": created}


@router.delete("/flags/{flag}")
def delete_flag(
    request: Request, flag: str = FlagKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    _call(request.app.state.ctx.flags.delete, key.workspace_id, flag)
    return {"deleted": flag}


class ToggleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str = Field(pattern=ENV_PATTERN)
    enabled: bool


@router.post("/flags/{flag}/toggle")
def toggle_flag(
    body: ToggleBody, request: Request, flag: str = FlagKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """The kill switch: the flag on or off in one environment (its rules kept)."""
    return _call(  # type: ignore[no-any-return]
        request.app.state.ctx.flags.set_enabled,
        key.workspace_id,
        flag,
        body.environment,
        body.enabled,
    )


@router.get("/flags/{flag}/history")
def flag_history(
    request: Request, flag: str = FlagKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """Every change, newest first: who, when, the diff, and the whole before and after."""
    return {"history": request.app.state.ctx.flags.history(key.workspace_id, flag)}


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attribute: str = Field("id", min_length=1, max_length=100)
    values: list[str | float] = Field(max_length=100_000)


@router.get("/saved-groups")
def list_groups(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    return {"saved_groups": request.app.state.ctx.flags.groups(key.workspace_id)}


@router.put("/saved-groups/{group}")
def put_group(
    body: GroupBody, request: Request, group: str = GroupKey, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """A reusable audience for `{"id": {"$inGroup": "<group>"}}`."""
    return _call(  # type: ignore[no-any-return]
        request.app.state.ctx.flags.put_group, key.workspace_id, group, body.values, body.attribute
    )


class SDKKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str = Field(pattern=ENV_PATTERN)
    encrypt: bool = Field(False, description="serve this key's payload encrypted")


@router.get("/sdk-keys")
def list_sdk_keys(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    """The public client keys, one per environment at least (development, production)."""
    return {"sdk_keys": request.app.state.ctx.flags.sdk_keys(key.workspace_id)}


@router.post("/sdk-keys")
def create_sdk_key(
    body: SDKKeyBody, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """Another client key; a new environment name makes a new environment."""
    return _call(  # type: ignore[no-any-return]
        request.app.state.ctx.flags.create_sdk_key, key.workspace_id, body.environment, body.encrypt
    )


# -- GrowthBook's SDK endpoints -------------------------------------------------------------------


@sdk.get("/api/features/{client_key}")
def sdk_features(request: Request, client_key: str = ClientKey) -> dict[str, Any]:
    """The SDK payload of the key's environment (GrowthBook's format)."""
    return _call(request.app.state.ctx.flags.sdk_payload, client_key)  # type: ignore[no-any-return]


class EvalBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # GrowthBook SDKs send more (forcedFeatures, ...)
    attributes: dict[str, Any] = Field(default_factory=dict)
    forcedVariations: dict[str, int] = Field(default_factory=dict)
    forcedFeatures: list[tuple[str, Any]] = Field(default_factory=list, max_length=200)
    url: str = Field("", max_length=4000)


@sdk.post("/api/eval/{client_key}")
def sdk_eval(body: EvalBody, request: Request, client_key: str = ClientKey) -> dict[str, Any]:
    """Remote evaluation: every flag evaluated for these attributes, answered as a payload of
    fixed values (experiments carry `tracks`, so the SDK still logs exposures). Served by the
    plain route in `flags.fast` (matched first); this one documents it."""
    return _call(remote_eval, request.app.state.ctx, client_key, body.model_dump())  # type: ignore[no-any-return]


def remote_eval(ctx: Any, client_key: str, body: dict[str, Any]) -> dict[str, Any]:
    ws, env, _secret = ctx.flags.resolve_key(client_key)
    payload = ctx.flags.payload(ws, env)
    attrs = with_plan(ctx, ws, dict(body.get("attributes") or {}))
    ectx = EvalContext(attributes=attrs, url=body.get("url") or "",
                       forced_variations=body.get("forcedVariations") or {})  # fmt: skip
    forced = dict(body.get("forcedFeatures") or [])
    features: dict[str, Any] = {}
    for name in payload.body["features"]:
        if name in forced:
            features[name] = {"defaultValue": forced[name]}
            continue
        res = payload.evaluator.evaluate(name, ectx)
        out: dict[str, Any] = {"defaultValue": res.value}
        if res.experiment is not None and res.experiment_result is not None:
            out["rules"] = [{"force": res.value, "tracks": [
                {"experiment": res.experiment, "result": res.experiment_result.as_dict()}]}]  # fmt: skip
        features[name] = out
    return {"features": features, "dateUpdated": payload.body["dateUpdated"]}


def with_plan(ctx: Any, workspace_id: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Adds the account's `plan`, `subscription_status` and `features` (each entitlement's
    granted flag, and its value for configuration features) when the attributes name an
    `account`."""
    account = attrs.get("account")
    if not isinstance(account, str) or not account or ctx.billing.catalog(workspace_id) is None:
        return attrs
    try:
        ents = ctx.billing.entitlements(workspace_id, account)
    except LookupError:
        return attrs
    attrs.setdefault("plan", ents["plan"])
    attrs.setdefault("subscription_status", ents["status"])  # trialing, active, past_due, or None
    attrs.setdefault("features", {k: (v["value"] if v.get("value") not in (None, True) else v["granted"])
                                  for k, v in ents["entitlements"].items()})  # fmt: skip
    return attrs


@sdk.get("/sub/{client_key}")
async def sdk_stream(request: Request, client_key: str = ClientKey) -> StreamingResponse:
    """Server-Sent Events: `event: features` with the payload, at once and on every change."""
    flags = request.app.state.ctx.flags
    _call(flags.resolve_key, client_key)

    async def events() -> AsyncIterator[str]:
        last = None
        idle = 0.0
        while not await request.is_disconnected():
            try:
                body = await run_in_threadpool(flags.sdk_payload, client_key)
            except NotFound:
                return  # the key was revoked
            stamp = body.get("dateUpdated"), len(json.dumps(body, sort_keys=True))
            if stamp != last:
                last, idle = stamp, 0.0
                yield f"event: features\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
            elif idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(SSE_POLL_SECONDS)
            idle += SSE_POLL_SECONDS

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
