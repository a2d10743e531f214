"""The simulated customers' purchases, replayed into billing: each trial, checkout, seat
change, downgrade and cancellation the simulation decided (`simulate.product`) goes through
the real checkout (the manual provider) and subscription service at its simulated time, so
the demo's Revenue page, accounts and entitlements have a history made by the same code a
real product's backend calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from traction.billing.providers import Providers
from traction.billing.service import BillingError, BillingService, NotFound
from traction.simulate.product import Intent

RETURN_URL = "https://example.app/billing"


def replay_intents(
    billing: BillingService, providers: Providers, workspace_id: str, intents: Sequence[Intent]
) -> list[dict[str, Any]]:
    """Applies the intents in time order, each by the person who made it. Returns the events
    billing emitted meanwhile (collected, not sent: the caller stores them with the rest)."""
    if billing.catalog(workspace_id) is None or not intents:
        return []
    emitted: list[dict[str, Any]] = []
    real_emit, real_now = billing.emit, billing.now
    billing.emit = lambda _ws, msgs: emitted.extend(msgs)
    clock = _Clock()
    billing.now = clock
    day = None
    try:
        for i in sorted(intents, key=lambda i: i.at):
            clock.t = i.at
            if i.at.date() != day:  # renewals, trial and period ends: each change catches up
                billing.advance(i.at)  # its own subscription first, so once a day is enough
                day = i.at.date()
            try:
                try:
                    _apply(billing, providers, workspace_id, i)
                except NotFound:  # its subscription ended earlier today: start a new one
                    billing.advance(i.at)
                    _apply(billing, providers, workspace_id, i)
            except (BillingError, NotFound):
                continue  # e.g. a replay into a workspace that has this history already
        billing.advance(clock.t)
    finally:
        billing.emit, billing.now = real_emit, real_now
    return emitted


def _apply(billing: BillingService, providers: Providers, ws: str, i: Intent) -> None:
    if i.action == "trial":
        billing.subscribe(ws, i.account, i.plan or "", trial=True, user=i.user)
    elif i.action == "checkout":
        sub = billing.subscription(ws, i.account)
        if (
            sub is not None
            and sub.seats != i.seats
            and (sub.status == "trialing" or sub.plan_key == "free")
        ):  # the seats to buy, set before the plan is (nothing to pay for them yet)
            billing.set_seats(ws, i.account, i.seats, i.user)
        providers.checkout(ws, i.account, i.plan or "", "month", i.seats, RETURN_URL, RETURN_URL,
                           user=i.user)  # fmt: skip
    elif i.action == "seats":
        billing.set_seats(ws, i.account, i.seats, i.user)
    elif i.action == "downgrade":
        billing.change_plan(ws, i.account, i.plan or "", i.user)
    elif i.action == "cancel":
        billing.cancel(ws, i.account, i.user)


class _Clock:
    """Billing's clock, at the simulated moment being replayed."""

    t = datetime(1970, 1, 1)

    def __call__(self) -> datetime:
        return self.t
