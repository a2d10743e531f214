"""The billing core, pure: catalog checks, charge models, rounding, proration, usage periods,
entitlement decisions, upgrade triggers and meters. Every figure is worked out by hand in the
comments."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from traction.billing.domain.catalog import Catalog, Meter, Tier, UsageCharge
from traction.billing.domain.entitlements import crossed, decide
from traction.billing.domain.meters import Running, aggregate, matches, value_of
from traction.billing.domain.periods import add_months, usage_window
from traction.billing.domain.pricing import (
    invoice_preview,
    proration,
    round_money,
    usage_amount,
    usage_lines,
)

EXAMPLE = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"
D = Decimal


def example() -> Catalog:
    return Catalog.model_validate(yaml.safe_load(EXAMPLE.read_text()))


TIERS = [Tier(up_to=100, unit_price=D(0)), Tier(up_to=1000, unit_price=D("0.01")),
         Tier(unit_price=D("0.005"))]  # fmt: skip


@pytest.mark.parametrize(
    ("charge", "quantity", "expected"),
    [
        # standard: 12,345 x 0.002 = 24.69
        (UsageCharge(feature="f", model="standard", unit_price=D("0.002")), 12_345, "24.69"),
        # 150 used, 100 free: 50 x 0.01 = 0.50
        (UsageCharge(feature="f", model="standard", unit_price=D("0.01"), free_units=100), 150, "0.50"),
        (UsageCharge(feature="f", model="standard", unit_price=D("0.01"), free_units=100), 80, "0.00"),
        # graduated 2,500: 100 x 0 + 900 x 0.01 + 1,500 x 0.005 = 0 + 9.00 + 7.50
        (UsageCharge(feature="f", model="graduated", tiers=TIERS), 2_500, "16.50"),
        (UsageCharge(feature="f", model="graduated", tiers=TIERS), 100, "0.00"),
        (UsageCharge(feature="f", model="graduated", tiers=TIERS), 101, "0.01"),
        # volume 2,500: all units at the third tier's 0.005 = 12.50; 1,000: all at 0.01
        (UsageCharge(feature="f", model="volume", tiers=TIERS), 2_500, "12.50"),
        (UsageCharge(feature="f", model="volume", tiers=TIERS), 1_000, "10.00"),
        (UsageCharge(feature="f", model="volume", tiers=TIERS), 0, "0.00"),
        # package of 1,000 at 5: 2,500 -> 3 packages; 1,001 -> 2; 0 -> 0
        (UsageCharge(feature="f", model="package", package_size=1000, package_price=D(5)), 2_500, "15.00"),
        (UsageCharge(feature="f", model="package", package_size=1000, package_price=D(5)), 1_001, "10.00"),
        (UsageCharge(feature="f", model="package", package_size=1000, package_price=D(5)), 0, "0.00"),
    ],
)  # fmt: skip
def test_charge_models(charge: UsageCharge, quantity: int, expected: str) -> None:
    assert usage_amount(charge, quantity) == D(expected)


def test_graduated_lines_and_flat_fees() -> None:
    tiers = [
        Tier(up_to=10, unit_price=D(1), flat_price=D(5)),
        Tier(unit_price=D("0.5"), flat_price=D(2)),
    ]
    lines = usage_lines(UsageCharge(feature="api", model="graduated", tiers=tiers), 14, "USD")
    # tier 1: 10 x 1 + 5 = 15; tier 2: 4 x 0.5 + 2 = 4
    assert [(ln.quantity, ln.amount) for ln in lines] == [(D(10), D("15.00")), (D(4), D("4.00"))]
    assert "1-10" in lines[0].description and "11+" in lines[1].description


def test_rounding_is_half_up_to_the_minor_unit() -> None:
    assert round_money(D("0.005"), "USD") == D("0.01")
    assert round_money(D("0.0049999"), "USD") == D("0.00")
    assert round_money(D("2.5"), "JPY") == D(3) and round_money(D("1.49"), "JPY") == D(1)
    # each line rounded once, the total is the sum of rounded lines: 3 x 0.005 -> 0.02, not 0.015
    charge = UsageCharge(feature="f", model="standard", unit_price=D("0.005"))
    assert usage_amount(charge, 3) == D("0.02")


def test_proration() -> None:
    start, end = datetime(2026, 3, 1), datetime(2026, 3, 31)  # 30 days
    # upgrade 20 -> 50 halfway: (50 - 20) x 15/30 = 15.00; the downgrade is the credit
    assert proration(D(20), D(50), start, end, datetime(2026, 3, 16), "USD") == D("15.00")
    assert proration(D(50), D(20), start, end, datetime(2026, 3, 16), "USD") == D("-15.00")
    # 10 of 30 days left: 10 x 1/3 = 3.333... -> 3.33
    assert proration(D(0), D(10), start, end, datetime(2026, 3, 21), "USD") == D("3.33")
    assert proration(D(0), D(10), start, end, start, "USD") == D("10.00")
    with pytest.raises(ValueError):
        proration(D(0), D(10), start, end, datetime(2026, 4, 2), "USD")


def test_invoice_preview_of_the_example_catalog() -> None:
    cat = example()
    business = cat.plan("business")
    assert business is not None
    # 99 flat + 7 seats x 20 = 140; api calls 1,250,000: 100k free, 900k x 0.0004 = 360, 250k x 0.0002 = 50
    inv = invoice_preview(cat, business, "month", seats=7, usage={"api_calls": 1_250_000})
    assert [ln.amount for ln in inv.lines] == [
        D("99.00"),
        D("140.00"),
        D("0.00"),
        D("360.00"),
        D("50.00"),
    ]
    assert inv.total == D("649.00") and inv.currency == "USD"
    pro = cat.plan("pro")
    assert pro is not None
    # 29 + 3 x 10 = 59; 120,000 api calls on a soft 100,000 limit: 20,000 x 0.0005 = 10 overage
    inv = invoice_preview(cat, pro, "month", seats=3, usage={"api_calls": 120_000})
    assert inv.total == D("69.00") and "20,000 over" in inv.lines[-1].description
    free = cat.free_plan
    assert free is not None and invoice_preview(cat, free, "month", 1, {}).total == D(0)


def test_usage_windows() -> None:
    at = datetime(2026, 3, 4, 15, 42)  # a Wednesday
    assert usage_window("hour", at) == (datetime(2026, 3, 4, 15), datetime(2026, 3, 4, 16))
    assert usage_window("day", at) == (datetime(2026, 3, 4), datetime(2026, 3, 5))
    assert usage_window("week", at) == (datetime(2026, 3, 2), datetime(2026, 3, 9))
    assert usage_window("month", at) == (datetime(2026, 3, 1), datetime(2026, 4, 1))
    assert usage_window("year", at) == (datetime(2026, 1, 1), datetime(2027, 1, 1))
    assert usage_window("never", at)[0] <= at < usage_window("never", at)[1]
    period = (datetime(2026, 2, 15), datetime(2026, 3, 15))
    assert usage_window("billing_period", at, period) == period
    assert usage_window("billing_period", at) == usage_window("month", at)  # no subscription
    assert add_months(datetime(2026, 1, 31), 1) == datetime(2026, 2, 28)
    assert add_months(datetime(2028, 1, 31), 1) == datetime(2028, 2, 29)
    assert add_months(datetime(2026, 12, 15), 1) == datetime(2027, 1, 15)
    assert add_months(datetime(2026, 3, 31), 12) == datetime(2027, 3, 31)


def test_decisions() -> None:
    cat = example()
    free, pro = cat.plan("free"), cat.plan("pro")
    # projects on free: limit 3
    d = decide(cat, free, "projects", usage=2, requested=1)
    assert (d.granted, d.reason, d.limit, d.usage, d.remaining) == (True, "granted", 3, 2, 1)
    d = decide(cat, free, "projects", usage=3, requested=1)
    assert (d.granted, d.reason, d.remaining) == (False, "limit_reached", 0)
    assert [o["plan"] for o in d.upgrade_options] == ["pro", "business"]  # cheapest first
    assert d.upgrade_options[0]["monthly_price"] == "39.00"  # 29 flat + one seat at 10
    assert not decide(cat, free, "projects", usage=3).granted  # a plain check at the limit
    assert decide(cat, free, "projects", usage=2).granted
    # a request larger than what is left, though some is left
    assert decide(cat, free, "projects", usage=1, requested=3).reason == "limit_reached"
    # boolean and config
    d = decide(cat, free, "sso")
    assert (d.granted, d.reason) == (False, "not_in_plan")
    assert [o["plan"] for o in d.upgrade_options] == ["business"]
    assert decide(cat, pro, "exports").granted and decide(cat, pro, "max_file_size_mb").value == 100
    # soft limit: allowed past it, flagged
    d = decide(cat, pro, "api_calls", usage=100_000, requested=5)
    assert (d.granted, d.reason, d.soft_limit) == (True, "soft_limit_exceeded", True)
    # unlimited on business
    assert decide(cat, cat.plan("business"), "projects", usage=10**9, requested=1).granted
    assert decide(cat, None, "exports").reason == "not_in_plan"
    assert decide(cat, pro, "nope").reason == "unknown_feature"
    # upgrade options skip plans whose limit is still too small
    d = decide(cat, free, "projects", usage=3, requested=60)
    assert [o["plan"] for o in d.upgrade_options] == ["business"]


def test_upgrade_triggers() -> None:
    assert crossed(10, 7, 8) == ["$limit_approaching"]
    assert crossed(10, 8, 9) == []  # already past 80%
    assert crossed(10, 9, 10) == ["$limit_reached"]
    assert crossed(10, 7, 10) == ["$limit_reached"]  # straight to the wall
    assert crossed(10, 10, 11) == [] and crossed(None, 0, 100) == [] and crossed(10, 5, 5) == []
    assert crossed(100, 79, 80, share=0.8) == ["$limit_approaching"]


def bad(doc: Mapping[str, Any]) -> str:
    with pytest.raises(ValidationError) as e:
        Catalog.model_validate(doc)
    return str(e.value)


def test_catalog_errors_name_the_problem_and_where() -> None:
    base = yaml.safe_load(EXAMPLE.read_text())
    gap = {**base, "plans": base["plans"] + [{"key": "x", "prices": [{"usage": [{"feature": "api_calls", "model": "graduated",
        "tiers": [{"up_to": 100, "unit_price": 0}, {"from": 150, "unit_price": 1}]}]}]}]}  # fmt: skip
    msg = bad(gap)
    assert "gap before tier 2" in msg and "plans.3.prices.0.usage.0" in msg
    msg = bad({**base, "plans": base["plans"] + [{"key": "y", "prices": [{"usage": [{"feature": "api_calls",
        "model": "volume", "tiers": [{"up_to": 100, "unit_price": 0}]}]}]}]})  # fmt: skip
    assert "open-ended" in msg
    assert "currency" in bad({**base, "currency": "usd"})
    assert "no feature 'teleport'" in bad(
        {**base, "plans": [{"key": "p", "kind": "free", "features": {"teleport": {}}}]}
    )
    assert "defined twice" in bad({**base, "features": base["features"] + [base["features"][0]]})
    assert "only metered features have limits" in bad(
        {**base, "plans": [{"key": "p", "kind": "free", "features": {"sso": {"limit": 3}}}]}
    )
    assert "a free plan has no prices" in bad(
        {**base, "plans": [{"key": "p", "kind": "free", "prices": [{"flat": 5}]}]}
    )
    assert "needs value_property" in bad(
        {**base, "meters": [{"key": "m", "event": "e", "aggregation": "SUM"}]}
    )
    assert "greater than or equal to 0" in bad(
        {**base, "plans": [{"key": "p", "prices": [{"flat": -1}]}]}
    )
    assert "overage_price needs soft" in bad(
        {
            **base,
            "plans": [
                {
                    "key": "p",
                    "prices": [{"flat": 1}],
                    "features": {"api_calls": {"limit": 5, "overage_price": 1}},
                }
            ],
        }
    )
    assert "String should match pattern" in bad(
        {**base, "plans": [{"key": "Pro Plan", "prices": [{"flat": 1}]}]}
    )


# -- meters ------------------------------------------------------------------------------------


def test_meter_matching_and_values() -> None:
    m = Meter(key="tokens", event="ai_called", value_property="$.usage.tokens", aggregation="SUM",
              filters={"model": "large"})  # fmt: skip
    assert matches(m, "ai_called", {"model": "large"})
    assert not matches(m, "ai_called", {"model": "small"}) and not matches(
        m, "other", {"model": "large"}
    )
    assert not matches(
        Meter(key="a", event="e", filters={"n": 1}), "e", {"n": True}
    )  # no bool/int mixing
    assert value_of(m, {"usage": {"tokens": 12.5}}) == D("12.5")
    for props in ({}, {"usage": {}}, {"usage": {"tokens": "x"}}, {"usage": {"tokens": True}},
                  {"usage": {"tokens": "nan"}}, {"usage": 3}):  # fmt: skip
        assert value_of(m, props) is None
    u = Meter(key="u", event="e", value_property="$.user", aggregation="UNIQUE_COUNT")
    assert value_of(u, {"user": 7}) == "7" and value_of(u, {"user": [1]}) is None


EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["e", "other"]),
            "properties": st.fixed_dictionaries(
                {},
                optional={
                    "v": st.one_of(
                        st.integers(-50, 50),
                        st.floats(-10, 10, allow_nan=False).map(lambda f: round(f, 3)),
                        st.text(max_size=2),
                        st.none(),
                        st.booleans(),
                    ),
                    "kind": st.sampled_from(["a", "b"]),
                },
            ),
            "offset": st.integers(0, 5),
        }
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(EVENTS, st.sampled_from(["COUNT", "SUM", "MAX", "UNIQUE_COUNT", "LATEST"]), st.randoms())
def test_running_values_equal_a_recomputation_in_any_order(
    events: list[dict[str, Any]], agg: str, rnd: Any
) -> None:
    """What the reactor keeps (fed in arrival order, possibly shuffled, possibly twice over a
    redelivery it must skip) equals the aggregate over the log, computed independently here."""
    meter = Meter(key="m", event="e", aggregation=agg,  # type: ignore[arg-type]
                  value_property=None if agg == "COUNT" else "$.v", filters={"kind": "a"})  # fmt: skip
    t0 = datetime(2026, 3, 1)
    log = [
        {**ev, "timestamp": t0 + timedelta(minutes=ev["offset"]), "seq": i + 1}
        for i, ev in enumerate(events)
    ]
    # the independent answer, from first principles
    chosen = [ev for ev in log if ev["name"] == "e" and ev["properties"].get("kind") == "a"]

    def num(v: Any) -> Decimal | None:
        if isinstance(v, bool) or v is None:
            return None
        try:
            d = Decimal(str(v))
        except Exception:
            return None
        return d if d.is_finite() else None

    if agg == "COUNT":
        expected = D(len(chosen))
    elif agg == "UNIQUE_COUNT":
        expected = D(
            len(
                {
                    str(ev["properties"]["v"])
                    for ev in chosen
                    if ev["properties"].get("v") is not None
                }
            )
        )
    else:
        vals = [(ev["timestamp"], ev["seq"], num(ev["properties"].get("v"))) for ev in chosen]
        vals = [x for x in vals if x[2] is not None]
        if agg == "SUM":
            expected = sum((x[2] for x in vals), D(0))  # type: ignore[misc]
        elif agg == "MAX":
            expected = max((x[2] for x in vals), default=D(0))  # type: ignore[type-var]
        else:
            expected = max(vals, key=lambda x: (x[0], x[1]))[2] if vals else D(0)  # type: ignore[assignment]
    assert aggregate(meter, log) == expected
    shuffled = log[:]
    rnd.shuffle(shuffled)
    run = Running(agg)
    seen: set[int] = set()
    for ev in shuffled + shuffled[: len(shuffled) // 2]:  # a redelivery of half
        if ev["seq"] in seen:
            continue
        seen.add(ev["seq"])
        if matches(meter, ev["name"], ev["properties"]):
            v = value_of(meter, ev["properties"])
            if v is not None:
                run.add(v, ev["timestamp"], ev["seq"])
    assert run.value == expected


# -- the subscription lifecycle --------------------------------------------------------------

from traction.billing.domain.subscriptions import (  # noqa: E402
    SubState,
    advance,
    cancel,
    change_plan,
    change_seats,
    mrr,
    reactivate,
)


def on(plan: str, status: str = "active", seats: int = 2, start: datetime = datetime(2026, 3, 1),
       end: datetime = datetime(2026, 4, 1)) -> SubState:  # fmt: skip
    return SubState(plan, 1, "month", status, seats, start, end)


def test_mrr() -> None:
    cat = example()
    assert mrr(on("pro"), cat.plan("pro")) == D(49)  # 29 + 2 seats x 10
    assert mrr(on("business", seats=3), cat.plan("business")) == D(159)  # usage charges are not MRR
    yearly = SubState("pro", 1, "year", "active", 2, datetime(2026, 3, 1), datetime(2027, 3, 1))
    assert mrr(yearly, cat.plan("pro")) == D(490) / 12  # (290 + 2 x 100) / 12
    assert mrr(on("pro", "trialing"), cat.plan("pro")) == 0
    assert mrr(on("pro", "canceled"), cat.plan("pro")) == 0
    assert mrr(on("pro", "past_due"), cat.plan("pro")) == D(49)


def test_upgrade_now_prorated_downgrade_at_period_end() -> None:
    cat = example()
    pro, business = cat.plan("pro"), cat.plan("business")
    assert pro is not None and business is not None
    # March has 31 days; upgrading on the 16th at 00:00 leaves 16/31 of it
    t = change_plan(on("pro"), pro, business, 1, datetime(2026, 3, 16), "USD")
    assert t.name == "plan_upgraded" and t.state.plan_key == "business"
    assert (t.mrr_before, t.mrr_after) == (D(49), D(139))  # 99 + 2 x 20
    assert t.amount_due == round_money((D(139) - D(49)) * D(16) / D(31), "USD") == D("46.45")
    # the other way: scheduled, nothing changes until the period ends
    t = change_plan(on("business"), business, pro, 1, datetime(2026, 3, 16), "USD")
    assert t.name == "plan_downgrade_scheduled" and t.state.plan_key == "business"
    assert t.state.pending_plan_key == "pro" and t.mrr_after == t.mrr_before == D(139)
    steps = advance(t.state, {"business": business, "pro": pro}, {"pro": 1}, cat, "downgrade",
                    datetime(2026, 4, 2))  # fmt: skip
    assert [s.name for s in steps] == ["plan_downgraded"]
    assert steps[0].at == datetime(2026, 4, 1) and steps[0].state.plan_key == "pro"
    assert (steps[0].mrr_before, steps[0].mrr_after) == (D(139), D(49))
    assert steps[0].state.period_end == datetime(2026, 5, 1)
    with pytest.raises(ValueError):
        change_plan(on("pro"), pro, pro, 1, datetime(2026, 3, 16), "USD")


def test_seats_change_at_once_prorated_both_ways() -> None:
    pro = example().plan("pro")
    assert pro is not None
    # 2 -> 5 seats on March 16th: +30 a month, 16/31 of it due now
    t = change_seats(on("pro"), pro, 5, datetime(2026, 3, 16), "USD")
    assert t.name == "seats_changed" and t.state.seats == 5
    assert (t.mrr_before, t.mrr_after) == (D(49), D(79))
    assert t.amount_due == round_money(D(30) * D(16) / D(31), "USD") == D("15.48")
    # 5 -> 2 the same day: the same amount back, as a credit
    back = change_seats(t.state, pro, 2, datetime(2026, 3, 16), "USD")
    assert back.amount_due == D("-15.48") and back.mrr_after == D(49)
    # during a trial nothing is due and no MRR moves
    trial = change_seats(on("pro", "trialing"), pro, 4, datetime(2026, 3, 16), "USD")
    assert (trial.mrr_before, trial.mrr_after, trial.amount_due) == (0, 0, 0)
    for bad in (2, 0, 100_001):
        with pytest.raises(ValueError):
            change_seats(on("pro"), pro, bad, datetime(2026, 3, 16), "USD")


def test_buying_the_trials_own_plan_converts_it_now() -> None:
    pro = example().plan("pro")
    assert pro is not None
    trial = on("pro", "trialing", start=datetime(2026, 3, 1), end=datetime(2026, 3, 15))
    t = change_plan(trial, pro, pro, 1, datetime(2026, 3, 10, 9), "USD")
    assert t.name == "trial_converted" and t.state.status == "active"
    assert (t.state.period_start, t.state.period_end) == (
        datetime(2026, 3, 10, 9),
        datetime(2026, 4, 10, 9),
    )
    assert (t.mrr_before, t.mrr_after, t.amount_due) == (0, D(49), D(49))


def test_cancel_keeps_mrr_until_the_period_ends_and_can_be_undone() -> None:
    cat = example()
    pro = cat.plan("pro")
    assert pro is not None
    t = cancel(on("pro"), pro, datetime(2026, 3, 10))
    assert t.name == "subscription_cancel_scheduled" and t.state.status == "active"
    assert t.mrr_after == D(49)
    assert reactivate(t.state, pro, datetime(2026, 3, 11)).state.cancel_at_period_end is False
    steps = advance(t.state, {"pro": pro}, {}, cat, "downgrade", datetime(2026, 6, 1))
    assert [s.name for s in steps] == ["subscription_ended"]
    assert steps[0].at == datetime(2026, 4, 1) and steps[0].mrr_after == 0
    assert steps[0].state.status == "canceled"
    with pytest.raises(ValueError):
        reactivate(steps[0].state, pro, datetime(2026, 6, 1))


def test_renewals_and_trials() -> None:
    cat = example()
    pro = cat.plan("pro")
    assert pro is not None
    # three renewals from March 31: month ends are kept from the anchor where they exist
    s = on("pro", start=datetime(2026, 3, 31), end=datetime(2026, 4, 30))
    steps = advance(s, {"pro": pro}, {}, cat, "downgrade", datetime(2026, 7, 1))
    assert [x.at for x in steps] == [
        datetime(2026, 4, 30),
        datetime(2026, 5, 30),
        datetime(2026, 6, 30),
    ]
    assert all(x.name == "subscription_renewed" and x.amount_due == D(49) for x in steps)
    trial = on("pro", "trialing", start=datetime(2026, 3, 1), end=datetime(2026, 3, 15))
    trial = SubState(**{**trial.__dict__, "trial_end": datetime(2026, 3, 15)})
    # a trial that converts: paid from its end
    steps = advance(trial, {"pro": pro}, {}, cat, "convert", datetime(2026, 3, 20))
    assert [(x.name, x.mrr_before, x.mrr_after) for x in steps] == [("trial_converted", 0, D(49))]
    assert steps[0].state.period_end == datetime(2026, 4, 15)
    # a trial that downgrades: onto the free plan
    steps = advance(trial, {"pro": pro}, {"free": 1}, cat, "downgrade", datetime(2026, 3, 20))
    assert steps[0].name == "trial_ended" and steps[0].state.plan_key == "free"
    # buying during the trial: active at once, a full period from now
    t = change_plan(trial, pro, cat.plan("business"), 1, datetime(2026, 3, 5), "USD")  # type: ignore[arg-type]
    assert t.state.status == "active" and t.state.period_start == datetime(2026, 3, 5)
    assert t.amount_due == D(139) and t.mrr_before == 0
    # cancelling a trial ends it at once
    assert cancel(trial, pro, datetime(2026, 3, 5)).state.status == "canceled"


# -- revenue metrics ---------------------------------------------------------------------------

from traction.billing.domain.revenue import Change, monthly, movements  # noqa: E402


def history() -> list[Change]:
    """Three accounts over six months (figures worked out by hand in the test below)."""

    def c(acc: str, sub: str, m: int, d: int, before: int, after: int) -> Change:
        return Change(acc, sub, datetime(2026, m, d), D(before), D(after))

    return [
        c("A", "a1", 1, 5, 0, 50), c("A", "a1", 2, 10, 50, 80), c("A", "a1", 4, 1, 80, 0),
        c("A", "a2", 6, 3, 0, 30),                      # back, on a new subscription
        c("B", "b1", 1, 20, 0, 100), c("B", "b2", 2, 15, 0, 20),  # a second subscription
        c("B", "b1", 3, 1, 100, 0),                     # b2 still pays: contraction, not churn
        c("B", "b2", 3, 20, 20, 0),                     # now churn
        c("C", "c1", 2, 1, 0, 0), c("C", "c1", 2, 15, 0, 40),  # a trial, then converted
    ]  # fmt: skip


def test_mrr_movements_by_chartmogul_rules() -> None:
    got = [(m.account, m.at.month, m.kind, m.amount) for m in movements(history())]
    assert got == [
        ("A", 1, "new", D(50)), ("B", 1, "new", D(100)), ("A", 2, "expansion", D(30)),
        ("B", 2, "expansion", D(20)), ("C", 2, "new", D(40)), ("B", 3, "contraction", D(-100)),
        ("B", 3, "churn", D(-20)), ("A", 4, "churn", D(-80)), ("A", 6, "reactivation", D(30)),
    ]  # fmt: skip


def test_monthly_revenue_metrics() -> None:
    months = {
        m.month.month: m for m in monthly(movements(history()), date(2026, 1, 1), date(2026, 6, 1))
    }
    jan, feb, mar, apr, may, jun = (months[i] for i in range(1, 7))
    assert (jan.mrr_start, jan.moves["new"], jan.mrr_end, jan.customers_end) == (0, 150, 150, 2)
    assert jan.net_revenue_retention is None and jan.arr == D(1800)
    assert (feb.mrr_start, feb.moves["expansion"], feb.moves["new"], feb.mrr_end) == (
        150,
        50,
        40,
        240,
    )
    assert feb.net_revenue_retention == D(200) / D(150) and feb.gross_revenue_retention == 1
    assert feb.quick_ratio is None  # nothing lost
    assert (mar.mrr_start, mar.moves["contraction"], mar.moves["churn"], mar.mrr_end) == (
        240,
        -100,
        -20,
        120,
    )
    assert mar.net_revenue_retention == D("0.5") == mar.gross_revenue_retention
    assert mar.customer_churn_rate == D(1) / D(3) and mar.revenue_churn_rate == D("0.5")
    assert mar.quick_ratio == 0 and mar.customers_end == 2
    assert (apr.mrr_start, apr.moves["churn"], apr.mrr_end, apr.customer_churn_rate) == (
        120,
        -80,
        40,
        D("0.5"),
    )
    assert apr.arpa == 40 and apr.ltv(D("0.8")) == D(64)  # 40 x 0.8 / 0.5
    assert (may.mrr_start, may.mrr_end, may.ltv(D("0.8"))) == (40, 40, None)  # no churn: no LTV
    assert (jun.moves["reactivation"], jun.mrr_end, jun.customers_end) == (30, 70, 2)
    # a window that starts later carries the history in
    (only_may,) = monthly(movements(history()), date(2026, 5, 1), date(2026, 5, 31))
    assert only_may.mrr_start == 40 and only_may.customers_start == 1


def test_trailing_twelve_month_retention() -> None:
    """A pays 100 from Jan 2025 and expands to 150 in Sep; B pays 50 from Jan 2025 and churns
    in Jun; C arrives in Nov. A year after Jan 2025: base A + B = 150; now A 150 + B 0 ->
    NRR 150/150 = 1; GRR (min(150, 100) + 0) / 150 = 2/3. C is not in the base."""
    ch = [
        Change("A", "a", datetime(2025, 1, 10), D(0), D(100)),
        Change("B", "b", datetime(2025, 1, 12), D(0), D(50)),
        Change("B", "b", datetime(2025, 6, 1), D(50), D(0)),
        Change("A", "a", datetime(2025, 9, 1), D(100), D(150)),
        Change("C", "c", datetime(2025, 11, 5), D(0), D(80)),
    ]
    months = monthly(movements(ch), date(2025, 12, 1), date(2026, 1, 31))
    dec, jan = months
    assert dec.nrr_12m is None  # Dec 2024: nobody paid yet
    assert jan.nrr_12m == 1 and jan.grr_12m == D(100) / D(150)
    assert jan.mrr_end == D(230)
