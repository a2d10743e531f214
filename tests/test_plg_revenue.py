"""The PLG revenue KPIs and cohort revenue retention on a hand-built history, each answer
worked out by hand in the comments (March 2026 is the period)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from traction.billing.domain.plg import (
    Checkout,
    Facts,
    Person,
    Windows,
    customer_churn_rate,
    plg_revenue,
)
from traction.billing.domain.revenue import Change, Movement, cohorts, movements

D = Decimal


def t(month: int, day: int, hour: int = 10, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour)


def change(account: str, at: datetime, before: int, after: int, event: str,
           person: str | None) -> Change:  # fmt: skip
    return Change(account, f"sub-{account}", at, D(before), D(after), event, person)


PEOPLE = [
    Person("A", "a1", signed_up=t(3, 2), trial_started=t(3, 2), activated=t(3, 3), pql=t(3, 3)),
    Person("B", "a2", signed_up=t(3, 5), activated=t(3, 6), pql=t(3, 6)),
    Person("C", "a3", signed_up=t(3, 7)),
    Person("D", "a4", signed_up=t(3, 10)),
    Person("E", "a5", signed_up=t(2, 20), activated=t(3, 1), pql=t(3, 1)),
    Person("F", "a6", trial_started=t(3, 3)),
]
CHANGES = [
    # four old customers paying 50 since December; z1 churns in February
    *(change(z, t(12, 1, year=2025), 0, 50, "subscription_started", None) for z in ("z1", "z2", "z3", "z4")),
    change("z1", t(2, 10), 50, 0, "subscription_ended", None),
    change("a1", t(3, 10), 0, 39, "subscription_started", "A"),  # A buys pro
    change("a1", t(3, 20), 39, 119, "plan_upgraded", "A"),  # ... then business: upsell 80
    change("a2", t(3, 8), 0, 29, "subscription_started", None),  # an admin subscribes B's account
    change("a3", t(3, 12), 0, 29, "subscription_started", "C"),
    change("a3", t(3, 15), 29, 39, "seats_changed", "C"),  # expansion 10, not an upsell
    change("a4", t(5, 1), 0, 29, "subscription_started", "D"),  # 52 days after sign-up: too late
    change("a5", t(3, 5), 0, 29, "subscription_started", "E"),
    change("a5", t(4, 15), 29, 49, "plan_upgraded", None),  # sales expands a5
]  # fmt: skip
CHECKOUTS = [
    Checkout("A", "a1", t(3, 10, 9)),  # completed an hour later
    Checkout("B", "a2", t(3, 6)),  # a2 started paying two days later: not this checkout
    Checkout("D", "a4", t(3, 25)),  # abandoned
]
SIGNALS = [
    ("a1", t(3, 1)),  # before A signed up: not theirs
    ("a1", t(3, 4, 12)),  # A: 2 days 2 hours after sign-up = 50 h
    ("a3", t(3, 9, 7)),  # C: 1 day 21 hours = 45 h
    ("a4", t(7, 1)),  # D: 113 days later, past the 90-day window
]
MARCH = (t(3, 1, 0), t(4, 1, 0))


def test_each_plg_revenue_kpi_matches_the_hand_computed_answer() -> None:
    r = plg_revenue(Facts(PEOPLE, CHANGES, CHECKOUTS, SIGNALS), *MARCH, Windows())
    # signed up in March and activated: A (bought), B (an admin bought, not B) -> 1/2
    assert r.free_to_paid_activated == 0.5
    # signed up in March, not activated: C (bought day 5), D (day 52: too late) -> 1/2
    assert r.free_to_paid_not_activated == 0.5
    # checkouts started in March: A's completed within a day; B's and D's did not -> 1/3
    assert r.checkout_rate == pytest.approx(1 / 3)
    # activated in March: A (bought a week later), B (never bought), E (bought 4 days later)
    assert r.upgrade_rate_post_activation == pytest.approx(2 / 3)
    # trials started in March: A (39 + 80 of MRR within 30 days) and F (nothing) -> 119 / 2
    assert r.revenue_per_trial_user == 59.5
    # self-serve expansion in March: a1 +80 (an upgrade: upsell), a3 +10 (seats)
    assert r.expansion_revenue == 90.0 and r.upsell_revenue == 80.0
    # activated in March: A's a1 expanded Mar 20, E's a5 Apr 15 (by sales: any counts), B's
    # a2 never -> 2/3
    assert r.activation_to_expansion == pytest.approx(2 / 3)
    # median of 50 h and 45 h
    assert r.time_to_expansion_signal == 47.5 * 3600
    # PQLs of March whose account then first paid within 30 days: a1 (39), a2 (29), a5 (29).
    # Churn: 1 of 4 paying on Jan 1 churned in the 90 days to Apr 1 -> 1/4 * 30/90 = 1/12 a
    # month; LTV = MRR * 0.8 * 12; mean = (39 + 29 + 29) / 3 * 9.6 = 310.4
    assert r.converted_pql_ltv == pytest.approx(310.4)


def test_empty_periods_and_no_churn() -> None:
    r = plg_revenue(Facts(PEOPLE, CHANGES, CHECKOUTS, SIGNALS), t(1, 1, 0), t(2, 1, 0), Windows())
    assert r.free_to_paid_activated is None and r.checkout_rate is None
    assert r.revenue_per_trial_user is None and r.time_to_expansion_signal is None
    assert r.expansion_revenue == 0.0
    # nobody churned in the 90 days to Feb 1: a lifetime cannot be estimated
    assert customer_churn_rate(movements(CHANGES), t(2, 1, 0), 90) is None
    assert customer_churn_rate(movements(CHANGES), t(4, 1, 0), 90) == D(1) / 4 * 30 / 90


def test_a_longer_window_counts_the_late_purchase() -> None:
    r = plg_revenue(Facts(PEOPLE, CHANGES), *MARCH, Windows(paid_days=60))
    assert r.free_to_paid_not_activated == 1.0  # D's purchase on day 52 now counts


def m(account: str, day: date, kind: str, amount: int) -> Movement:
    return Movement(account, datetime.combine(day, datetime.min.time()), kind, D(amount))


def test_cohort_revenue_retention() -> None:
    """January's cohort: x (100) and y (50) -> 150. February: x +50 (expansion), y churns.
    March: y comes back at 20 (reactivation). Net: Feb (150)/150 = 1, Mar 170/150; gross caps
    x at 100: Feb 100/150, Mar (100 + 20)/150. February's cohort: z (40), -10 in March."""
    moves = [
        m("x", date(2026, 1, 5), "new", 100),
        m("y", date(2026, 1, 20), "new", 50),
        m("x", date(2026, 2, 3), "expansion", 50),
        m("y", date(2026, 2, 9), "churn", -50),
        m("z", date(2026, 2, 14), "new", 40),
        m("y", date(2026, 3, 2), "reactivation", 20),
        m("z", date(2026, 3, 9), "contraction", -10),
    ]
    jan, feb = cohorts(moves, date(2026, 3, 31))
    assert (jan.month, jan.accounts, jan.mrr) == (date(2026, 1, 1), 2, D(150))
    assert jan.net == [D(1), D(1), D(170) / 150]
    assert jan.gross == [D(1), D(100) / 150, D(120) / 150]
    assert (feb.month, feb.accounts, feb.mrr) == (date(2026, 2, 1), 1, D(40))
    assert feb.net == [D(1), D(30) / 40] and feb.gross == [D(1), D(30) / 40]


