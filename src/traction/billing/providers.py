"""Payment providers behind one interface: where to send a buyer (checkout), and what the
provider reports back (webhooks).

- **manual**: no payment provider; a checkout applies the change at once (self-hosting
  without payments, tests, the simulator).
- **stripe**: a Checkout Session through the `stripe` library; Stripe's webhooks
  (`checkout.session.completed`, `customer.subscription.updated` / `.deleted`,
  `invoice.paid`, `invoice.payment_failed`) verified by their `Stripe-Signature` header
  and applied once each, by event id.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import stripe
from sqlalchemy import select

from traction.billing.domain.catalog import ZERO_DECIMAL
from traction.billing.domain.pricing import proration, recurring_amount
from traction.billing.models import ProviderSettings, UpgradeLink, WebhookEvent
from traction.billing.service import BillingError, BillingService, NotFound
from traction.store.state import StateStore, utcnow

STRIPE_STATUS = {"active": "active", "trialing": "trialing", "past_due": "past_due",
                 "unpaid": "past_due", "canceled": "canceled", "incomplete_expired": "canceled"}  # fmt: skip


@dataclass(frozen=True)
class CheckoutResult:
    url: str
    mode: str  # manual | stripe
    reference: str | None = None  # the subscription (manual) or the Checkout Session (stripe)


class Providers:
    def __init__(self, state: StateStore, billing: BillingService) -> None:
        self.state = state
        self.billing = billing

    # -- settings ---------------------------------------------------------------------------------

    def settings(self, workspace_id: str) -> ProviderSettings:
        with self.state.session() as s:
            row = s.get(ProviderSettings, workspace_id)
            return row or ProviderSettings(workspace_id=workspace_id, provider="manual")

    def configure(
        self, workspace_id: str, provider: str, *, stripe_api_key: str | None = None,
        stripe_webhook_secret: str | None = None, stripe_api_base: str | None = None,
    ) -> None:  # fmt: skip
        if provider not in ("manual", "stripe"):
            raise BillingError("provider: manual or stripe")
        if provider == "stripe" and not (stripe_api_key and stripe_webhook_secret):
            raise BillingError("stripe needs stripe_api_key and stripe_webhook_secret")
        with self.state.session() as s:
            row = s.get(ProviderSettings, workspace_id) or ProviderSettings(
                workspace_id=workspace_id
            )
            row.provider, row.updated_at = provider, utcnow()
            row.stripe_api_key, row.stripe_webhook_secret = stripe_api_key, stripe_webhook_secret
            row.stripe_api_base = stripe_api_base
            s.merge(row)

    # -- checkout ---------------------------------------------------------------------------------

    def checkout(
        self, workspace_id: str, account: str, plan_key: str, interval: str, seats: int,
        success_url: str, cancel_url: str, user: str | None = None,
    ) -> CheckoutResult:  # fmt: skip
        """`user`: who is buying (the purchase is then theirs: a self-serve change). Records
        `checkout_started`, so the checkout rate can be measured."""
        cat = self.billing._need_catalog(workspace_id)
        plan = cat.plan(plan_key)
        if plan is None:
            raise BillingError(f"plan: no plan {plan_key!r}")
        price = plan.price(interval)  # type: ignore[arg-type]
        if price is None:
            raise BillingError(f"interval: plan {plan_key!r} has no {interval}ly price")
        conf = self.settings(workspace_id)
        self.billing.emit(workspace_id, [self.billing._account_event(
            account, "checkout_started", {"plan": plan_key, "interval": interval, "seats": seats,
                                          "provider": conf.provider},
            f"checkout_started:{uuid.uuid4().hex}", user, timestamp=self.billing.now())])  # fmt: skip
        if conf.provider == "manual":
            current = self.billing.subscription(workspace_id, account)
            if current is None:
                sub = self.billing.subscribe(workspace_id, account, plan_key, interval=interval,
                                             seats=seats, trial=False, user=user)  # fmt: skip
                return CheckoutResult(success_url, "manual", sub.id)
            self.billing.change_plan(workspace_id, account, plan_key, user)
            return CheckoutResult(success_url, "manual", current.id)
        client = _stripe(conf)
        currency = cat.currency.lower()
        items: list[dict[str, Any]] = []
        recurring = {"interval": interval}
        if price.flat:
            items.append({"quantity": 1, "price_data": {
                "currency": currency, "unit_amount": _minor(price.flat, cat.currency),
                "recurring": recurring, "product_data": {"name": plan.name or plan.key}}})  # fmt: skip
        if price.per_seat:
            items.append({"quantity": seats, "price_data": {
                "currency": currency, "unit_amount": _minor(price.per_seat, cat.currency),
                "recurring": recurring, "product_data": {"name": f"{plan.name or plan.key} seat"}}})  # fmt: skip
        meta = {"traction_workspace": workspace_id, "account": account, "plan": plan_key,
                "interval": interval, "seats": str(seats), **({"user": user} if user else {})}  # fmt: skip
        session = client.v1.checkout.sessions.create(params={  # type: ignore[arg-type]
            "mode": "subscription", "line_items": items, "success_url": success_url,
            "cancel_url": cancel_url, "client_reference_id": account, "metadata": meta,
            "subscription_data": {"metadata": meta},
        })  # fmt: skip
        return CheckoutResult(str(session.url), "stripe", str(session.id))

    # -- the upgrade page -------------------------------------------------------------------------

    def upgrade_link(
        self, workspace_id: str, account: str, return_url: str, feature: str | None = None,
        hours: int = 24, user: str | None = None,
    ) -> str:  # fmt: skip
        """A token for the upgrade page of `account` (valid `hours`; only its hash is kept)."""
        self.billing._need_catalog(workspace_id)
        token = secrets.token_urlsafe(24)
        with self.state.session() as s:
            s.add(UpgradeLink(token_hash=hashlib.sha256(token.encode()).hexdigest(), workspace_id=workspace_id,
                              account=account, return_url=return_url, feature=feature,
                              expires_at=utcnow() + timedelta(hours=hours), user_id=user))  # fmt: skip
        return token

    def upgrade_view(self, token: str) -> dict[str, Any]:
        """What the upgrade page shows: the plans side by side, the account's marked, what each
        adds, its price and the proration of an upgrade now."""
        link = self._link(token)
        ws, account = link.workspace_id, link.account
        cat, current, sub = self.billing.plan_for(ws, account)
        interval = sub.interval if sub else "month"
        seats = sub.seats if sub else 1
        have = {k for k, g in (current.features.items() if current else []) if g.enabled}
        rows = []
        for p in cat.plans:
            if p.kind == "addon":
                continue
            price = p.price(interval)  # type: ignore[arg-type]
            amount = recurring_amount(p, interval, seats) if price else Decimal(0)
            gains = [k for k, g in p.features.items() if g.enabled and (k not in have or (
                current is not None and (cg := current.features.get(k)) is not None
                and cg.limit is not None and (g.limit is None or g.limit > cg.limit)))]  # fmt: skip
            prorated = None
            if (
                sub is not None
                and current is not None
                and p.key != current.key
                and sub.status == "active"
            ):
                old = recurring_amount(current, interval, seats)
                if amount > old:
                    prorated = proration(old, amount, sub.period_start, sub.period_end,
                                         min(max(utcnow(), sub.period_start), sub.period_end), cat.currency)  # fmt: skip
            rows.append({"plan": p, "current": current is not None and p.key == current.key,
                         "amount": amount, "gains": gains, "prorated": prorated,
                         "unlocks": link.feature in gains if link.feature else False})  # fmt: skip
        return {"account": account, "interval": interval, "seats": seats, "currency": cat.currency,
                "plans": rows, "feature": link.feature, "return_url": link.return_url}  # fmt: skip

    def upgrade(self, token: str, plan_key: str) -> str:
        """Starts the checkout for the chosen plan; answers where to send the user."""
        link = self._link(token)
        sub = self.billing.subscription(link.workspace_id, link.account)
        result = self.checkout(link.workspace_id, link.account, plan_key, sub.interval if sub else "month",
                               sub.seats if sub else 1, link.return_url, link.return_url, link.user_id)  # fmt: skip
        return result.url

    def _link(self, token: str) -> UpgradeLink:
        with self.state.session() as s:
            link = s.get(UpgradeLink, hashlib.sha256(token.encode()).hexdigest())
        if link is None or link.expires_at < utcnow():
            raise NotFound("this upgrade link has expired: go back and try again")
        return link

    # -- webhooks ---------------------------------------------------------------------------------

    def stripe_webhook(self, workspace_id: str, payload: bytes, signature: str | None) -> str:
        """Verifies and applies one Stripe event; answers what was done. A bad signature
        raises `BillingError` (the route answers 400) and changes nothing."""
        conf = self.settings(workspace_id)
        if conf.provider != "stripe" or not conf.stripe_webhook_secret:
            raise NotFound("this workspace does not take payments through Stripe")
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8", "replace"),
                signature or "",
                conf.stripe_webhook_secret,
                tolerance=300,
            )
        except stripe.SignatureVerificationError as e:
            raise BillingError(f"Stripe-Signature: {e}") from None
        try:  # verified; now read it as the plain JSON Stripe sent
            event = orjson.loads(payload)
            kind, obj, eid = event["type"], event["data"]["object"], str(event["id"])
            if not isinstance(obj, dict) or not isinstance(kind, str):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise BillingError("body: not a Stripe event (id, type, data.object)") from None
        with self.state.session() as s:
            seen = s.scalars(select(WebhookEvent.id).where(
                WebhookEvent.workspace_id == workspace_id, WebhookEvent.provider == "stripe",
                WebhookEvent.event_id == eid)).first()  # fmt: skip
        if seen is not None:
            return "duplicate: already applied"
        outcome = self._apply_stripe(workspace_id, kind, obj)
        with self.state.session() as s:
            s.add(WebhookEvent(workspace_id=workspace_id, provider="stripe", event_id=eid[:200],
                               type=kind[:100], received_at=utcnow()))  # fmt: skip
        return outcome

    def _apply_stripe(self, workspace_id: str, kind: str, obj: Any) -> str:
        billing = self.billing
        if kind == "checkout.session.completed":
            meta = obj.get("metadata") or {}
            account, plan = meta.get("account"), meta.get("plan")
            if not account or not plan:
                return "ignored: not a Traction checkout"
            ref = obj.get("subscription")
            current = billing.subscription(workspace_id, account)
            if current is None:
                billing.subscribe(workspace_id, account, plan, interval=meta.get("interval", "month"),
                                  seats=int(meta.get("seats", 1)), trial=False, provider="stripe",
                                  provider_ref=ref, user=meta.get("user"))  # fmt: skip
                return f"subscribed {account} to {plan}"
            if current.plan_key != plan:
                billing.change_plan(workspace_id, account, plan, meta.get("user"))
            return f"changed {account} to {plan}"
        ref = obj.get("subscription") if kind.startswith("invoice.") else obj.get("id")
        sub = billing.by_provider_ref(workspace_id, str(ref)) if ref else None
        if sub is None:
            return "ignored: no subscription of ours"
        if kind == "customer.subscription.deleted":
            billing.provider_update(workspace_id, sub.id, status="canceled")
            return "canceled"
        if kind == "customer.subscription.updated":
            status = STRIPE_STATUS.get(str(obj.get("status")), sub.status)
            billing.provider_update(workspace_id, sub.id, status=status, period=_period(obj),
                                    cancel_at_period_end=bool(obj.get("cancel_at_period_end")))  # fmt: skip
            return f"updated: {status}"
        if kind == "invoice.paid":
            billing.provider_update(workspace_id, sub.id, status="active" if sub.status == "past_due" else None,
                                    event="invoice_paid")  # fmt: skip
            return "paid"
        if kind == "invoice.payment_failed":
            billing.provider_update(workspace_id, sub.id, status="past_due", event="payment_failed")
            return "past_due"
        return f"ignored: {kind}"


def _stripe(conf: ProviderSettings) -> stripe.StripeClient:
    base = {"api": conf.stripe_api_base} if conf.stripe_api_base else {}
    return stripe.StripeClient(conf.stripe_api_key or "", base_addresses=base)  # type: ignore[arg-type]


def _minor(amount: Decimal, currency: str) -> int:
    """Stripe's unit_amount: the smallest currency unit (cents; yen as is)."""
    return int(amount if currency in ZERO_DECIMAL else (amount * 100).to_integral_value())


def _period(obj: Any) -> tuple[datetime, datetime] | None:
    """The subscription's current period (on its first item in Stripe's newer API versions)."""
    src = obj
    items = (obj.get("items") or {}).get("data") or []
    if obj.get("current_period_start") is None and items:
        src = items[0]
    start, end = src.get("current_period_start"), src.get("current_period_end")
    if not start or not end:
        return None
    conv = lambda t: datetime.fromtimestamp(int(t), UTC).replace(tzinfo=None)  # noqa: E731
    return conv(start), conv(end)
