"""Subscriptions through the service with a clock we move: trial, upgrade with proration,
downgrade at the period's end with usage above the new limit, cancellation, and the events
each change puts in the log with MRR before and after."""

from __future__ import annotations

import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from traction.billing.domain.revenue import CHANGE_EVENTS
from traction.context import Context

EXAMPLE = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def test_a_subscription_lifecycle(sqlite_ctx: Context) -> None:
    ctx = sqlite_ctx
    clock = Clock(datetime(2026, 3, 1, 12))
    billing = ctx.billing
    billing.now = clock
    ws = ctx.workspaces.create_workspace("Acme").id
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["features"].append({"key": "ai_credits", "type": "metered", "reset": "never"})
    doc["plans"][0]["features"]["ai_credits"] = {"limit": 5}
    doc["plans"][1]["features"]["ai_credits"] = {"limit": 50}
    doc["plans"][1]["trial_end"] = "convert"
    billing.apply_catalog(ws, doc)

    sub = billing.subscribe(ws, "acme", "pro", seats=2)
    assert sub.status == "trialing" and sub.period_end == datetime(2026, 3, 15, 12)
    assert billing.check(ws, "acme", "exports").granted  # the trial grants the plan
    for i in range(20):
        assert billing.consume(ws, "acme", "ai_credits", 1, f"c{i}")["granted"]

    clock.t = datetime(2026, 3, 16)  # the trial converts at its end
    assert billing.advance() == 1
    sub2 = billing.subscription(ws, "acme")
    assert sub2 is not None and sub2.status == "active"
    assert (sub2.period_start, sub2.period_end) == (
        datetime(2026, 3, 15, 12),
        datetime(2026, 4, 15, 12),
    )
    assert billing.advance() == 0  # nothing left to do

    clock.t = datetime(2026, 3, 31, 12)  # 15 of 31 days left: upgrade to business
    t = billing.change_plan(ws, "acme", "business")
    assert t.name == "plan_upgraded" and t.amount_due == Decimal("43.55")  # (139 - 49) x 15/31
    clock.t = datetime(2026, 4, 1)
    t = billing.change_plan(ws, "acme", "free")  # downgrade: at the period's end
    assert (
        t.name == "plan_downgrade_scheduled"
        and billing.subscription(ws, "acme").plan_key == "business"
    )  # type: ignore[union-attr]
    clock.t = datetime(2026, 4, 16)
    assert billing.advance() == 1
    assert billing.subscription(ws, "acme").plan_key == "free"  # type: ignore[union-attr]
    # usage above the new limit: kept (20 of 5), and no more is granted
    d = billing.check(ws, "acme", "ai_credits", requested=1)
    assert (d.granted, d.usage, d.limit, d.remaining, d.reason) == (
        False,
        20,
        5,
        0,
        "limit_reached",
    )
    assert not billing.consume(ws, "acme", "ai_credits", 1, "after-downgrade")["granted"]

    t = billing.change_plan(ws, "acme", "pro")  # back up from free: at once
    assert t.name == "plan_upgraded"
    t = billing.cancel(ws, "acme")
    assert t.name == "subscription_cancel_scheduled" and t.mrr_after == Decimal(49)
    billing.reactivate(ws, "acme")
    billing.cancel(ws, "acme")
    clock.t = datetime(2026, 6, 1)
    assert billing.advance() == 1
    assert billing.subscription(ws, "acme") is None
    assert billing.entitlements(ws, "acme")["plan"] == "free"  # no subscription: the free plan
    with pytest.raises(LookupError):
        billing.cancel(ws, "acme")

    # the writer commits these in the background: the ten changes below, and the
    # $feature_locked and $limit_reached of the refused consumption
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(ctx.events.recent(ws, limit=100)) < 12:
        time.sleep(0.02)
    events = sorted(ctx.events.recent(ws, limit=100), key=lambda e: (e["timestamp"], e["seq"]))
    changes = [(e["name"], e["properties"]["mrr_before"], e["properties"]["mrr_after"])
               for e in events if "mrr_after" in e["properties"]]  # fmt: skip
    assert changes == [
        ("trial_started", 0, 0),
        ("trial_converted", 0, 49),
        ("plan_upgraded", 49, 139),
        ("plan_downgrade_scheduled", 139, 139),
        ("plan_downgraded", 139, 0),
        ("plan_upgraded", 0, 49),
        ("subscription_cancel_scheduled", 49, 49),
        ("subscription_reactivated", 49, 49),
        ("subscription_cancel_scheduled", 49, 49),
        ("subscription_ended", 49, 0),
    ]
    assert all(e["account_id"] == "acme" for e in events)
    # changes that wait for a period's end happen at it: business's period (from the trial's
    # conversion, Mar 15 12:00) ends Apr 15 12:00; free's, begun then, May 15 12:00
    at = {e["name"]: e["timestamp"] for e in events}
    assert at["plan_downgraded"] == datetime(2026, 4, 15, 12)
    assert at["subscription_ended"] == datetime(2026, 5, 15, 12)


