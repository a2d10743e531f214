"""The subscription lifecycle, pure: trialing → active → past_due → canceled, with upgrades
(at once, prorated), downgrades (at the period's end), cancellation (at the period's end),
reactivation, and what happens when a period or a trial ends.

What a downgrade does to usage above the new plan's limits: nothing is taken away. Usage
already counted stays; a hard limit simply refuses more until usage is back under it (a new
window, or the product deleting things); a soft limit bills the excess as overage. The docs
say the same (docs/billing.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from traction.billing.domain.catalog import Catalog, Plan
from traction.billing.domain.periods import add_months
from traction.billing.domain.pricing import monthly, proration, recurring_amount


@dataclass(frozen=True)
class SubState:
    plan_key: str
    plan_version: int
    interval: str
    status: str  # trialing | active | past_due | canceled
    seats: int
    period_start: datetime
    period_end: datetime
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    pending_plan_key: str | None = None
    canceled_at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    """One change, as the event it becomes (`name`, with MRR before and after)."""

    name: str
    at: datetime
    state: SubState
    mrr_before: Decimal
    mrr_after: Decimal
    amount_due: Decimal = Decimal(0)  # a proration charged now (negative: a credit)


def mrr(state: SubState, plan: Plan | None) -> Decimal:
    """Monthly recurring revenue of the subscription: its fixed price (flat + seats) as a
    monthly rate; nothing while trialing or once canceled. A cancellation keeps its MRR until
    the period ends (ChartMogul's rule)."""
    if plan is None or state.status in ("trialing", "canceled"):
        return Decimal(0)
    return monthly(recurring_amount(plan, state.interval, state.seats), state.interval)


def _months(interval: str) -> int:
    return 12 if interval == "year" else 1


def change_plan(
    state: SubState, old: Plan, new: Plan, new_version: int, at: datetime, currency: str
) -> Transition:
    """An upgrade (the new plan costs more a month) applies at once, with the rest of the
    period prorated; a downgrade waits for the period's end. During a trial, buying any plan
    (the trial's own included) starts a paid period now."""
    if state.status == "canceled":
        raise ValueError("the subscription has ended: start a new one")
    if new.key == state.plan_key and state.status == "trialing":  # buying the trial's plan
        s = replace(state, status="active", trial_end=None, period_start=at,
                    period_end=add_months(at, _months(state.interval)))  # fmt: skip
        return Transition("trial_converted", at, s, Decimal(0), mrr(s, new),
                          recurring_amount(new, s.interval, s.seats))  # fmt: skip
    if new.key == state.plan_key:
        raise ValueError(f"the account is on {new.key} already")
    before = mrr(state, old)
    upgraded_state = replace(state, plan_key=new.key, plan_version=new_version,
                             pending_plan_key=None, cancel_at_period_end=False)  # fmt: skip
    after = mrr(
        replace(upgraded_state, status="active" if state.status == "trialing" else state.status),
        new,
    )
    if after > before or state.status == "trialing":
        if state.status == "trialing":  # buying during a trial: a paid period starts now
            s = replace(upgraded_state, status="active", trial_end=None, period_start=at,
                        period_end=add_months(at, _months(state.interval)))  # fmt: skip
            return Transition("plan_upgraded", at, s, before, mrr(s, new),
                              recurring_amount(new, s.interval, s.seats))  # fmt: skip
        due = proration(recurring_amount(old, state.interval, state.seats),
                        recurring_amount(new, state.interval, state.seats),
                        state.period_start, state.period_end, at, currency)  # fmt: skip
        return Transition("plan_upgraded", at, upgraded_state, before, after, due)
    s = replace(state, pending_plan_key=new.key)
    return Transition("plan_downgrade_scheduled", at, s, before, before)


def change_seats(
    state: SubState, plan: Plan, seats: int, at: datetime, currency: str
) -> Transition:
    """A new seat count applies at once, the rest of the period prorated either way (a charge
    for more seats, a credit for fewer), as Stripe prorates quantity changes by default."""
    if state.status == "canceled":
        raise ValueError("the subscription has ended: start a new one")
    if not 1 <= seats <= 100_000:
        raise ValueError("seats: between 1 and 100,000")
    if seats == state.seats:
        raise ValueError(f"the subscription has {seats} seats already")
    s = replace(state, seats=seats)
    due = Decimal(0)
    if state.status != "trialing":
        due = proration(recurring_amount(plan, state.interval, state.seats),
                        recurring_amount(plan, state.interval, seats),
                        state.period_start, state.period_end, at, currency)  # fmt: skip
    return Transition("seats_changed", at, s, mrr(state, plan), mrr(s, plan), due)


def cancel(state: SubState, plan: Plan, at: datetime) -> Transition:
    if state.status == "canceled":
        raise ValueError("the subscription has ended already")
    if state.status == "trialing":  # a trial ends at once: nothing was paid
        s = replace(state, status="canceled", canceled_at=at, period_end=at)
        return Transition("subscription_canceled", at, s, Decimal(0), Decimal(0))
    s = replace(state, cancel_at_period_end=True, pending_plan_key=None)
    m = mrr(state, plan)
    return Transition("subscription_cancel_scheduled", at, s, m, m)


def reactivate(state: SubState, plan: Plan, at: datetime) -> Transition:
    """Undoes a scheduled cancellation (a subscription that has ended needs a new one)."""
    if state.status == "canceled":
        raise ValueError("the subscription has ended: start a new one")
    if not state.cancel_at_period_end:
        raise ValueError("the subscription is not set to cancel")
    s = replace(state, cancel_at_period_end=False)
    m = mrr(state, plan)
    return Transition("subscription_reactivated", at, s, m, m)


def advance(
    state: SubState, plans: dict[str, Plan], versions: dict[str, int], catalog: Catalog,
    trial_end: str, now: datetime,
) -> list[Transition]:  # fmt: skip
    """Everything that happens up to `now`: trials ending, downgrades and cancellations taking
    effect at a period's end, renewals. `plans`: the plans by key at the versions in use."""
    out: list[Transition] = []
    s = state
    for _ in range(1000):  # periods since the last look; bounded
        if s.status == "canceled" or s.period_end > now:
            break
        at = s.period_end
        plan = plans[s.plan_key]
        before = mrr(s, plan)
        if s.status == "trialing":
            if trial_end == "convert":
                s = replace(s, status="active", trial_end=None, period_start=at,
                            period_end=add_months(at, _months(s.interval)))  # fmt: skip
                out.append(Transition("trial_converted", at, s, before, mrr(s, plan),
                                      recurring_amount(plan, s.interval, s.seats)))  # fmt: skip
                continue
            free = catalog.free_plan
            if trial_end == "downgrade" and free is not None:
                s = replace(s, status="active", plan_key=free.key, plan_version=versions.get(free.key, 1),
                            trial_end=None, period_start=at, period_end=add_months(at, 1))  # fmt: skip
                plans.setdefault(free.key, free)
                out.append(Transition("trial_ended", at, s, before, Decimal(0)))
                continue
            s = replace(s, status="canceled", canceled_at=at)
            out.append(Transition("trial_ended", at, s, before, Decimal(0)))
            break
        if s.cancel_at_period_end:
            s = replace(s, status="canceled", canceled_at=at, cancel_at_period_end=False)
            out.append(Transition("subscription_ended", at, s, before, Decimal(0)))
            break
        name = "subscription_renewed"
        if s.pending_plan_key is not None:
            new_key = s.pending_plan_key
            s = replace(
                s, plan_key=new_key, plan_version=versions.get(new_key, 1), pending_plan_key=None
            )
            name = "plan_downgraded"
        s = replace(s, period_start=at, period_end=add_months(at, _months(s.interval)))
        new_plan = plans.get(s.plan_key) or catalog.plan(s.plan_key)
        assert new_plan is not None
        plans.setdefault(s.plan_key, new_plan)
        out.append(Transition(name, at, s, before, mrr(s, new_plan),
                              recurring_amount(new_plan, s.interval, s.seats)))  # fmt: skip
    return out