def test_the_kpis_from_the_event_log_through_billing(sqlite_ctx) -> None:  # type: ignore[no-untyped-def]
    """The same KPIs end to end: sign-ups and activation as tracked events, purchases through
    the manual checkout and a seat change by the buyer, a locked feature through a check.
    p1 (activated) buys pro (39: 29 + one seat), adds two seats (+20: expansion), moves to
    business (159: +100, an upsell); p2 hits a locked feature a day after signing up; p3
    does nothing."""
    import time
    from pathlib import Path

    import yaml

    from traction.analytics.domain.specs import DateRange
    from traction.ingest.domain import normalize_segment

    ctx = sqlite_ctx
    clock = _Clock(datetime(2026, 3, 1))
    ctx.billing.now = clock
    ws = ctx.workspaces.create_workspace("Acme").id
    example = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"
    ctx.billing.apply_catalog(ws, yaml.safe_load(example.read_text()))
    msgs: list[object] = []
    for user, account, day in (("p1", "a1", 2), ("p2", "a2", 3), ("p3", "a3", 4)):
        at = f"2026-03-0{day}T10:00:00"
        msgs += [
            {"type": "group", "userId": user, "groupId": account, "timestamp": at + "Z", "messageId": f"g-{user}"},
            {"type": "track", "userId": user, "event": "signed_up", "timestamp": at + ".1Z",
             "context": {"groupId": account}, "messageId": f"s-{user}"},
        ]  # fmt: skip
    msgs += [
        {"type": "track", "userId": "p1", "event": e, "timestamp": "2026-03-02T11:00:00Z",
         "context": {"groupId": "a1"}, "messageId": f"{e}-p1"}
        for e in ("project_created", "teammate_invited")
    ]  # fmt: skip
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    url = "https://app.example/back"
    clock.t = datetime(2026, 3, 5, 9)
    ctx.providers.checkout(ws, "a1", "pro", "month", 1, url, url, user="p1")
    clock.t = datetime(2026, 3, 10, 9)
    assert ctx.billing.set_seats(ws, "a1", 3, user="p1").mrr_after == D(59)
    clock.t = datetime(2026, 3, 12, 9)
    ctx.providers.checkout(ws, "a1", "business", "month", 3, url, url, user="p1")
    clock.t = datetime(2026, 3, 4, 10)
    assert not ctx.billing.check(ws, "a2", "exports", user="p2").granted
    expected = len(msgs) + 2 + 1 + 1 + 1 + 1  # checkouts, purchase, seats, upgrade, lock
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ctx.events.count(ws) < expected:
        time.sleep(0.02)
    assert ctx.events.count(ws) == expected
    march = DateRange(date_from=date(2026, 3, 1), date_to=date(2026, 3, 31))
    values = {k: ctx.analytics.kpi(ws, k, march) for k in (
        "free_to_paid_activated", "free_to_paid_not_activated", "checkout_rate",
        "upgrade_rate_post_activation", "expansion_revenue", "upsell_revenue",
        "activation_to_expansion", "time_to_expansion_signal", "revenue_per_trial_user")}  # fmt: skip
    assert values == {
        "free_to_paid_activated": 1.0, "free_to_paid_not_activated": 0.0, "checkout_rate": 1.0,
        "upgrade_rate_post_activation": 1.0, "expansion_revenue": 120.0, "upsell_revenue": 100.0,
        "activation_to_expansion": 1.0, "time_to_expansion_signal": 86_399.9,  # 10:00:00.1 -> 10:00
        "revenue_per_trial_user": None,  # nobody started a trial
    }  # fmt: skip
    rows = {r["key"]: r for r in ctx.analytics.scorecard(ws, march)}
    assert rows["expansion_revenue"]["formatted"] == "120.00"


class _Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t
