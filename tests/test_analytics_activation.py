"""Activation and time to first value: hand-built fixtures and a Python reference on simulator data."""

from __future__ import annotations

import collections
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tests.test_analytics_funnel import Fixture, simulated  # noqa: F401  (shared fixture)
from traction.analytics.domain.specs import ActivationSpec, EventMatcher
from traction.analytics.service import AnalyticsService
from traction.context import Context

H = 60  # minutes


def spec(criteria: dict[str, Any], **kw: Any) -> ActivationSpec:
    return ActivationSpec.model_validate({
        "start_event": {"event": "signed_up"}, "criteria": criteria, "window_days": 7,
        "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"}, "interval": "month", **kw,
    })  # fmt: skip


def ev(name: str, n: int = 1) -> dict[str, Any]:
    return {"event": {"event": name}, "at_least": n}


PROJECT_AND_INVITE = {"all": [ev("project_created"), ev("teammate_invited")]}


@pytest.fixture
def fx(sqlite_ctx: Context) -> Fixture:
    f = Fixture(sqlite_ctx)
    day = 24 * H
    plan = {
        "fast": [("signed_up", 0), ("project_created", H), ("teammate_invited", 2 * H)],
        "late-invite": [("signed_up", 0), ("project_created", H), ("teammate_invited", 8 * day)],
        "any-order": [("signed_up", 0), ("teammate_invited", H), ("project_created", H / 2)],
        "before-signup": [("project_created", -H), ("signed_up", 0), ("teammate_invited", H)],
        "twice": [
            ("signed_up", 0),
            ("signed_up", 3 * day),
            ("project_created", 7 * day),
            ("teammate_invited", 7 * day),
        ],
        "reports": [("signed_up", 0), ("report_created", H), ("report_created", 3 * H)],
    }
    for who, events in plan.items():
        for name, minutes in events:
            f.send(who, name, minutes)
    return f


def test_project_and_invite_within_7_days(fx: Fixture) -> None:
    r = fx.svc.activation(fx.ws, spec(PROJECT_AND_INVITE))
    assert (r.size, r.activated) == (6, 3)  # fast, any-order, twice (exactly on the 7-day edge)
    assert r.ttfv_seconds == [3600.0, 7200.0, 7 * 86400.0]
    assert r.ttfv(0.5) == 7200.0
    assert r.ttfv(0.9) == pytest.approx(7200 + 0.8 * (7 * 86400 - 7200))


def test_counts_any_and_nesting(fx: Fixture) -> None:
    assert fx.svc.activation(fx.ws, spec({"all": [ev("report_created", 2)]})).activated == 1
    assert fx.svc.activation(fx.ws, spec({"all": [ev("report_created", 3)]})).activated == 0
    assert (
        fx.svc.activation(
            fx.ws, spec({"any": [ev("teammate_invited"), ev("report_created", 2)]})
        ).activated
        == 5
    )
    nested = {
        "all": [ev("project_created"), {"any": [ev("teammate_invited"), ev("report_created", 2)]}]
    }
    assert fx.svc.activation(fx.ws, spec(nested)).activated == 3
    any_r = fx.svc.activation(
        fx.ws, spec({"any": [ev("teammate_invited"), ev("report_created", 2)]})
    )
    assert 3 * 3600.0 in any_r.ttfv_seconds  # 'reports' activated at its second report


def test_onboarding_checklist_as_a_funnel(fx: Fixture) -> None:
    steps = [EventMatcher(event="project_created"), EventMatcher(event="teammate_invited")]
    r = fx.svc.onboarding(fx.ws, spec(PROJECT_AND_INVITE), steps)
    # in order from sign-up within 7 days: project by fast, late-invite, any-order (30 min, before
    # its invite) and twice; then the invite by fast, any-order and twice (late-invite's is too late)
    assert [s.entered for s in r.steps] == [6, 4, 3]


def test_invalid_activation_specs() -> None:
    with pytest.raises(ValidationError, match="at_least"):
        spec({"all": [ev("x", 0)]})
    with pytest.raises(ValidationError, match="window_days"):
        spec(PROJECT_AND_INVITE, window_days=0)
    with pytest.raises(ValidationError, match="at most 20"):
        spec(
            {"all": [ev(f"e{i}") for i in range(15)] + [{"any": [ev(f"f{i}") for i in range(10)]}]}
        )


