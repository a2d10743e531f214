"""The simulated product's plans and walls: each account's subscription as billing will hold
it, and every entitlement decision made with billing's own code (the catalog, `decide`,
`add_months`), so the simulated people meet the limits and locks the real entitlement API
would show them.

What they buy is kept as intents (a trial, a checkout, seats, a downgrade, a cancellation),
which `simulate.billing` replays through the real checkout and subscription service at
their simulated time. The simulation itself stays pure: same seed, same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

import yaml

from traction.billing.domain.catalog import Catalog, Plan
from traction.billing.domain.entitlements import Decision, decide
from traction.billing.domain.periods import add_months
from traction.billing.domain.pricing import recurring_amount

EXAMPLE_CATALOG = Path(__file__).resolve().parent.parent / "billing" / "example_catalog.yaml"

Action = Literal["trial", "checkout", "seats", "downgrade", "cancel"]


@dataclass(frozen=True)
class Intent:
    at: datetime
    account: str
    user: str
    action: Action
    plan: str | None = None
    seats: int = 0


@dataclass
class Account:
    key: str
    owner: str
    plan: str
    status: str = "trialing"  # trialing | active | none (its subscription ended)
    period_end: datetime | None = None  # the trial's end, or the current period's
    pending: str | None = None  # the plan at the period's end; "cancel": the subscription ends
    members: int = 1
    projects: int = 0
    api_month: tuple[int, int] = (0, 0)
    api_calls: int = 0


def example_catalog() -> Catalog:
    return Catalog.model_validate(yaml.safe_load(EXAMPLE_CATALOG.read_text()))


class Product:
    """Every account's plan, moved forward in time the way billing moves subscriptions
    (`billing.domain.subscriptions`): a trial ends on the free plan (the example catalog's
    `trial_end: downgrade`), an upgrade applies at once, a downgrade or a cancellation at the
    period's end."""

    def __init__(self, catalog: Catalog, trial_plan: str = "pro") -> None:
        self.catalog = catalog
        self.trial_plan = trial_plan
        free = catalog.free_plan
        assert free is not None, "the simulated product needs a free plan"
        self.free = free.key
        self.accounts: dict[str, Account] = {}
        self.intents: list[Intent] = []

    # -- the account's state -------------------------------------------------------------

    def open(self, account: str, owner: str, now: datetime) -> None:
        """A new account starts a trial of the trial plan (the catalog's trial length)."""
        plan = self.catalog.plan(self.trial_plan)
        assert plan is not None and plan.trial_days
        end = now + timedelta(days=plan.trial_days)
        self.accounts[account] = Account(account, owner, plan.key, period_end=end)
        self.intents.append(Intent(now, account, owner, "trial", plan.key))

    def at(self, account: str, now: datetime) -> Account:
        """The account as it is at `now`, every period end before it applied."""
        a = self.accounts[account]
        while a.period_end is not None and now >= a.period_end:
            if a.status == "trialing":
                a.plan, a.status = self.free, "active"
            elif a.pending == "cancel":
                a.plan, a.status, a.pending = self.free, "none", None
                a.period_end = None
                break
            elif a.pending is not None:
                a.plan, a.pending = a.pending, None
            a.period_end = add_months(a.period_end, 1)
        return a

    def plan(self, account: str, now: datetime) -> Plan:
        plan = self.catalog.plan(self.at(account, now).plan)
        assert plan is not None
        return plan

    def paying(self, account: str, now: datetime) -> bool:
        a = self.at(account, now)
        return a.status == "active" and a.plan != self.free

    def check(self, account: str, feature: str, now: datetime, requested: int = 0) -> Decision:
        """What the entitlement API answers, from the usage this simulation counted (the same
        number the meters reach once its events are in: a test holds them equal)."""
        a = self.at(account, now)
        used = {"projects": a.projects, "seats": a.members}.get(feature, 0)
        if feature == "api_calls":
            used = a.api_calls if a.api_month == (now.year, now.month) else 0
        return decide(self.catalog, self.plan(account, now), feature, used, requested)

    # -- what the people do ---------------------------------------------------------------

    def _monthly(self, plan: str, seats: int) -> Decimal:
        p = self.catalog.plan(plan)
        assert p is not None
        return recurring_amount(p, "month", seats) if p.price("month") else Decimal(0)

    def buy(self, account: str, user: str, plan: str, now: datetime) -> bool:
        """A checkout for `plan`: at once when it is an upgrade (or the first purchase).
        False when it would not be one (billing would schedule it, or refuse it)."""
        a = self.at(account, now)
        if self.catalog.plan(plan) is None or plan == self.free:
            return False
        if a.status == "active" and (
            a.plan == plan or self._monthly(plan, a.members) <= self._monthly(a.plan, a.members)
        ):
            return False
        self.intents.append(Intent(now, account, user, "checkout", plan, a.members))
        if a.status != "active":  # a trial bought, or a new subscription: a period from now
            a.period_end = add_months(now, 1)
        a.plan, a.status, a.pending = plan, "active", None
        return True

    def joined(self, account: str, now: datetime) -> None:
        """A member joined: a paying account pays for the seat (billing prorates it)."""
        a = self.at(account, now)
        a.members += 1
        if self.paying(account, now):
            self.intents.append(Intent(now, account, a.owner, "seats", seats=a.members))

    def downgrade(self, account: str, user: str, plan: str, now: datetime) -> bool:
        a = self.at(account, now)
        if not self.paying(account, now) or a.pending is not None or a.plan == plan:
            return False
        a.pending = plan
        self.intents.append(Intent(now, account, user, "downgrade", plan))
        return True

    def cancel(self, account: str, user: str, now: datetime) -> bool:
        a = self.at(account, now)
        if not self.paying(account, now) or a.pending == "cancel":
            return False
        a.pending = "cancel"
        self.intents.append(Intent(now, account, user, "cancel"))
        return True

    def used(self, account: str, feature: str, amount: int, now: datetime) -> None:
        a = self.accounts[account]  # (not `at`: onboarding records steps ahead of time)
        if feature == "projects":
            a.projects += amount
        elif feature == "api_calls":
            if a.api_month != (now.year, now.month):
                a.api_month, a.api_calls = (now.year, now.month), 0
            a.api_calls += amount
