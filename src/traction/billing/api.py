"""Billing API: the catalog (secret key), entitlements and usage (server key), subscriptions
through the manual adapter, an account's billing at a glance."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import orjson
import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from traction.billing.domain.revenue import CHANGE_EVENTS
from traction.billing.service import BillingError, NotFound
from traction.web.answers import answer
from traction.workspaces.api import admin_key, server_key
from traction.workspaces.service import KeyInfo

router = APIRouter(prefix="/api/v1", tags=["billing"])
Id = Field(min_length=1, max_length=200)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return answer(fn, *args, invalid=BillingError, missing=NotFound, **kwargs,
                  status=lambda e: 400 if str(e).startswith("Stripe-Signature") else 422)  # fmt: skip


def parse_document(body: bytes, content_type: str) -> Any:
    """JSON, or YAML when the request says so (`application/yaml`, `text/yaml`)."""
    try:
        if "yaml" in content_type:
            return yaml.safe_load(body.decode())
        return orjson.loads(body)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise HTTPException(400, f"the catalog is not valid YAML{at}") from None
    except orjson.JSONDecodeError as e:
        raise HTTPException(400, f"the catalog is not valid JSON: {e}") from None


@router.put("/catalog")
async def put_catalog(
    request: Request,
    dry_run: bool = Query(False, description="only answer the diff"),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Replaces the whole plan catalog (JSON, or YAML with a YAML content type), all or
    nothing; answers the diff. A plan whose terms changed gets a new version; its
    subscribers keep the version they bought."""
    document = parse_document(await request.body(), request.headers.get("content-type", ""))
    ctx = request.app.state.ctx
    result = await run_in_threadpool(
        _call, ctx.billing.apply_catalog, key.workspace_id, document, dry_run=dry_run
    )
    return result.as_dict()  # type: ignore[no-any-return]


