"""The simulator: deterministic, valid, and shaped like a real SaaS product.

The shape checks recompute funnels and retention from the emitted messages with a few
lines of plain Python, independent of the simulator's own counters.
"""

from __future__ import annotations

import collections
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.simulate.runner import run_simulation
from traction.simulate.world import SimulationParams, World

PARAMS = SimulationParams(people=3000, days=70, seed=11)


@pytest.fixture(scope="module")
def messages() -> list[dict[str, Any]]:
    return [m for day in World(PARAMS).run() for m in day]


def test_same_seed_same_messages() -> None:
    small = SimulationParams(people=200, days=20, seed=5)
    a = [m for d in World(small).run() for m in d]
    b = [m for d in World(small).run() for m in d]
    c = [m for d in World(SimulationParams(people=200, days=20, seed=6)).run() for m in d]
    assert a == b and a != c


def test_every_message_is_valid_and_ids_are_unique(messages: list[dict[str, Any]]) -> None:
    now = datetime(2030, 1, 1)
    for m in messages:
        normalize_segment(m, now)
    ids = [m["messageId"] for m in messages]
    assert len(ids) == len(set(ids))


def test_messages_are_in_time_order_within_each_day(messages: list[dict[str, Any]]) -> None:
    days = collections.defaultdict(list)
    for m in messages:
        days[m["timestamp"][:10]].append(m["timestamp"])
    assert all(v == sorted(v) for v in days.values())


def _day(m: dict[str, Any]) -> date:
    return date.fromisoformat(m["timestamp"][:10])


