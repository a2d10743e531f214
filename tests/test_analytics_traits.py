"""Filters on person and account traits (as they are now), in every spec that takes matchers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_analytics_funnel import Fixture
from traction.analytics.domain.specs import (
    ActivationSpec,
    FeatureAdoptionSpec,
    FunnelSpec,
    RetentionSpec,
    TrendSpec,
)
from traction.context import Context
from traction.ingest.domain import normalize_segment

R = {"date_from": "2026-03-01", "date_to": "2026-03-31"}
PRO = {"property": "plan", "value": "pro", "source": "person"}
ENTERPRISE = {"property": "tier", "value": "enterprise", "source": "account"}


def send(fx: Fixture, *messages: dict[str, Any]) -> None:
    for m in messages:
        fx.n += 1
        m.setdefault("messageId", f"x{fx.n}")
    assert not fx.ctx.ingest.ingest_sync(fx.ws, list(messages), normalize_segment).rejected


@pytest.fixture
def fx(sqlite_ctx: Context) -> Fixture:
    f = Fixture(sqlite_ctx)
    send(
        f,
        {
            "type": "identify",
            "userId": "ann",
            "traits": {"plan": "pro"},
            "timestamp": "2026-03-01T09:00:00Z",
        },
        {
            "type": "identify",
            "userId": "bob",
            "traits": {"plan": "free"},
            "timestamp": "2026-03-01T09:00:00Z",
        },
        {
            "type": "group",
            "userId": "ann",
            "groupId": "big",
            "traits": {"tier": "enterprise"},
            "timestamp": "2026-03-01T09:01:00Z",
        },
        {
            "type": "group",
            "userId": "bob",
            "groupId": "small",
            "traits": {"tier": "startup"},
            "timestamp": "2026-03-01T09:01:00Z",
        },
    )
    for who in ("ann", "bob"):
        send(
            f,
            {"type": "track", "userId": who, "event": "a", "timestamp": "2026-03-02T10:00:00Z"},
            {"type": "track", "userId": who, "event": "b", "timestamp": "2026-03-03T10:00:00Z"},
        )
    return f


def step(event: str, *filters: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "filters": list(filters)}


def test_funnel_and_trend_by_person_and_account_traits(fx: Fixture) -> None:
    funnel = FunnelSpec.model_validate({"steps": [step("a", PRO), step("b")], "range": R})
    assert [s.entered for s in fx.svc.funnel(fx.ws, funnel).steps] == [1, 1]
    trend = TrendSpec.model_validate({"series": [{"event": step("a", ENTERPRISE)}], "range": R})
    assert sum(line.total for line in fx.svc.trend(fx.ws, trend).lines) == 1
    none = TrendSpec.model_validate(
        {"series": [{"event": step("a", {**PRO, "value": "gold"})}], "range": R}
    )
    assert sum(line.total for line in fx.svc.trend(fx.ws, none).lines) == 0


def test_filters_use_current_traits(fx: Fixture) -> None:
    send(
        fx,
        {
            "type": "identify",
            "userId": "bob",
            "traits": {"plan": "pro"},
            "timestamp": "2026-03-20T09:00:00Z",
        },
    )
    funnel = FunnelSpec.model_validate({"steps": [step("a", PRO), step("b")], "range": R})
    assert [s.entered for s in fx.svc.funnel(fx.ws, funnel).steps] == [2, 2]


def test_merged_person_traits(fx: Fixture) -> None:
    send(
        fx,
        {"type": "track", "anonymousId": "cookie", "event": "a", "timestamp": "2026-03-04T10:00:00Z"},
        {"type": "identify", "anonymousId": "cookie", "userId": "cem", "traits": {"plan": "pro"}, "timestamp": "2026-03-04T10:05:00Z"},
    )  # fmt: skip
    trend = TrendSpec.model_validate(
        {"series": [{"event": step("a", PRO), "math": "unique_persons"}], "range": R}
    )
    assert (
        sum(line.total for line in fx.svc.trend(fx.ws, trend).lines) == 2
    )  # ann, and cem's anonymous event


def test_retention_activation_and_adoption_take_trait_filters(fx: Fixture) -> None:
    ret = RetentionSpec.model_validate(
        {
            "start_event": step("a", PRO),
            "return_event": step("b"),
            "range": R,
            "interval": "day",
            "periods": 1,
        }
    )
    assert [c.retained for c in fx.svc.retention(fx.ws, ret).cohorts] == [[1, 1]]
    act = ActivationSpec.model_validate(
        {
            "start_event": step("a"),
            "criteria": {"all": [{"event": step("b", ENTERPRISE)}]},
            "range": R,
        }
    )
    assert (fx.svc.activation(fx.ws, act).size, fx.svc.activation(fx.ws, act).activated) == (2, 1)
    adoption = FeatureAdoptionSpec.model_validate(
        {
            "range": R,
            "features": [
                step(
                    "b",
                    {
                        "property": "tier",
                        "operator": "in",
                        "value": ["startup"],
                        "source": "account",
                    },
                )
            ],
        }
    )
    assert fx.svc.feature_adoption(fx.ws, adoption).features == [("b", 1)]


def test_traits_mirror_is_backfilled_on_open(fx: Fixture) -> None:
    """Data written before the mirror existed: opening the stores fills it once."""
    ctx = fx.ctx
    cur = ctx.events._con.cursor()
    cur.execute("DELETE FROM person_traits")
    cur.execute("DELETE FROM account_traits")
    assert not ctx.events.traits_mirrored()
    settings = ctx.settings
    ctx.close()
    reopened = Context.open(settings, start_writer=False)
    try:
        assert reopened.events.traits_mirrored()
        from traction.analytics.service import AnalyticsService

        svc = AnalyticsService(reopened.events, reopened.workspaces)
        funnel = FunnelSpec.model_validate({"steps": [step("a", PRO), step("b")], "range": R})
        assert [s.entered for s in svc.funnel(fx.ws, funnel).steps] == [1, 1]
    finally:
        reopened.close()