def test_revenue_from_the_event_log(sqlite_ctx: Context) -> None:
    """Two accounts' subscription histories through the service; MRR movements read back
    from the events they left (figures by hand: pro 2 seats = 49, business 2 seats = 139)."""
    ctx = sqlite_ctx
    clock = Clock(datetime(2026, 1, 10))
    billing = ctx.billing
    billing.now = clock
    ws = ctx.workspaces.create_workspace("Acme").id
    billing.apply_catalog(ws, yaml.safe_load(EXAMPLE.read_text()))
    billing.subscribe(ws, "a", "pro", seats=2, trial=False)  # Jan: new 49
    billing.subscribe(ws, "b", "business", seats=2, trial=False)  # Jan: new 139
    clock.t = datetime(2026, 2, 20)
    billing.change_plan(ws, "a", "business")  # Feb: expansion 90
    billing.cancel(ws, "b")  # ends Mar 10: churn -139 in March
    clock.t = datetime(2026, 3, 15)
    billing.advance()
    deadline = time.monotonic() + 10
    names = ["subscription_started", "plan_upgraded", "subscription_ended", "subscription_renewed"]
    # every change's event is in before reading (renewals alone could make the count)
    while time.monotonic() < deadline and not ctx.events.named_events(ws, ["subscription_ended"]):
        time.sleep(0.02)
    while time.monotonic() < deadline and len(ctx.events.named_events(ws, names)) < 6:
        time.sleep(0.02)
    out = billing.revenue(
        ws, ctx.events.named_events(ws, names), date(2026, 1, 1), date(2026, 3, 31)
    )
    jan, feb, mar = out["months"]
    assert (jan["mrr"], jan["movements"]["new"], jan["customers"]) == ("188.00", "188.00", 2)
    assert (feb["mrr"], feb["movements"]["expansion"], feb["net_revenue_retention"]) == (
        "278.00",
        "90.00",
        "1.4787",
    )
    assert (mar["movements"]["churn"], mar["mrr"], mar["customers"]) == ("-139.00", "139.00", 1)
    assert mar["customer_churn_rate"] == "0.5000" and mar["gross_revenue_retention"] == "0.5000"
    assert out["currency"] == "USD"


def test_simulated_customers_become_subscriptions(sqlite_ctx: Context) -> None:
    """The simulator's trials, checkouts, seats, downgrades and cancellations replayed
    through the real checkout and subscription service: every account ends on the plan the
    simulation's entitlement checks assumed, the meters built from its events hold the usage
    it counted, and the revenue history adds up."""
    from traction.simulate.runner import run_simulation
    from traction.simulate.world import SimulationParams, World
    from traction.worker import ReactorRunner, default_reactors

    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Sim").id
    ctx.billing.apply_catalog(ws, yaml.safe_load(EXAMPLE.read_text()))
    params = SimulationParams(people=1500, days=60, seed=3, start=date(2026, 1, 1))
    run_simulation(ctx, ws, params)
    world = World(params)  # the same run again (same seed): its view of every account
    for _ in world.run():
        pass
    actions = {i.action for i in world.product.intents}
    assert actions >= {"trial", "checkout", "seats", "cancel"}
    end = datetime(2026, 3, 2)
    ctx.billing.now = lambda: end
    ctx.billing.advance(end)  # what the server's scheduled job does: trials end, periods renew
    ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state, ctx.catalog, ctx.billing),
                  ctx.metrics).run_once()  # fmt: skip
    for account, state in world.product.accounts.items():
        _cat, plan, _sub = ctx.billing.plan_for(ws, account)
        assert plan is not None and plan.key == world.product.plan(account, end).key, account
        assert ctx.billing.entitlements(ws, account)["entitlements"]["projects"]["usage"] == (
            state.projects
        ), account
    report = ctx.billing.revenue(
        ws, ctx.events.named_events(ws, CHANGE_EVENTS), date(2026, 1, 1), date(2026, 3, 31)
    )
    months = report["months"]
    assert Decimal(months[1]["movements"]["new"]) > 0
    mrr_end = sum((Decimal(m["movements"][k]) for m in months for k in m["movements"]), Decimal(0))
    assert Decimal(months[-1]["mrr"]) == mrr_end  # movements add up to the MRR
    paying = [a for a in world.product.accounts if world.product.paying(a, end)]
    assert months[-1]["customers"] == len(paying)
    # each purchase is on the simulated person who made it (self-serve); only the scheduled
    # changes (renewals, trial and period ends) are the account's own
    bought = ctx.events.recent(ws, name="checkout_started", limit=10_000)
    assert bought and all(e["user_id"] and e["user_id"].startswith("u_") for e in bought)
    renewals = ctx.events.recent(ws, name="subscription_renewed", limit=10_000)
    assert renewals and all(e["user_id"] is None for e in renewals)