@router.get("/catalog")
def get_catalog(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    cat = _call(request.app.state.ctx.billing._need_catalog, key.workspace_id)
    return cat.model_dump(mode="json", by_alias=True)  # type: ignore[no-any-return]


@router.get("/plans")
def list_plans(request: Request, key: KeyInfo = Depends(server_key)) -> list[dict[str, Any]]:
    """The plans on sale, with their features, limits, prices and current version."""
    return _call(request.app.state.ctx.billing.plans, key.workspace_id)  # type: ignore[no-any-return]


class CheckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Id
    feature: str = Field(min_length=1, max_length=63)
    requested_usage: int = Field(0, ge=0, le=10**12)
    user: str | None = Field(
        None, min_length=1, max_length=200, description="who asked (for upgrade triggers)"
    )


@router.post("/entitlements/check")
async def check(
    body: CheckBody, request: Request, key: KeyInfo = Depends(server_key)
) -> dict[str, Any]:
    """May the account use the feature (this much more of it)? Denials carry the cheapest
    plans that would grant it, and become `$feature_locked` events. (Run on the event loop:
    a few tens of microseconds of cached lookups and one indexed read.)"""
    d = _call(request.app.state.ctx.billing.check, key.workspace_id, body.account, body.feature,
              body.requested_usage, body.user)  # fmt: skip
    return d.as_dict()  # type: ignore[no-any-return]


@router.get("/entitlements")
def entitlements(
    request: Request, account: str = Query(min_length=1, max_length=200),
    key: KeyInfo = Depends(server_key),
) -> dict[str, Any]:  # fmt: skip
    """All of the account's entitlements at once (what SDKs cache)."""
    return _call(request.app.state.ctx.billing.entitlements, key.workspace_id, account)  # type: ignore[no-any-return]


class UsageBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    account: str = Id
    feature: str = Field(min_length=1, max_length=63)
    quantity: int = Field(ge=1, le=10**9, description="a whole number of units")
    idempotency_key: str = Id
    user: str | None = Field(None, min_length=1, max_length=200)


@router.post("/usage")
async def consume(
    body: UsageBody, request: Request, key: KeyInfo = Depends(server_key)
) -> dict[str, Any]:
    """Atomically consumes usage of a metered feature. A hard limit is never exceeded; a
    retry with the same idempotency key is counted once and answers the same. (Checked on
    the event loop, then awaited while the consume queue commits it: no thread is held.)"""
    future = _call(request.app.state.ctx.billing.submit_consume, key.workspace_id, body.account,
                   body.feature, body.quantity, body.idempotency_key, body.user)  # fmt: skip
    try:
        return await asyncio.wrap_future(future)  # type: ignore[no-any-return]
    except BillingError as e:
        raise HTTPException(422, str(e)) from None


class SubscribeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Id
    plan: str = Field(min_length=1, max_length=63)
    interval: Literal["month", "year"] = "month"
    seats: int = Field(1, ge=1, le=100_000)
    trial: bool = True
    user: str | None = Field(None, min_length=1, max_length=200, description="who bought")


@router.post("/subscriptions", status_code=201)
def subscribe(
    body: SubscribeBody, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """Starts a subscription at once (the manual adapter: no payment provider)."""
    sub = _call(request.app.state.ctx.billing.subscribe, key.workspace_id, body.account, body.plan,
                interval=body.interval, seats=body.seats, trial=body.trial, user=body.user)  # fmt: skip
    return subscription_dict(sub)


@router.get("/accounts/{account}/billing")
def account_billing(
    account: str, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """The account's subscription, invoice preview for the current period, and entitlements."""
    billing = request.app.state.ctx.billing
    sub = billing.subscription(key.workspace_id, account)
    return {
        "subscription": subscription_dict(sub) if sub else None,
        "invoice_preview": _call(billing.invoice, key.workspace_id, account).as_dict(),
        **_call(billing.entitlements, key.workspace_id, account),
    }


def subscription_dict(sub: Any) -> dict[str, Any]:
    return {
        "id": sub.id, "account": sub.account, "plan": sub.plan_key, "plan_version": sub.plan_version,
        "interval": sub.interval, "status": sub.status, "seats": sub.seats,
        "period_start": sub.period_start.isoformat() + "Z", "period_end": sub.period_end.isoformat() + "Z",
        "trial_end": sub.trial_end.isoformat() + "Z" if sub.trial_end else None,
        "cancel_at_period_end": sub.cancel_at_period_end,
    }  # fmt: skip


class ChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=63)
    user: str | None = Field(None, min_length=1, max_length=200, description="who changed it")


def _transition_dict(t: Any) -> dict[str, Any]:
    return {"change": t.name, "at": t.at.isoformat() + "Z", "mrr_before": str(t.mrr_before),
            "mrr_after": str(t.mrr_after), "amount_due": str(t.amount_due),
            "pending_plan": t.state.pending_plan_key,
            "plan": t.state.plan_key, "status": t.state.status,
            "cancel_at_period_end": t.state.cancel_at_period_end}  # fmt: skip


@router.post("/subscriptions/{account}/change")
def change(
    account: str, body: ChangeBody, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """An upgrade applies at once (the rest of the period prorated: `amount_due`); a
    downgrade at the period's end (`pending_plan`)."""
    t = _call(
        request.app.state.ctx.billing.change_plan, key.workspace_id, account, body.plan, body.user
    )
    return _transition_dict(t)


class SeatsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seats: int = Field(ge=1, le=100_000)
    user: str | None = Field(None, min_length=1, max_length=200, description="who changed it")


@router.post("/subscriptions/{account}/seats")
def seats(
    account: str, body: SeatsBody, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """More or fewer seats, at once, the rest of the period prorated (`amount_due`: a charge,
    or a credit when negative)."""
    t = _call(request.app.state.ctx.billing.set_seats, key.workspace_id, account, body.seats,
              body.user)  # fmt: skip
    return _transition_dict(t)


@router.post("/subscriptions/{account}/cancel")
def cancel(account: str, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    """Cancels at the period's end (a trial: at once)."""
    return _transition_dict(_call(request.app.state.ctx.billing.cancel, key.workspace_id, account))


@router.post("/subscriptions/{account}/reactivate")
def reactivate(account: str, request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    """Undoes a scheduled cancellation."""
    return _transition_dict(
        _call(request.app.state.ctx.billing.reactivate, key.workspace_id, account)
    )


@router.get("/revenue")
def revenue(
    request: Request,
    date_from: date = Query(description="the first month (any day in it)"),
    date_to: date = Query(description="the last month (any day in it)"),
    gross_margin: Decimal = Query(Decimal("0.8"), gt=0, le=1, description="for LTV"),
    key: KeyInfo = Depends(admin_key),
) -> dict[str, Any]:
    """Month by month: MRR and ARR, MRR movements (new, expansion, reactivation,
    contraction, churn: ChartMogul's rules), customers, ARPA, net and gross revenue
    retention, customer and revenue churn, quick ratio, LTV."""
    if not (date_from.year >= 1970 and date_to.year <= 2199):
        raise HTTPException(422, "dates must be between 1970 and 2199")
    if (
        date_to < date_from
        or (date_to.year - date_from.year) * 12 + date_to.month - date_from.month > 120
    ):
        raise HTTPException(422, "date_to must be on or after date_from, at most ten years later")
    ctx = request.app.state.ctx
    events = ctx.events.named_events(key.workspace_id, CHANGE_EVENTS)
    return ctx.billing.revenue(key.workspace_id, events, date_from, date_to, gross_margin)  # type: ignore[no-any-return]


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Id
    plan: str = Field(min_length=1, max_length=63)
    interval: Literal["month", "year"] = "month"
    seats: int = Field(1, ge=1, le=100_000)
    success_url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    cancel_url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    user: str | None = Field(
        None, min_length=1, max_length=200, description="who is buying: a self-serve purchase"
    )


@router.post("/checkout")
def checkout(
    body: CheckoutBody, request: Request, key: KeyInfo = Depends(server_key)
) -> dict[str, Any]:
    """Where to send the buyer: a Stripe Checkout page, or (the manual provider) straight
    to `success_url`, the change applied already."""
    result = _call(request.app.state.ctx.providers.checkout, key.workspace_id, body.account, body.plan,
                   body.interval, body.seats, body.success_url, body.cancel_url, body.user)  # fmt: skip
    return {"url": result.url, "mode": result.mode, "reference": result.reference}


class ProviderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["manual", "stripe"]
    stripe_api_key: str | None = Field(None, min_length=1, max_length=300)
    stripe_webhook_secret: str | None = Field(None, min_length=1, max_length=300)
    stripe_api_base: str | None = Field(
        None,
        max_length=300,
        pattern=r"^https?://",
        description="a stand-in for api.stripe.com (tests)",
    )


@router.put("/billing/provider")
def put_provider(
    body: ProviderBody, request: Request, key: KeyInfo = Depends(admin_key)
) -> dict[str, Any]:
    """How this workspace takes payment. Stripe's keys are stored to call Stripe and never
    shown again."""
    _call(request.app.state.ctx.providers.configure, key.workspace_id, body.provider,
          stripe_api_key=body.stripe_api_key, stripe_webhook_secret=body.stripe_webhook_secret,
          stripe_api_base=body.stripe_api_base)  # fmt: skip
    return get_provider(request, key)


@router.get("/billing/provider")
def get_provider(request: Request, key: KeyInfo = Depends(admin_key)) -> dict[str, Any]:
    conf = request.app.state.ctx.providers.settings(key.workspace_id)
    return {"provider": conf.provider, "stripe_api_key_set": bool(conf.stripe_api_key),
            "stripe_webhook_secret_set": bool(conf.stripe_webhook_secret),
            "webhook_url": f"/webhooks/stripe/{key.workspace_id}"}  # fmt: skip


webhooks = APIRouter(tags=["billing"])


@webhooks.post("/webhooks/stripe/{workspace_id}")
async def stripe_webhook(workspace_id: str, request: Request) -> dict[str, Any]:
    """Stripe's events for this workspace, verified by `Stripe-Signature` (a bad one: 400,
    nothing changed) and applied once each (a replay: 200, nothing changed)."""
    chunks, size = [], 0
    async for chunk in request.stream():  # refused past 1 MB without reading the rest
        size += len(chunk)
        if size > 1_000_000:
            raise HTTPException(413, "webhook body larger than 1 MB")
        chunks.append(chunk)
    body = b"".join(chunks)
    outcome = await run_in_threadpool(
        _call,
        request.app.state.ctx.providers.stripe_webhook,
        workspace_id[:40],
        body,
        request.headers.get("stripe-signature"),
    )
    return {"received": True, "outcome": outcome}


class UpgradeLinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Id
    return_url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    feature: str | None = Field(
        None, min_length=1, max_length=63, description="the feature that was locked"
    )
    user: str | None = Field(
        None, min_length=1, max_length=200, description="who will upgrade: a self-serve purchase"
    )


@router.post("/upgrade-links")
def upgrade_link(
    body: UpgradeLinkBody, request: Request, key: KeyInfo = Depends(server_key)
) -> dict[str, Any]:
    """A link to Traction's upgrade page for the account (valid 24 h): plans side by side,
    the current one marked, what each adds, the price and the proration; choosing a plan
    goes through checkout and back to `return_url`."""
    token = _call(request.app.state.ctx.providers.upgrade_link, key.workspace_id, body.account,
                  body.return_url, body.feature, user=body.user)  # fmt: skip
    return {
        "url": str(request.base_url).rstrip("/") + f"/upgrade/{token}",
        "expires_in_seconds": 86400,
    }