def test_funnel_and_retention_look_like_saas(messages: list[dict[str, Any]]) -> None:
    visitors = {m["anonymousId"] for m in messages if m["type"] == "page"}
    signups = {m["userId"]: _day(m) for m in messages if m.get("event") == "signed_up"}
    steps = collections.defaultdict(dict)
    active = collections.defaultdict(set)
    for m in messages:
        if m["type"] == "track" and "userId" in m:
            steps[m["userId"]].setdefault(m["event"], _day(m))
            if m["event"] == "session_started":
                active[m["userId"]].add(_day(m))
    signup_rate = len(signups) / len(visitors)
    assert 0.05 < signup_rate < 0.30

    # activation: project_created and teammate_invited within 7 days of sign-up
    activated = {
        u
        for u, d in signups.items()
        if all(
            e in steps[u] and (steps[u][e] - d).days <= 7
            for e in ("project_created", "teammate_invited")
        )
    }
    assert 0.10 < len(activated) / len(signups) < 0.50

    # onboarding is a funnel: each step reached by fewer people
    reached = [
        sum(1 for u in signups if e in steps[u])
        for e in ("project_created", "data_source_connected", "teammate_invited")
    ]
    assert len(signups) > reached[0] > reached[1]

    def week_retention(users: set[str], week: int) -> float:
        base = [
            u
            for u in users
            if (PARAMS.start.toordinal() + PARAMS.days - signups[u].toordinal()) > 7 * (week + 1)
        ]
        kept = [u for u in base if any((d - signups[u]).days // 7 == week for d in active[u])]
        return len(kept) / max(1, len(base))

    act, rest = activated, set(signups) - activated
    curve = [week_retention(act, w) for w in range(1, 6)]
    assert curve[0] > curve[-1] > 0.15  # decays, then flattens: a habit, not a cliff
    assert week_retention(act, 2) > 2 * week_retention(rest, 2)  # activation predicts retention


def test_growth_virality_and_monetization_happen(messages: list[dict[str, Any]]) -> None:
    per_day = collections.Counter(_day(m) for m in messages if m["type"] == "page")
    days = sorted(per_day)
    assert sum(per_day[d] for d in days[-14:]) > sum(per_day[d] for d in days[:14])
    invited = [m for m in messages if m.get("event") == "signed_up" and m["properties"]["invited"]]
    assert invited, "teammate invites should bring sign-ups"
    referral_visits = [
        m
        for m in messages
        if m["type"] == "page"
        and m.get("context", {}).get("referrer", {}).get("type") == "referral"
    ]
    assert referral_visits
    # the walls of the example catalog: limits reached and features locked, on free plans
    locks = collections.Counter(
        (m["properties"]["feature"], m["properties"]["reason"])
        for m in messages
        if m.get("event") == "$feature_locked"
    )
    for wall in (("projects", "limit_reached"), ("seats", "limit_reached"),
                 ("api_calls", "limit_reached"), ("exports", "not_in_plan")):  # fmt: skip
        assert locks[wall] > 0, wall


def test_purchases_depend_on_the_wall_and_on_activation() -> None:
    """What the parameters put in comes out: a limit converts more than a locked feature
    (10% vs 3% a wall), and activated trial owners buy far more often than the rest."""
    world = World(SimulationParams(people=6000, days=90, seed=4))
    messages = [m for day in world.run() for m in day]
    intents = world.product.intents
    actions = collections.Counter(i.action for i in intents)
    for action in ("trial", "checkout", "seats", "cancel", "downgrade"):
        assert actions[action] > 0, action
    # a wall converts when a checkout follows the first lock of the day within a minute
    checkouts: dict[str, list[datetime]] = collections.defaultdict(list)
    for i in intents:
        if i.action == "checkout":
            checkouts[i.account].append(i.at)
    walls: dict[str, list[bool]] = collections.defaultdict(list)
    for m in messages:
        if m.get("event") == "$feature_locked" and "plan" in m["properties"]:
            at = datetime.fromisoformat(m["timestamp"][:-1])
            bought = any(
                at <= t <= at + timedelta(minutes=1) for t in checkouts[m["properties"]["account"]]
            )
            walls[m["properties"]["reason"]].append(bought)
    limit, locked = (sum(walls[r]) / len(walls[r]) for r in ("limit_reached", "not_in_plan"))
    assert 0.07 < limit < 0.13 and 0.015 < locked < 0.045
    # the plan-gated flag: only people of accounts that had bought see the SSO panel
    bought_by: dict[str, datetime] = {}
    for i in intents:
        if i.action == "checkout":
            bought_by.setdefault(i.account, i.at)
    account_of = {
        m["userId"]: m["groupId"] for m in messages if m["type"] == "group" and "userId" in m
    }
    sso = [
        m
        for m in messages
        if m["type"] == "page" and m["properties"].get("path") == "/app/settings/sso"
    ]
    assert sso
    for m in sso:  # (by day: within a day the simulation moves one person at a time)
        first = bought_by.get(account_of[m["userId"]])
        assert (
            first is not None and first.date() <= datetime.fromisoformat(m["timestamp"][:-1]).date()
        )
    owners = {i.user for i in intents if i.action == "trial"}
    activated = owners & _activated_users(messages)
    buyers = {i.user for i in intents if i.action == "checkout"}
    act_rate = len(buyers & activated) / len(activated)
    rest_rate = len(buyers & (owners - activated)) / len(owners - activated)
    assert act_rate > 3 * rest_rate


def _activated_users(messages: list[dict[str, Any]]) -> set[str]:
    signups = {m["userId"]: _day(m) for m in messages if m.get("event") == "signed_up"}
    first: dict[str, dict[str, date]] = collections.defaultdict(dict)
    for m in messages:
        if m["type"] == "track" and "userId" in m:
            first[m["userId"]].setdefault(m["event"], _day(m))
    return {
        u for u, d in signups.items()
        if all(e in first[u] and (first[u][e] - d).days <= 7 for e in ("project_created", "teammate_invited"))
    }  # fmt: skip


def test_runs_through_the_real_pipeline(sqlite_ctx: Context) -> None:
    ws = sqlite_ctx.workspaces.create_workspace("Sim").id
    stats = run_simulation(sqlite_ctx, ws, SimulationParams(people=300, days=30, seed=2))
    assert sqlite_ctx.events.count(ws) == stats.events
    # every visitor is one person: anonymous ones alone, sign-ups merged with their user id
    assert sqlite_ctx.persons.counts(ws)["persons"] == stats.visitors
    again = run_simulation(sqlite_ctx, ws, SimulationParams(people=300, days=30, seed=2))
    assert sqlite_ctx.events.count(ws) == again.events  # re-running stores nothing twice


def test_ingest_processes_store_the_same_world(sqlite_ctx: Context) -> None:
    """The demo build through ingest processes (each chunk validated and encoded there while
    the next is simulated) stores what it stores in one process, in the same order."""
    from tests.test_ingest_processes import stored

    params = SimulationParams(people=200, days=20, seed=5)
    here = sqlite_ctx.workspaces.create_workspace("Here").id
    there = sqlite_ctx.workspaces.create_workspace("There").id
    a = run_simulation(sqlite_ctx, here, params, chunk=700, processes=0)
    b = run_simulation(sqlite_ctx, there, params, chunk=700, processes=2)
    assert a == b and a.events > 2_000
    rows = stored(sqlite_ctx, there)
    assert stored(sqlite_ctx, here) == rows and len(rows) == a.events


def test_the_days_simulated_ahead_store_the_same_demo(tmp_path: Path) -> None:
    """The demo's first days simulated, validated and encoded in a process of their own
    (until the journeys and the rollout start) store what one process stores, in the same
    order; so do the days after, which the journeys and the rollout act on, and billing."""
    from tests.test_ingest_processes import stored
    from traction.billing.models import Subscription
    from traction.engage.models import Delivery
    from traction.settings import Settings
    from traction.simulate.demo import configure_demo

    params = SimulationParams(
        people=1_500, days=40, seed=8, journeys_days_before_end=12, rollout_days_before_end=8
    )
    seen = []
    for ahead in (False, True):
        ctx = Context.open(Settings(data_dir=tmp_path / str(ahead), log_json=False))
        try:
            ws = ctx.workspaces.create_workspace("Demo").id
            configure_demo(ctx, ws)
            stats = run_simulation(ctx, ws, params, chunk=5_000, ahead=ahead)
            ctx.writer.stop()  # the system events too
            with ctx.state.session() as s:
                deliveries = [(d.journey, d.step, d.status, d.created_at)
                              for d in s.scalars(select(Delivery).order_by(Delivery.id))]  # fmt: skip
                subs = sorted((x.account, x.plan_key, x.status, x.seats, x.period_start)
                              for x in s.scalars(select(Subscription)))  # fmt: skip
            seen.append((stats, _random_ids_named(stored(ctx, ws)), deliveries, subs))
        finally:
            ctx.close()
    (stats, rows, deliveries, subs), ahead_run = seen
    assert stats.events > 50_000 and len(deliveries) > 20 and len(subs) > 20
    assert ahead_run[0] == stats and ahead_run[2] == deliveries and ahead_run[3] == subs
    assert ahead_run[1] == rows


def _random_ids_named(rows: list[tuple[Any, ...]]) -> list[str]:
    """Each row as text, with the ids the engine draws at random (workspaces, subscriptions,
    checkouts, journey runs: they name its own events) replaced by their order of appearance."""
    names: dict[str, str] = {}

    def name(m: re.Match[str]) -> str:
        return names.setdefault(m.group(0), f"<{m.group(1) or 'uuid5'} {len(names)}>")

    rid = re.compile(r"(?<![-\w])(?:(\w+_)?[0-9a-f]{32}|[0-9a-f]{12}|[0-9a-f]{8}-[0-9a-f]{4}-"
                     r"5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12})(?![-\w])")  # fmt: skip
    return [rid.sub(name, repr(r)) for r in rows]


def test_a_failure_in_the_simulation_process_is_reported_with_its_cause() -> None:
    from traction.simulate.ahead import AheadJob, SimulationProcessFailed, run_ahead

    broken = SimulationParams(people=10, days=5, channels=())  # no channel to arrive by
    committed: list[object] = []
    with pytest.raises(SimulationProcessFailed, match=r"(?s)in the simulation process.*Error"):
        run_ahead(AheadJob(broken, 3, 100, 32_768, None), committed.append, lambda d, n: None)
    assert committed == []
