"""Trends: hand-built fixtures and a pandas reference on simulator data."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from tests.test_analytics_funnel import Fixture, simulated  # noqa: F401  (shared fixture)
from traction.analytics.domain.specs import TrendSpec
from traction.analytics.service import AnalyticsService
from traction.context import Context
from traction.ingest.domain import normalize_segment


def trend(fx: Fixture, **kw: Any) -> list[tuple[str, list[float], list[float] | None]]:
    base: dict[str, Any] = {
        "series": [{"event": {"event": "buy"}}],
        "range": {"date_from": "2026-03-02", "date_to": "2026-03-04"},
    }
    r = fx.svc.trend(fx.ws, TrendSpec.model_validate({**base, **kw}))
    return [(line.label, [v for _, v in line.points], line.previous) for line in r.lines]


@pytest.fixture
def fx(sqlite_ctx: Context) -> Fixture:
    f = Fixture(sqlite_ctx)
    f.send_at("ann", "buy", "2026-03-02T10:00:00Z", amount=10, plan="pro")
    f.send_at("ann", "buy", "2026-03-02T11:00:00Z", amount=30, plan="pro")
    f.send_at("bob", "buy", "2026-03-02T12:00:00Z", amount=20, plan="free")
    f.send_at("bob", "buy", "2026-03-04T12:00:00Z", amount=5)
    f.send_at(
        "cem", "buy", "2026-03-01T12:00:00Z", amount=7, plan="pro"
    )  # the day before: previous period
    f.send_at("cem", "view", "2026-03-02T12:00:00Z")
    return f


def test_counts_uniques_and_zero_filled_days(fx: Fixture) -> None:
    assert trend(fx) == [("buy", [3.0, 0.0, 1.0], None)]
    assert trend(fx, series=[{"event": {"event": "buy"}, "math": "unique_persons"}]) == [
        ("buy (unique_persons)", [2.0, 0.0, 1.0], None)
    ]


def test_property_math(fx: Fixture) -> None:
    def one(math: str) -> list[float]:
        return trend(
            fx, series=[{"event": {"event": "buy"}, "math": math, "math_property": "amount"}]
        )[0][1]

    assert one("sum") == [60.0, 0.0, 5.0]
    assert one("avg") == [20.0, 0.0, 5.0]
    assert one("max") == [30.0, 0.0, 5.0]
    assert one("p50") == [20.0, 0.0, 5.0]


def test_breakdown_top_n_other_and_missing(fx: Fixture) -> None:
    lines = trend(fx, breakdown="plan", breakdown_limit=1)
    assert lines == [("buy: pro", [2.0, 0.0, 0.0], None), ("buy: other", [1.0, 0.0, 1.0], None)]
    lines = trend(fx, breakdown="plan", breakdown_limit=5)
    assert {label: ys for label, ys, _ in lines} == {
        "buy: pro": [2.0, 0.0, 0.0],
        "buy: free": [1.0, 0.0, 0.0],
        "buy: $none": [0.0, 0.0, 1.0],
    }


def test_compare_previous_period(fx: Fixture) -> None:
    # previous period of Mar 2-4 is Feb 27 - Mar 1
    assert trend(fx, compare_previous=True) == [("buy", [3.0, 0.0, 1.0], [0.0, 0.0, 1.0])]


def test_filters_and_time_zone(sqlite_ctx: Context) -> None:
    fx = Fixture(sqlite_ctx, tz="Asia/Tokyo")  # UTC+9
    fx.send_at("ann", "buy", "2026-03-01T16:00:00Z", amount=1)  # Mar 2, 01:00 in Tokyo
    fx.send_at("ann", "buy", "2026-03-02T16:00:00Z", amount=100)  # Mar 3, 01:00 in Tokyo
    assert trend(fx)[0][1] == [1.0, 1.0, 0.0]
    f = [{"property": "amount", "operator": "gt", "value": 50}]
    assert trend(fx, series=[{"event": {"event": "buy", "filters": f}}])[0][1] == [0.0, 1.0, 0.0]


def test_weekly_and_hourly_buckets(fx: Fixture) -> None:
    assert trend(fx, interval="week", range={"date_from": "2026-02-23", "date_to": "2026-03-08"})[
        0
    ][1] == [1.0, 4.0]
    hourly = trend(fx, interval="hour", range={"date_from": "2026-03-02", "date_to": "2026-03-02"})[
        0
    ][1]
    assert len(hourly) == 24 and hourly[10:13] == [1.0, 1.0, 1.0] and sum(hourly) == 3


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"series": []}, "series"),
        ({"series": [{"event": {"event": "x"}, "math": "sum"}]}, "needs math_property"),
        ({"series": [{"event": {"event": "x"}, "math": "median"}]}, "math"),
        (
            {"series": [{"event": {"event": "x"}}], "breakdown": "plan", "breakdown_limit": 50},
            "breakdown_limit",
        ),
        (
            {
                "series": [{"event": {"event": "x"}}],
                "interval": "hour",
                "range": {"date_from": "2026-01-01", "date_to": "2026-03-01"},
            },
            "31 days",
        ),
    ],
)
def test_invalid_trend_specs(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        TrendSpec.model_validate(
            {"range": {"date_from": "2026-01-01", "date_to": "2026-01-02"}, **spec}
        )


def test_matches_pandas_on_simulated_product(simulated) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx, ws, rows = simulated
    df = pd.DataFrame(rows)
    df = df[
        (df["name"] == "feature_used")
        & (df["timestamp"] >= datetime(2026, 7, 10))
        & (df["timestamp"] < datetime(2026, 7, 24))
    ]
    df = df.assign(
        day=df["timestamp"].dt.floor("D"),
        feature=df["properties"].map(lambda p: json.loads(p).get("feature")),
    )
    expected = df.groupby(["feature", "day"])["person_id"].nunique()
    spec = TrendSpec.model_validate({
        "series": [{"event": {"event": "feature_used"}, "math": "unique_persons"}],
        "range": {"date_from": "2026-07-10", "date_to": "2026-07-23"}, "breakdown": "feature", "breakdown_limit": 10,
    })  # fmt: skip
    result = AnalyticsService(ctx.events, ctx.workspaces).trend(ws, spec)
    got = {(line.breakdown, t): v for line in result.lines for t, v in line.points if v}
    want = {(f, d.to_pydatetime()): float(n) for (f, d), n in expected.items()}
    assert got == want and len(want) > 30
    assert {line.breakdown for line in result.lines} == set(df["feature"])
    assert date(2026, 7, 10) == result.lines[0].points[0][0].date()


def test_trend_over_http(server) -> None:  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(
        ws.id,
        [
            {
                "type": "track",
                "userId": "u",
                "event": "buy",
                "timestamp": "2026-03-02T10:00:00Z",
                "messageId": "1",
            }
        ],
        normalize_segment,
    )
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    body = {
        "series": [{"event": {"event": "buy"}}],
        "range": {"date_from": "2026-03-01", "date_to": "2026-03-02"},
    }
    with server.client() as c:
        r = c.post("/api/v1/insights/trend", json=body, headers=auth)
        assert r.status_code == 200 and r.json()["lines"][0]["y"] == [0.0, 1.0]
        bad = c.post(
            "/api/v1/insights/trend",
            json={**body, "breakdown": "plan", "breakdown_limit": 50},
            headers=auth,
        )
        assert bad.status_code == 422 and "breakdown_limit" in bad.json()["error"]


def test_queries_have_a_time_limit_and_a_row_cap(fx: Fixture, server) -> None:  # type: ignore[no-untyped-def]
    from traction.analytics.service import QueryTooExpensive

    spec = TrendSpec.model_validate(
        {
            "series": [{"event": {"event": "buy"}}],
            "range": {"date_from": "2026-03-01", "date_to": "2026-03-04"},
            "breakdown": "plan",
        }
    )
    capped = AnalyticsService(fx.ctx.events, fx.ctx.workspaces, max_rows=1)
    with pytest.raises(QueryTooExpensive, match="more than 1 rows"):
        capped.trend(fx.ws, spec)
    # a heavy query (a large generated cross join) and a tiny limit: interrupted, clear error
    slow = AnalyticsService(fx.ctx.events, fx.ctx.workspaces, timeout_seconds=0.05)
    with pytest.raises(QueryTooExpensive, match=r"longer than 0\.05 s"):
        slow._rows(
            "SELECT count(*) FROM range(100000000) a, range(1000) b WHERE a.range % 7 = b.range", {}
        )
    # and over HTTP it is a 422 that says what to do
    server.ctx.analytics.max_rows = 0
    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(
        ws.id,
        [{"type": "track", "userId": "u", "event": "buy", "timestamp": "2026-03-02T10:00:00Z"}],
        normalize_segment,
    )
    body = {
        "series": [{"event": {"event": "buy"}}],
        "range": {"date_from": "2026-03-01", "date_to": "2026-03-02"},
    }
    with server.client() as c:
        r = c.post(
            "/api/v1/insights/trend",
            json=body,
            headers={"Authorization": f"Bearer {ws.secret_key}"},
        )
    assert r.status_code == 422 and "narrow the date range" in r.json()["error"]


def test_the_people_behind_a_point(fx: Fixture) -> None:
    spec = TrendSpec.model_validate({
        "series": [{"event": {"event": "buy"}}],
        "range": {"date_from": "2026-03-02", "date_to": "2026-03-04"},
    })  # fmt: skip
    pid = {who: fx.ctx.persons.by_distinct_id(fx.ws, who).id for who in ("ann", "bob")}  # type: ignore[union-attr]

    def people(s: TrendSpec, day: int, breakdown: str | None = None) -> list[tuple[str, int]]:
        rows = fx.svc.trend_people(fx.ws, s, 0, datetime(2026, 3, day), breakdown)
        return [(r["actor"], r["events"]) for r in rows]

    # Mar 2: ann bought twice, bob once (cem's Mar 1 purchase is outside the range)
    assert people(spec, 2) == [(pid["ann"], 2), (pid["bob"], 1)]
    assert people(spec, 3) == [] and people(spec, 4) == [(pid["bob"], 1)]
    by_plan = spec.model_copy(update={"breakdown": "plan", "breakdown_limit": 1})
    assert people(by_plan, 2, "pro") == [(pid["ann"], 2)]
    # with one value kept (pro: 2 events), "other" is free and the purchase without a plan
    assert people(by_plan, 2, "$other") == [(pid["bob"], 1)]
    assert people(by_plan, 4, "$other") == [(pid["bob"], 1)]
    with pytest.raises(ValueError, match="series must be between 0 and 0"):
        fx.svc.trend_people(fx.ws, spec, 1, datetime(2026, 3, 2))


def test_trend_people_over_http(server) -> None:  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("T")
    server.ctx.ingest.ingest_sync(ws.id, [
        {"type": "track", "userId": "a", "event": "buy", "timestamp": "2026-03-02T10:00:00Z", "messageId": "1"},
        {"type": "track", "userId": "a", "event": "buy", "timestamp": "2026-03-02T11:00:00Z", "messageId": "2"},
        {"type": "track", "userId": "b", "event": "buy", "timestamp": "2026-03-02T12:00:00Z", "messageId": "3"},
    ], normalize_segment)  # fmt: skip
    spec = {
        "series": [{"event": {"event": "buy"}}],
        "range": {"date_from": "2026-03-01", "date_to": "2026-03-03"},
    }
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    with server.client() as c:
        r = c.post(
            "/api/v1/insights/trend/people?bucket=2026-03-02T00:00:00", json=spec, headers=auth
        )
        assert r.status_code == 200, r.text
        a = server.ctx.persons.by_distinct_id(ws.id, "a").id
        b = server.ctx.persons.by_distinct_id(ws.id, "b").id
        assert r.json() == [{"person_id": a, "events": 2}, {"person_id": b, "events": 1}]
        assert (
            c.post(
                "/api/v1/insights/trend/people?bucket=2026-03-02&series=3", json=spec, headers=auth
            ).status_code
            == 422
        )
        assert (
            c.post(
                "/api/v1/insights/trend/people?bucket=yesterday", json=spec, headers=auth
            ).status_code
            == 422
        )
