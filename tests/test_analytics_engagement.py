"""Sessions, active users, lifecycle and feature adoption: fixtures with known answers, pandas reference."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pandas as pd
import pytest

from tests.test_analytics_funnel import Fixture, simulated  # noqa: F401  (shared fixture)
from traction.analytics.domain.specs import (
    ActiveUsersSpec,
    FeatureAdoptionSpec,
    LifecycleSpec,
    SessionsSpec,
)
from traction.analytics.service import AnalyticsService
from traction.context import Context
from traction.ingest.domain import normalize_segment

R = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


def at(fx: Fixture, who: str, event: str, when: str, kind: str = "track") -> None:
    fx.n += 1
    msg: dict[str, Any] = {"type": kind, "userId": who, "timestamp": when, "messageId": f"e{fx.n}"}
    msg["event" if kind == "track" else "name"] = event
    assert not fx.ctx.ingest.ingest_sync(fx.ws, [msg], normalize_segment).rejected


@pytest.fixture
def fx(sqlite_ctx: Context) -> Fixture:
    return Fixture(sqlite_ctx)


def test_sessions_split_at_the_gap(fx: Fixture) -> None:
    # ann: 10:00 a, 10:10 b, 10:40 b (gap exactly 30 min: same session), 11:20 c (new session)
    for when, e in [("10:00", "a"), ("10:10", "b"), ("10:40", "b"), ("11:20", "c")]:
        at(fx, "ann", e, f"2026-03-02T{when}:00Z")
    at(fx, "ann", "home", "2026-03-02T11:21:00Z", kind="page")  # a page is an event, not a feature
    at(fx, "bob", "a", "2026-02-20T10:00:00Z")  # bob's first session is before the range
    at(fx, "bob", "a", "2026-03-03T10:00:00Z")
    r = fx.svc.sessions(fx.ws, SessionsSpec(range=R))
    assert r.sessions == 3
    assert r.avg_events == pytest.approx((3 + 2 + 1) / 3)
    assert r.avg_duration_seconds == pytest.approx((40 * 60 + 60 + 0) / 3)
    first, second, third = r.first_sessions
    assert (first["actors"], first["avg_events"], first["avg_features"]) == (
        1,
        3.0,
        2.0,
    )  # ann only
    assert (second["actors"], second["avg_events"], second["avg_features"]) == (1, 2.0, 1.0)
    assert third["actors"] == 0 and third["avg_events"] is None
    assert (r.depth_events, r.depth_features) == (2.5, 1.5)
    narrow = fx.svc.sessions(fx.ws, SessionsSpec(range=R, feature_events=["b"]))
    assert narrow.first_sessions[0]["avg_features"] == 1.0


def test_dau_wau_mau(fx: Fixture) -> None:
    at(fx, "ann", "x", "2026-03-01T10:00:00Z")
    at(fx, "ann", "x", "2026-03-08T10:00:00Z")
    at(fx, "bob", "x", "2026-03-08T11:00:00Z")
    at(fx, "cem", "x", "2026-02-10T11:00:00Z")  # 26 days before Mar 8: inside its 30-day window
    r = fx.svc.active_users(
        fx.ws, ActiveUsersSpec(range={"date_from": "2026-03-07", "date_to": "2026-03-08"})
    )
    assert [(d, a, w, m) for d, a, w, m in r.days] == [
        (date(2026, 3, 7), 0, 1, 2),
        (date(2026, 3, 8), 2, 2, 3),
    ]
    assert r.stickiness == pytest.approx((0 / 2 + 2 / 3) / 2)


def test_lifecycle(fx: Fixture) -> None:
    # weeks (Mondays): Mar 2, 9, 16, 23
    for who, day in [
        ("ann", "03-02"),
        ("ann", "03-09"),
        ("ann", "03-23"),
        ("bob", "03-09"),
        ("cem", "02-23"),
        ("cem", "03-16"),
    ]:
        at(fx, who, "x", f"2026-{day}T10:00:00Z")
    r = fx.svc.lifecycle(
        fx.ws, LifecycleSpec(range={"date_from": "2026-03-02", "date_to": "2026-03-29"})
    )
    got = {b.isoformat(): c for b, c in r.buckets}
    assert got["2026-03-02"] == {
        "new": 1,
        "returning": 0,
        "resurrecting": 0,
        "dormant": 1,
    }  # ann new; cem dormant
    assert got["2026-03-09"] == {
        "new": 1,
        "returning": 1,
        "resurrecting": 0,
        "dormant": 0,
    }  # bob new; ann back
    assert got["2026-03-16"] == {
        "new": 0,
        "returning": 0,
        "resurrecting": 1,
        "dormant": 2,
    }  # cem back; ann, bob gone
    assert got["2026-03-23"] == {
        "new": 0,
        "returning": 0,
        "resurrecting": 1,
        "dormant": 1,
    }  # ann back; cem gone


def test_feature_adoption(fx: Fixture) -> None:
    for who, e in [
        ("ann", "export"),
        ("ann", "view"),
        ("bob", "view"),
        ("cem", "view"),
        ("cem", "export"),
    ]:
        at(fx, who, e, "2026-03-02T10:00:00Z")
    at(fx, "dan", "export", "2026-04-02T10:00:00Z")  # out of range
    r = fx.svc.feature_adoption(
        fx.ws, FeatureAdoptionSpec(range=R, features=[{"event": "export"}, {"event": "nothing"}])
    )
    assert r.as_dict() == {
        "active": 3, "any": 2, "any_share": 2 / 3,
        "features": [{"event": "export", "actors": 2, "share": 2 / 3}, {"event": "nothing", "actors": 0, "share": 0.0}],
    }  # fmt: skip


def test_active_users_match_pandas(simulated) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx, ws, rows = simulated
    df = pd.DataFrame(rows)[["person_id", "timestamp"]]
    df["d"] = df["timestamp"].dt.date
    days = [date(2026, 7, 20) + timedelta(days=i) for i in range(10)]

    def active(d: date, n: int) -> int:
        return int(df[(df["d"] > d - timedelta(days=n)) & (df["d"] <= d)]["person_id"].nunique())

    expected = [(d, active(d, 1), active(d, 7), active(d, 30)) for d in days]
    r = AnalyticsService(ctx.events, ctx.workspaces).active_users(
        ws, ActiveUsersSpec(range={"date_from": days[0], "date_to": days[-1]})
    )
    assert r.days == expected and expected[0][1] > 10


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("sessions", {"range": R}),
        ("active-users", {"range": R}),
        ("lifecycle", {"range": R, "interval": "day"}),
        ("feature-adoption", {"range": R, "features": [{"event": "x"}]}),
    ],
)
def test_engagement_over_http(server, path: str, body: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(
        ws.id,
        [
            {
                "type": "track",
                "userId": "u",
                "event": "x",
                "timestamp": "2026-03-02T10:00:00Z",
                "messageId": "1",
            }
        ],
        normalize_segment,
    )
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    with server.client() as c:
        assert c.post(f"/api/v1/insights/{path}", json=body, headers=auth).status_code == 200
        bad = c.post(
            f"/api/v1/insights/{path}", json={**body, "aggregate_by": "company"}, headers=auth
        )
        assert bad.status_code == 422 and "aggregate_by" in bad.json()["error"]


def test_sessions_match_pandas_over_all_history(simulated) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """Sessions are split over each person's whole history (the query only reads from one gap
    before the range): a reference that splits everything, then keeps what began in range."""
    ctx, ws, rows = simulated
    lo, hi = pd.Timestamp("2026-07-20"), pd.Timestamp("2026-07-30")
    df = pd.DataFrame(rows)[["person_id", "timestamp"]]
    df = df[df["timestamp"] < hi].sort_values(["person_id", "timestamp"])
    gap = df.groupby("person_id")["timestamp"].diff()
    df["session"] = (
        (gap.isna() | (gap > pd.Timedelta(minutes=30))).groupby(df["person_id"]).cumsum()
    )
    s = df.groupby(["person_id", "session"])["timestamp"].agg(["min", "max", "count"]).reset_index()
    in_range = s[s["min"] >= lo]
    first_seen = df.groupby("person_id")["timestamp"].min()
    new = first_seen[first_seen >= lo].index
    early = s[s["person_id"].isin(new) & (s["session"] <= 3)]

    r = AnalyticsService(ctx.events, ctx.workspaces).sessions(
        ws, SessionsSpec(range={"date_from": "2026-07-20", "date_to": "2026-07-29"})
    )
    duration = (in_range["max"] - in_range["min"]).dt.total_seconds()
    assert r.sessions == len(in_range) > 100
    assert r.avg_events == pytest.approx(in_range["count"].mean())
    assert r.avg_duration_seconds == pytest.approx(duration.mean())
    assert r.depth_events == pytest.approx(early["count"].mean())
    assert [k["actors"] for k in r.first_sessions] == [
        int((early["session"] == k).sum()) for k in (1, 2, 3)
    ]
    # only the new actors: the same first sessions; the other figures cover them alone
    new_only = AnalyticsService(ctx.events, ctx.workspaces).sessions(
        ws, SessionsSpec(range={"date_from": "2026-07-20", "date_to": "2026-07-29"}, actors="new")
    )
    assert new_only.first_sessions == r.first_sessions and new_only.depth_events == r.depth_events
    new_sessions = in_range[in_range["person_id"].isin(new)]
    assert new_only.sessions == len(new_sessions) < r.sessions


def test_a_session_running_across_the_range_start_is_not_new(fx: Fixture) -> None:
    # cy: 23:05, 23:33 (28 min), 00:01 (28 min: still the session begun before the range),
    # 01:00 (a new session in the range). dee: 23:40, then 00:20 (40 min: a new session).
    for when in ["02-28T23:05", "02-28T23:33", "03-01T00:01", "03-01T01:00"]:
        at(fx, "cy", "a", f"2026-{when}:00Z")
    for when in ["02-28T23:40", "03-01T00:20"]:
        at(fx, "dee", "a", f"2026-{when}:00Z")
    r = fx.svc.sessions(fx.ws, SessionsSpec(range=R))
    assert (r.sessions, r.avg_events, r.first_sessions[0]["actors"]) == (2, 1.0, 0)
