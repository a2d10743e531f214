"""The simulated customers' purchases, replayed into billing: each trial, checkout, seat
change, downgrade and cancellation the simulation decided (`simulate.product`) goes through
the real checkout (the manual provider) and subscription service at its simulated time, so
the demo's Revenue page, accounts and entitlements have a history made by the same code a
real product's backend calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from traction.billing.providers import Providers
from traction.billing.service import BillingError, BillingService, NotFound
from traction.simulate.product import Intent

RETURN_URL = "https://example.app/billing"


class BillingReplay:
    """Replays the intents as the simulated days are committed, in time order, each by the
    person who made it: the billing events of a day (trials, upgrades, renewals) land in the
    log right after the day's own, so the journeys and the rollout the next simulated days
    run see them (an upgrade prompt's goal is `plan_upgraded`)."""

    def __init__(self, billing: BillingService, providers: Providers, workspace_id: str) -> None:
        self.billing, self.providers, self.ws = billing, providers, workspace_id
        self.on = billing.catalog(workspace_id) is not None
        self.seen = 0  # of the world's intents: replayed, or held for their time
        self.held: list[Intent] = []
        self.clock = _Clock()
        self.day: date | None = None

    def through(self, intents: Sequence[Intent], until: datetime | None) -> list[dict[str, Any]]:
        """Replays the intents not seen yet (`intents` is the world's whole list, which only
        grows) that happened before `until`, and holds the later ones. None: all of them, and
        the schedule caught up to the last (renewals, trial and period ends). Returns the
        events billing emitted meanwhile (collected, not sent: the caller stores them)."""
        if not self.on:
            return []
        new, self.seen = list(intents[self.seen :]), len(intents)
        todo = sorted(self.held + new, key=lambda i: i.at)  # (stable: ties in the order made)
        if until is not None:
            self.held = [i for i in todo if i.at >= until]
            todo = [i for i in todo if i.at < until]
        if todo and todo[0].at < self.clock.t:
            raise RuntimeError(f"an intent at {todo[0].at} came after {self.clock.t} was replayed")
        emitted: list[dict[str, Any]] = []
        real_emit, real_now = self.billing.emit, self.billing.now
        self.billing.emit = lambda _ws, msgs: emitted.extend(msgs)
        self.billing.now = self.clock
        try:
            for i in todo:
                self._replay(i)
            if until is None and self.day is not None:
                self.billing.advance(self.clock.t)
        finally:
            self.billing.emit, self.billing.now = real_emit, real_now
        return emitted

    def _replay(self, i: Intent) -> None:
        billing = self.billing
        self.clock.t = i.at
        if i.at.date() != self.day:  # renewals, trial and period ends: each change catches up
            billing.advance(i.at)  # its own subscription first, so once a day is enough
            self.day = i.at.date()
        try:
            try:
                _apply(billing, self.providers, self.ws, i)
            except NotFound:  # its subscription ended earlier today: start a new one
                billing.advance(i.at)
                _apply(billing, self.providers, self.ws, i)
        except (BillingError, NotFound):
            pass  # e.g. a replay into a workspace that has this history already


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