def test_free_to_paid_conversion_kpi(sqlite_ctx: Context) -> None:
    """Five sign-ups by hand; the KPI counts those in the period who made their account pay
    within 30 days: p1 only of p1-p4 (p2 too late, p3 never, p4 upgraded an account already
    paying; p5 signed up before the period) -> 1/4."""
    from traction.analytics.domain.specs import DateRange
    from traction.ingest.domain import normalize_segment

    ctx = sqlite_ctx
    clock = Clock(datetime(2026, 3, 1))
    ctx.billing.now = clock
    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.billing.apply_catalog(ws, yaml.safe_load(EXAMPLE.read_text()))
    signups = {
        "p1": "2026-03-02",
        "p2": "2026-03-05",
        "p3": "2026-03-08",
        "p4": "2026-03-09",
        "p5": "2026-02-20",
    }
    ctx.ingest.ingest_sync(ws, [
        {"type": "track", "userId": u, "event": "signed_up", "timestamp": f"{d}T10:00:00Z", "messageId": f"s-{u}"}
        for u, d in signups.items()
    ], normalize_segment)  # fmt: skip
    for user, account, when, plan in [("p5", "a5", datetime(2026, 3, 3), "pro"), ("p1", "a1", datetime(2026, 3, 10), "pro"),
                                      ("p2", "a2", datetime(2026, 4, 20), "pro")]:  # fmt: skip
        clock.t = when
        ctx.billing.subscribe(ws, account, plan, trial=False, user=user)
    clock.t = datetime(2026, 3, 15)
    ctx.billing.change_plan(ws, "a1", "business", user="p4")  # p4 joined a paying account
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ctx.events.count(ws) < 9:
        time.sleep(0.02)
    value = ctx.analytics.kpi(
        ws, "free_to_paid", DateRange(date_from=date(2026, 3, 1), date_to=date(2026, 3, 31))
    )
    assert value == 0.25


@pytest.mark.parametrize("seed", [1, 2])
def test_purchases_replayed_day_by_day_end_as_when_replayed_at_once(
    sqlite_ctx: Context, seed: int
) -> None:
    """The demo replays each simulated day's purchases as the day is committed: cut into
    pieces at random days, the replay emits the same events and leaves the same
    subscriptions as replaying the whole history at once."""
    import random

    from sqlalchemy import select

    from tests.test_simulator import _random_ids_named
    from traction.billing.models import Subscription
    from traction.simulate.billing import BillingReplay
    from traction.simulate.world import SimulationParams, World, day_start

    ctx = sqlite_ctx
    params = SimulationParams(people=1500, days=60, seed=3, start=date(2026, 1, 1))
    whole, pieces = (ctx.workspaces.create_workspace(n).id for n in ("Whole", "Pieces"))
    for ws in (whole, pieces):
        ctx.billing.apply_catalog(ws, yaml.safe_load(EXAMPLE.read_text()))
    replay, rng, emitted = (
        BillingReplay(ctx.billing, ctx.providers, pieces),
        random.Random(seed),
        [],
    )
    world = World(params)
    for d in range(params.days):
        world.day(d)
        if rng.random() < 0.3:
            emitted += replay.through(world.product.intents, day_start(params, d + 1))
    emitted += replay.through(world.product.intents, None)
    at_once = BillingReplay(ctx.billing, ctx.providers, whole).through(world.product.intents, None)

    def subscriptions(ws: str) -> list[tuple[object, ...]]:
        with ctx.state.session() as s:
            return sorted((x.account, x.plan_key, x.status, x.seats, x.period_start, x.period_end)
                          for x in s.scalars(select(Subscription).where(Subscription.workspace_id == ws)))  # fmt: skip

    assert len(at_once) > 100 and {e["event"] for e in at_once} >= {
        "trial_started",
        "plan_upgraded",
    }
    assert _random_ids_named(emitted) == _random_ids_named(at_once)
    assert subscriptions(pieces) == subscriptions(whole) and len(subscriptions(whole)) > 50
