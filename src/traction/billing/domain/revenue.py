"""Revenue metrics from subscription changes, pure, by ChartMogul's rules.

Input: every change of a subscription's MRR (`mrr_before` → `mrr_after`, as the billing
events carry them). An account's MRR is the sum over its subscriptions; a movement is
classified on the account's total:
- new: from 0, for an account that never paid before;  reactivation: from 0, for one that did;
- expansion / contraction: up / down, staying above 0;
- churn: to 0 (only when no other subscription of the account still pays: it is the total
  that counts). A cancellation keeps its MRR until the period ends, because the change event
  comes then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

KINDS = ("new", "expansion", "reactivation", "contraction", "churn")
# the events billing records a subscription's MRR change with (`mrr_before`, `mrr_after`)
CHANGE_EVENTS = (
    "trial_started", "subscription_started", "trial_converted", "trial_ended", "plan_upgraded",
    "plan_downgraded", "seats_changed", "subscription_ended", "subscription_renewed",
    "subscription_reactivated", "subscription_canceled", "payment_failed", "invoice_paid",
    "subscription_status_changed",
)  # fmt: skip


@dataclass(frozen=True)
class Change:
    account: str
    subscription: str
    at: datetime
    mrr_before: Decimal
    mrr_after: Decimal
    event: str = ""  # the change's event name (plan_upgraded, seats_changed, ...)
    person: str | None = None  # who made it in the product: a self-serve change; None for
    # changes made for the account (renewals, period ends, an admin or sales)


@dataclass(frozen=True)
class Movement:
    account: str
    at: datetime
    kind: str
    amount: Decimal  # signed: positive for new, expansion, reactivation
    event: str = ""
    person: str | None = None


def movements(changes: Iterable[Change]) -> list[Movement]:
    out: list[Movement] = []
    per_sub: dict[str, dict[str, Decimal]] = defaultdict(dict)  # account -> subscription -> MRR
    paid_before: set[str] = set()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for c in sorted(changes, key=lambda c: c.at):
        before = totals[c.account]
        subs = per_sub[c.account]
        subs[c.subscription] = c.mrr_after
        after = sum(subs.values(), Decimal(0))
        totals[c.account] = after
        if after == before:
            continue
        if before == 0:
            kind = "reactivation" if c.account in paid_before else "new"
        elif after == 0:
            kind = "churn"
        else:
            kind = "expansion" if after > before else "contraction"
        if after > 0:
            paid_before.add(c.account)
        out.append(Movement(c.account, c.at, kind, after - before, c.event, c.person))
    return out


@dataclass
class Month:
    month: date
    mrr_start: Decimal = Decimal(0)
    mrr_end: Decimal = Decimal(0)
    customers_start: int = 0
    customers_end: int = 0
    churned_customers: int = 0
    moves: dict[str, Decimal] = field(default_factory=lambda: {k: Decimal(0) for k in KINDS})
    # trailing twelve months: the accounts paying at the end of the same month a year before,
    # their MRR now over their MRR then (net: with expansion; gross: each capped at then)
    nrr_12m: Decimal | None = None
    grr_12m: Decimal | None = None

    @property
    def arr(self) -> Decimal:
        return self.mrr_end * 12

    @property
    def arpa(self) -> Decimal | None:
        return self.mrr_end / self.customers_end if self.customers_end else None

    @property
    def net_revenue_retention(self) -> Decimal | None:
        """(start + expansion + contraction + churn) / start: the month's customers only."""
        if not self.mrr_start:
            return None
        m = self.moves
        return (self.mrr_start + m["expansion"] + m["contraction"] + m["churn"]) / self.mrr_start

    @property
    def gross_revenue_retention(self) -> Decimal | None:
        if not self.mrr_start:
            return None
        return (self.mrr_start + self.moves["contraction"] + self.moves["churn"]) / self.mrr_start

    @property
    def customer_churn_rate(self) -> Decimal | None:
        return (
            Decimal(self.churned_customers) / self.customers_start if self.customers_start else None
        )

    @property
    def revenue_churn_rate(self) -> Decimal | None:
        """Gross MRR churn: (churn + contraction) lost, over MRR at the start."""
        if not self.mrr_start:
            return None
        return -(self.moves["churn"] + self.moves["contraction"]) / self.mrr_start

    @property
    def quick_ratio(self) -> Decimal | None:
        gained = self.moves["new"] + self.moves["expansion"] + self.moves["reactivation"]
        lost = -(self.moves["churn"] + self.moves["contraction"])
        return gained / lost if lost else None

    def ltv(self, gross_margin: Decimal) -> Decimal | None:
        """ARPA * gross margin / customer churn rate (none without churn)."""
        churn, arpa = self.customer_churn_rate, self.arpa
        return arpa * gross_margin / churn if churn and arpa is not None else None