def reference(
    rows: list[dict[str, Any]], d_from: date, d_to: date
) -> tuple[dict[date, tuple[int, int]], list[float]]:
    """The issue's example, weekly cohorts, UTC, plain Python."""
    by: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        by[r["person_id"]].append(r)
    cohorts: dict[date, list[int]] = collections.defaultdict(lambda: [0, 0])
    ttfv: list[float] = []
    for evs in by.values():
        evs.sort(key=lambda r: (r["timestamp"], r["seq"]))
        starts = [i for i, r in enumerate(evs) if r["name"] == "signed_up"]
        if not starts:
            continue
        i0 = starts[0]
        t0 = evs[i0]["timestamp"]
        if not d_from <= t0.date() <= d_to:
            continue
        week = t0.date() - timedelta(days=t0.weekday())
        cohorts[week][0] += 1
        seen: dict[str, datetime] = {}
        for r in evs[i0 + 1 :]:
            if r["timestamp"] > t0 + timedelta(days=7):
                break
            if r["name"] in ("project_created", "teammate_invited"):
                seen.setdefault(r["name"], r["timestamp"])
        if len(seen) == 2:
            cohorts[week][1] += 1
            ttfv.append((max(seen.values()) - t0).total_seconds())
    return {c: (n, a) for c, (n, a) in cohorts.items()}, sorted(ttfv)


def test_matches_reference_on_simulated_product(simulated) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx, ws, rows = simulated
    s = spec(
        PROJECT_AND_INVITE,
        range={"date_from": "2026-07-01", "date_to": "2026-08-10"},
        interval="week",
    )
    got = AnalyticsService(ctx.events, ctx.workspaces).activation(ws, s)
    expected_cohorts, expected_ttfv = reference(rows, date(2026, 7, 1), date(2026, 8, 10))
    assert {c.start: (c.size, c.activated) for c in got.cohorts} == expected_cohorts
    assert got.ttfv_seconds == pytest.approx(expected_ttfv)
    assert got.activated > 10


def test_activation_over_http(server) -> None:  # type: ignore[no-untyped-def]
    from traction.ingest.domain import normalize_segment

    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(ws.id, [
        {"type": "track", "userId": "u", "event": "signed_up", "timestamp": "2026-03-02T10:00:00Z", "messageId": "1"},
        {"type": "track", "userId": "u", "event": "project_created", "timestamp": "2026-03-02T10:30:00Z", "messageId": "2"},
        {"type": "track", "userId": "u", "event": "teammate_invited", "timestamp": "2026-03-02T11:00:00Z", "messageId": "3"},
    ], normalize_segment)  # fmt: skip
    body = spec(PROJECT_AND_INVITE).model_dump(mode="json")
    with server.client() as c:
        r = c.post(
            "/api/v1/insights/activation",
            json=body,
            headers={"Authorization": f"Bearer {ws.secret_key}"},
        )
        assert r.status_code == 200, r.text
        # the 7-day window is open at the latest event: no rate yet, the cohort says so
        assert r.json()["rate"] is None and r.json()["ttfv_seconds"]["median"] == 3600.0
        assert r.json()["cohorts"][0]["complete"] is False
        later = {"type": "track", "userId": "v", "event": "x", "timestamp": "2026-03-20T00:00:00Z"}
        server.ctx.ingest.ingest_sync(ws.id, [later], normalize_segment)
        r = c.post(
            "/api/v1/insights/activation",
            json=body,
            headers={"Authorization": f"Bearer {ws.secret_key}"},
        )
        assert r.json()["rate"] == 1.0 and r.json()["cohorts"][0]["complete"] is True


def test_recent_cohorts_say_their_window_is_open(sqlite_ctx: Context) -> None:
    f = Fixture(sqlite_ctx)
    f.send_at("early", "signed_up", "2026-03-02T10:00:00Z")
    f.send_at("late", "signed_up", "2026-03-28T10:00:00Z")
    f.send_at("late", "x", "2026-03-30T10:00:00Z")  # the latest event: late's 7 days are not over
    r = f.svc.activation(f.ws, spec(PROJECT_AND_INVITE))  # monthly: one cohort, with late in it
    assert [c.window_open for c in r.cohorts] == [True]
    weekly = f.svc.activation(f.ws, spec(PROJECT_AND_INVITE, interval="week"))
    assert [(c.start.isoformat(), c.window_open) for c in weekly.cohorts] == [
        ("2026-03-02", False),
        ("2026-03-23", True),
    ]
