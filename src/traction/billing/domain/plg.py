"""The PLG revenue KPIs, pure: from what each person did (signed up, started a trial,
activated, became a PQL) and every subscription change, with who made it.

Self-serve means a person in the product made the change (a checkout, the upgrade page, an
in-app upgrade: billing's change event carries their user id); a change made *for* the
account (a renewal, a period's end, an admin or sales in the dashboard) is not. Amounts are
MRR, classified on the account's total by ChartMogul's rules (`revenue.movements`).

A person's account is the first one their events belong to. Each KPI looks at a period
[start, end) and, for conversions, a window after each person's starting moment; the docs
(docs/metrics.md) give every definition with a worked example.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from traction.billing.domain.revenue import Change, Movement, movements


@dataclass(frozen=True)
class Person:
    person: str
    account: str | None = None
    signed_up: datetime | None = None
    trial_started: datetime | None = None
    activated: datetime | None = None
    pql: datetime | None = None  # became a product-qualified lead (see `Windows.pql_event`)


@dataclass(frozen=True)
class Checkout:
    person: str | None
    account: str
    at: datetime


@dataclass(frozen=True)
class Facts:
    people: Sequence[Person]
    changes: Sequence[Change]
    checkouts: Sequence[Checkout] = ()
    signals: Sequence[tuple[str, datetime]] = ()  # (account, when): an upgrade trigger fired


@dataclass(frozen=True)
class Windows:
    paid_days: float = 30.0  # a purchase counts this long after the starting moment
    expansion_days: float = 90.0  # an expansion (or its signal) counts this long after
    checkout_days: float = 1.0  # a checkout completes this long after it started
    gross_margin: Decimal = Decimal("0.8")
    churn_days: int = 90  # the trailing window of the customer churn rate LTV divides by


@dataclass(frozen=True)
class PLGRevenue:
    free_to_paid_activated: float | None
    free_to_paid_not_activated: float | None
    checkout_rate: float | None
    upgrade_rate_post_activation: float | None
    revenue_per_trial_user: float | None
    expansion_revenue: float | None
    upsell_revenue: float | None
    activation_to_expansion: float | None
    time_to_expansion_signal: float | None  # seconds
    converted_pql_ltv: float | None


def _within(t: datetime | None, start: datetime, days: float) -> bool:
    return t is not None and start <= t <= start + timedelta(days=days)


def _share(hits: int, base: int) -> float | None:
    return hits / base if base else None


class ChangeIndex:
    """The changes by who made them and by account, and the movements: computed once for
    every period (and kept while no change is added: most new events are not changes)."""

    def __init__(self, changes: Sequence[Change]) -> None:
        self.moves: list[Movement] = movements(changes)
        self.purchases: dict[str, list[Change]] = {}  # person -> self-serve changes that raised MRR
        self.first_paid: dict[str, list[Change]] = {}  # person -> ... that made a subscription pay
        self.raises: dict[str, list[datetime]] = {}  # account -> any change that raised MRR
        for c in changes:
            if c.mrr_after > c.mrr_before:
                self.raises.setdefault(c.account, []).append(c.at)
                if c.person is not None:
                    self.purchases.setdefault(c.person, []).append(c)
                    if c.mrr_before == 0:
                        self.first_paid.setdefault(c.person, []).append(c)
        self.expansions: dict[str, list[Movement]] = {}
        self.new: dict[str, list[Movement]] = {}
        for m in self.moves:
            if m.kind == "expansion":
                self.expansions.setdefault(m.account, []).append(m)
            elif m.kind == "new":
                self.new.setdefault(m.account, []).append(m)


def plg_revenue(
    facts: Facts, start: datetime, end: datetime, w: Windows, index: ChangeIndex | None = None
) -> PLGRevenue:
    """`index`: `ChangeIndex(facts.changes)`, when the caller keeps it."""
    ix = index or ChangeIndex(facts.changes)

    def in_period(t: datetime | None) -> bool:
        return t is not None and start <= t < end

    signed = [p for p in facts.people if in_period(p.signed_up)]
    activated = [p for p in facts.people if in_period(p.activated)]

    def bought(p: Person) -> bool:  # made their account pay, within the window from sign-up
        assert p.signed_up is not None
        return any(_within(c.at, p.signed_up, w.paid_days) for c in ix.first_paid.get(p.person, ()))

    act = [p for p in signed if p.activated is not None]
    other = [p for p in signed if p.activated is None]

    checkouts = [c for c in facts.checkouts if in_period(c.at)]
    completed = sum(
        any(_within(t, c.at, w.checkout_days) for t in ix.raises.get(c.account, ()))
        for c in checkouts
    )

    upgraded = sum(
        any(_within(c.at, p.activated, w.paid_days) for c in ix.purchases.get(p.person, ()))
        for p in activated
        if p.activated is not None
    )

    trials = [p for p in facts.people if in_period(p.trial_started)]
    trial_mrr = sum(
        (c.mrr_after - c.mrr_before for p in trials if p.trial_started is not None
         for c in ix.purchases.get(p.person, ()) if _within(c.at, p.trial_started, w.paid_days)),
        Decimal(0),
    )  # fmt: skip

    own_expansion = [m for ms in ix.expansions.values() for m in ms
                     if m.person is not None and in_period(m.at)]  # fmt: skip
    expansion = sum((m.amount for m in own_expansion), Decimal(0))
    upsell = sum((m.amount for m in own_expansion if m.event == "plan_upgraded"), Decimal(0))

    expanded = sum(
        p.account is not None
        and any(_within(m.at, p.activated, w.expansion_days) for m in ix.expansions.get(p.account, ()))
        for p in activated
        if p.activated is not None
    )  # fmt: skip

    by_account: dict[str, list[datetime]] = {}
    for account, t in facts.signals:
        by_account.setdefault(account, []).append(t)
    waits = []
    for p in signed:
        assert p.signed_up is not None
        seen = [
            t
            for t in by_account.get(p.account or "", ())
            if _within(t, p.signed_up, w.expansion_days)
        ]
        if seen:
            waits.append((min(seen) - p.signed_up).total_seconds())

    return PLGRevenue(
        free_to_paid_activated=_share(sum(map(bought, act)), len(act)),
        free_to_paid_not_activated=_share(sum(map(bought, other)), len(other)),
        checkout_rate=_share(completed, len(checkouts)),
        upgrade_rate_post_activation=_share(upgraded, len(activated)),
        revenue_per_trial_user=float(trial_mrr / len(trials)) if trials else None,
        expansion_revenue=float(expansion),
        upsell_revenue=float(upsell),
        activation_to_expansion=_share(expanded, len(activated)),
        time_to_expansion_signal=statistics.median(waits) if waits else None,
        converted_pql_ltv=_pql_ltv(facts, ix, start, end, w),
    )


def customer_churn_rate(moves: Sequence[Movement], end: datetime, days: int) -> Decimal | None:
    """Monthly: the accounts that churned in the `days` before `end`, over the accounts paying
    when those days began, scaled to 30 days. None without both."""
    begin = end - timedelta(days=days)
    mrr: dict[str, Decimal] = {}
    churned = 0
    for m in sorted(moves, key=lambda m: m.at):
        if m.at >= end:
            break
        if m.at < begin:
            mrr[m.account] = mrr.get(m.account, Decimal(0)) + m.amount
        elif m.kind == "churn":
            churned += 1
    paying = sum(1 for v in mrr.values() if v > 0)
    if not paying or not churned:
        return None
    return Decimal(churned) / paying * 30 / days


def _pql_ltv(
    facts: Facts, ix: ChangeIndex, start: datetime, end: datetime, w: Windows
) -> float | None:
    """Mean LTV of the accounts whose PQL of the period was followed by the account's first
    purchase within the window: MRR at purchase * gross margin / the monthly churn rate."""
    churn = customer_churn_rate(ix.moves, end, w.churn_days)
    if churn is None:
        return None
    converted: dict[str, Decimal] = {}
    for p in facts.people:
        if p.pql is None or not start <= p.pql < end or p.account is None:
            continue
        for m in ix.new.get(p.account, ()):
            if _within(m.at, p.pql, w.paid_days):
                converted.setdefault(p.account, m.amount)
                break
    if not converted:
        return None
    ltv = [mrr * w.gross_margin / churn for mrr in converted.values()]
    return float(sum(ltv, Decimal(0)) / len(ltv))