def _month_start(d: date, back: int = 0) -> date:
    y, m = divmod(d.month - 1 - back, 12)
    return date(d.year + y, m + 1, 1)


def monthly(moves: Iterable[Movement], first: date, last: date) -> list[Month]:
    """Month by month from `first` to `last` (months, by their first day). The year before
    `first` is walked too, for the trailing-twelve-month retention."""
    moves = sorted(moves, key=lambda m: m.at)
    mrr: dict[str, Decimal] = defaultdict(Decimal)
    ends: list[dict[str, Decimal]] = []  # each month's end, per account, from a year back
    months: list[Month] = []
    start = _month_start(first)
    cursor = _month_start(first, 12) if first.year > 1 else _month_start(first)
    i = 0
    while cursor <= last:
        nxt = date(cursor.year + (cursor.month == 12), cursor.month % 12 + 1, 1)
        while i < len(moves) and moves[i].at.date() < cursor:  # history before the first month
            mrr[moves[i].account] += moves[i].amount
            i += 1
        m = Month(cursor, mrr_start=sum(mrr.values(), Decimal(0)),
                  customers_start=sum(1 for v in mrr.values() if v > 0))  # fmt: skip
        while i < len(moves) and moves[i].at.date() < nxt:
            mv = moves[i]
            mrr[mv.account] += mv.amount
            m.moves[mv.kind] += mv.amount
            m.churned_customers += mv.kind == "churn"
            i += 1
        m.mrr_end = sum(mrr.values(), Decimal(0))
        m.customers_end = sum(1 for v in mrr.values() if v > 0)
        ends.append({a: v for a, v in mrr.items() if v > 0})
        if len(ends) > 12:
            then = ends[-13]
            base = sum(then.values(), Decimal(0))
            if base:
                m.nrr_12m = sum((mrr.get(a, Decimal(0)) for a in then), Decimal(0)) / base
                m.grr_12m = (
                    sum((min(mrr.get(a, Decimal(0)), v) for a, v in then.items()), Decimal(0))
                    / base
                )
        if cursor >= start:
            months.append(m)
        cursor = nxt
    return months


@dataclass(frozen=True)
class Cohort:
    """Accounts by the month they first paid: their MRR at the end of that month, and at the
    end of each month after, net (with expansion) and gross (each account capped at its start)."""

    month: date
    accounts: int
    mrr: Decimal
    net: list[Decimal]  # retention at the end of month 0, 1, 2, ... (month 0 is 1)
    gross: list[Decimal]


def cohorts(moves: Iterable[Movement], last: date) -> list[Cohort]:
    """Revenue retention by cohort, up to the month `last` falls in."""
    moves = sorted(moves, key=lambda m: m.at)
    first_paid: dict[str, date] = {}
    for mv in moves:
        if mv.kind == "new" and mv.account not in first_paid:
            first_paid[mv.account] = _month_start(mv.at.date())
    if not first_paid:
        return []
    end = _month_start(last)
    months: list[date] = []
    cursor = min(first_paid.values())
    while cursor <= end:
        months.append(cursor)
        cursor = date(cursor.year + (cursor.month == 12), cursor.month % 12 + 1, 1)
    mrr: dict[str, Decimal] = defaultdict(Decimal)
    at_end: list[dict[str, Decimal]] = []  # each month's closing MRR per account
    i = 0
    for m in months:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        while i < len(moves) and moves[i].at.date() < nxt:
            mrr[moves[i].account] += moves[i].amount
            i += 1
        at_end.append(dict(mrr))
    out = []
    for k, m in enumerate(months):
        members = [a for a, f in first_paid.items() if f == m]
        if not members:
            continue
        start = {a: at_end[k].get(a, Decimal(0)) for a in members}
        base = sum(start.values(), Decimal(0))
        if not base:
            continue  # bought and left within the month: nothing to retain
        net, gross = [], []
        for later in at_end[k:]:
            net.append(sum((later.get(a, Decimal(0)) for a in members), Decimal(0)) / base)
            gross.append(sum((min(later.get(a, Decimal(0)), v) for a, v in start.items()),
                             Decimal(0)) / base)  # fmt: skip
        out.append(Cohort(m, len(members), base, net, gross))
    return out
