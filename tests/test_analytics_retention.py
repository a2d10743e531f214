"""Retention: a hand-built matrix with known answers, and a plain-Python reference on simulator data."""

from __future__ import annotations

import collections
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from tests.test_analytics_funnel import Fixture, simulated  # noqa: F401  (shared fixture)
from traction.analytics.domain.periods import last_observable_period, periods_between
from traction.analytics.domain.specs import EventMatcher, RetentionSpec
from traction.analytics.service import AnalyticsService
from traction.context import Context
from traction.ingest.domain import normalize_segment


def spec(**kw: Any) -> RetentionSpec:
    base: dict[str, Any] = {
        "start_event": {"event": "signed_up"},
        "return_event": {"event": "used"},
        "range": {"date_from": "2026-03-02", "date_to": "2026-03-03"},
        "interval": "day",
        "periods": 3,
    }
    return RetentionSpec.model_validate({**base, **kw})


@pytest.fixture
def fx(sqlite_ctx: Context) -> Fixture:
    f = Fixture(sqlite_ctx)
    for who, start, returns in [
        ("u1", "2026-03-02T10:00:00Z", ["2026-03-03T09:00:00Z", "2026-03-05T09:00:00Z"]),
        ("u2", "2026-03-02T23:00:00Z", ["2026-03-04T01:00:00Z"]),
        ("u3", "2026-03-02T12:00:00Z", ["2026-03-02T13:00:00Z"]),  # same day: period 0 only
        ("u4", "2026-03-03T08:00:00Z", ["2026-03-04T08:00:00Z"]),
        ("u5", "2026-02-20T08:00:00Z", ["2026-03-03T08:00:00Z"]),  # first start before the range
    ]:
        f.send_at(who, "signed_up", start)
        for r in returns:
            f.send_at(who, "used", r)
    f.send_at("u4", "signed_up", "2026-03-04T08:00:00Z")  # a second start does not move the cohort
    return f


def matrix(fx: Fixture, s: RetentionSpec) -> dict[str, list[int | None]]:
    return {c.start.isoformat(): c.retained for c in fx.svc.retention(fx.ws, s).cohorts}


def test_bounded_daily_retention(fx: Fixture) -> None:
    # latest event: Mar 5 -> cohort Mar 3 can show periods up to 2
    assert matrix(fx, spec()) == {"2026-03-02": [3, 1, 1, 1], "2026-03-03": [1, 1, 0, None]}


def test_unbounded_retention_counts_any_later_return(fx: Fixture) -> None:
    assert matrix(fx, spec(bounded=False)) == {
        "2026-03-02": [3, 2, 2, 1],
        "2026-03-03": [1, 1, 0, None],
    }


def test_any_event_and_rates(fx: Fixture) -> None:
    r = fx.svc.retention(
        fx.ws,
        spec(
            start_event=None,
            return_event=None,
            range={"date_from": "2026-03-02", "date_to": "2026-03-02"},
        ),
    )
    # first event ever on Mar 2: u1, u2, u3 (u5 started in Feb); u4's second signed_up is an event too
    (c,) = r.cohorts
    assert (c.size, c.retained) == (3, [3, 1, 1, 1])
    assert c.rates == [1.0, 1 / 3, 1 / 3, 1 / 3]
    # the data ends during period 3: shown, marked open, left out of the overall curve
    assert c.complete == [True, True, True, False]
    assert r.overall == [1.0, 1 / 3, 1 / 3, None]


def test_weekly_cohorts_in_the_workspace_time_zone(sqlite_ctx: Context) -> None:
    fx = Fixture(sqlite_ctx, tz="America/New_York")
    fx.send_at(
        "ny", "signed_up", "2026-03-02T03:00:00Z"
    )  # Sunday Mar 1, 22:00 in New York: week of Feb 23
    fx.send_at("ny", "used", "2026-03-03T15:00:00Z")  # Tuesday: the next week
    r = fx.svc.retention(
        fx.ws,
        spec(
            interval="week", periods=2, range={"date_from": "2026-02-23", "date_to": "2026-03-01"}
        ),
    )
    assert [(c.start, c.retained) for c in r.cohorts] == [(date(2026, 2, 23), [1, 1, None])]


def test_periods_arithmetic() -> None:
    assert periods_between(date(2026, 3, 1), date(2026, 3, 2), "week") == 1  # Sunday -> Monday
    assert periods_between(date(2026, 1, 31), date(2026, 2, 1), "month") == 1
    assert periods_between(date(2026, 3, 2), date(2026, 3, 8), "week") == 0
    assert last_observable_period(date(2026, 3, 2), datetime(2026, 3, 5, 1), "day") == 3


def test_invalid_retention_specs() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="interval"):
        spec(interval="fortnight")
    with pytest.raises(ValidationError, match="periods"):
        spec(periods=0)


def reference_retention(
    rows: list[dict[str, Any]],
    start_ev: str,
    return_ev: str,
    d_from: date,
    d_to: date,
    periods: int,
    bounded: bool,
) -> dict[date, list[int | None]]:
    """Weekly, UTC, plain Python."""

    def week(d: date) -> date:
        return d - timedelta(days=d.weekday())

    first: dict[str, datetime] = {}
    for r in rows:
        if r["name"] == start_ev and (
            r["person_id"] not in first or r["timestamp"] < first[r["person_id"]]
        ):
            first[r["person_id"]] = r["timestamp"]
    cohort = {p: week(t.date()) for p, t in first.items() if d_from <= t.date() <= d_to}
    data_end = max(r["timestamp"] for r in rows).date()
    ks: dict[str, set[int]] = collections.defaultdict(set)
    for r in rows:
        p = r["person_id"]
        if p in cohort and r["name"] == return_ev and r["timestamp"] > first[p]:
            k = (week(r["timestamp"].date()) - cohort[p]).days // 7
            if 1 <= k <= periods:
                ks[p].add(k)
    out: dict[date, list[int | None]] = {}
    for c in sorted(set(cohort.values())):
        members = [p for p in cohort if cohort[p] == c]
        seen = (week(data_end) - c).days // 7
        row: list[int | None] = [len(members)]
        for k in range(1, periods + 1):
            if k > seen:
                row.append(None)
            elif bounded:
                row.append(sum(1 for p in members if k in ks[p]))
            else:
                row.append(sum(1 for p in members if ks[p] and max(ks[p]) >= k))
        out[c] = row
    return out


@pytest.mark.parametrize("bounded", [True, False])
def test_matches_reference_on_simulated_product(simulated, bounded: bool) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx, ws, rows = simulated
    s = RetentionSpec(
        start_event=EventMatcher(event="signed_up"), return_event=EventMatcher(event="session_started"),
        range={"date_from": "2026-07-01", "date_to": "2026-07-31"}, interval="week", periods=6, bounded=bounded,
    )  # fmt: skip
    cohorts = AnalyticsService(ctx.events, ctx.workspaces).retention(ws, s).cohorts
    got = {c.start: c.retained for c in cohorts}
    # the range starts on a Wednesday: the first weekly cohort began the Monday before, and is
    # labelled by its first day inside the range
    assert (cohorts[0].start, cohorts[0].first_day) == (date(2026, 6, 29), date(2026, 7, 1))
    assert all(c.first_day == c.start for c in cohorts[1:])
    expected = reference_retention(
        rows, "signed_up", "session_started", date(2026, 7, 1), date(2026, 7, 31), 6, bounded
    )
    assert got == expected
    assert sum(r[0] for r in expected.values()) > 50 and any(r[2] for r in expected.values())


def test_retention_over_http(server) -> None:  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(ws.id, [
        {"type": "track", "userId": "u", "event": "signed_up", "timestamp": "2026-03-02T10:00:00Z", "messageId": "1"},
        {"type": "track", "userId": "u", "event": "used", "timestamp": "2026-03-03T10:00:00Z", "messageId": "2"},
    ], normalize_segment)  # fmt: skip
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    with server.client() as c:
        r = c.post(
            "/api/v1/insights/retention", json=spec(periods=2).model_dump(mode="json"), headers=auth
        )
        assert r.status_code == 200, r.text
        assert r.json()["cohorts"] == [
            {"start": "2026-03-02", "first_day": "2026-03-02", "size": 1, "retained": [1, 1, None], "rates": [1.0, 1.0, None], "complete": [True, False, False]}
        ]  # fmt: skip
        # day 1 (Mar 3) is where the data ends: not complete, so not in the summary's average;
        # D7/D30 lie beyond the 2 periods asked for
        assert r.json()["summary"] == {"d1": None}
        bad = c.post(
            "/api/v1/insights/retention",
            json={**spec().model_dump(mode="json"), "periods": 500},
            headers=auth,
        )
        assert bad.status_code == 422 and "periods" in bad.json()["error"]


def test_recurring_retention(sqlite_ctx: Context) -> None:
    fx = Fixture(sqlite_ctx)
    for who, day in [("ann", "02"), ("ann", "03"), ("ann", "05"), ("bob", "03"), ("bob", "04")]:
        fx.send_at(who, "used", f"2026-03-{day}T10:00:00Z")
    s = spec(start_event={"event": "used"}, return_event={"event": "used"}, retention_type="recurring",
             range={"date_from": "2026-03-02", "date_to": "2026-03-05"})  # fmt: skip
    # every day someone used it starts a cohort for them: ann on 2, 3, 5; bob on 3, 4
    assert matrix(fx, s) == {
        "2026-03-02": [1, 1, 0, 1],  # ann: back on 3 (k1) and 5 (k3)
        "2026-03-03": [2, 1, 1, None],  # bob back on 4 (k1); ann on 5 (k2)
        "2026-03-04": [1, 0, None, None],
        "2026-03-05": [1, None, None, None],
    }


def test_cohorts_by_activation_date(sqlite_ctx: Context) -> None:
    fx = Fixture(sqlite_ctx)
    for who, event, when in [
        ("ann", "signed_up", "2026-02-27T10:00:00Z"), ("ann", "project_created", "2026-03-01T10:00:00Z"),
        ("ann", "teammate_invited", "2026-03-02T10:00:00Z"),  # activated Mar 2 (signed up in February)
        ("ann", "used", "2026-03-04T10:00:00Z"),
        ("bob", "signed_up", "2026-03-02T10:00:00Z"), ("bob", "project_created", "2026-03-02T11:00:00Z"),  # never activated
        ("bob", "used", "2026-03-03T10:00:00Z"),
    ]:  # fmt: skip
        fx.send_at(who, event, when)
    s = spec(cohort_by="activation", activation_criteria={"all": [{"event": {"event": "project_created"}}, {"event": {"event": "teammate_invited"}}]},
             range={"date_from": "2026-03-01", "date_to": "2026-03-31"})  # fmt: skip
    assert matrix(fx, s) == {"2026-03-02": [1, 0, 1, None]}  # ann, back on day 2 after activating
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs start_event and activation_criteria"):
        spec(cohort_by="activation")
    with pytest.raises(ValidationError, match="goes with cohort_by"):
        spec(activation_criteria={"all": [{"event": {"event": "x"}}]})


def test_open_week_is_flagged_and_left_out_of_the_all_row(sqlite_ctx: Context) -> None:
    """Random sign-ups and returns over five weeks; the last event falls on a Wednesday. The
    week holding it is open: flagged, and left out of the "All" row. Every closed cell, and the
    All row, equal an independent pandas computation."""
    import random

    import pandas as pd

    rnd = random.Random(7)
    monday = datetime(2026, 6, 1)  # a Monday
    last = monday + timedelta(weeks=4, days=2, hours=15)  # Wednesday of week 4
    msgs, rows = [], []
    for i in range(60):
        user = f"u{i}"
        signup = monday + timedelta(days=rnd.randrange(0, 30), hours=rnd.randrange(0, 24))
        events = [("signed_up", signup)] + [
            ("used", signup + timedelta(days=rnd.randrange(1, 30), hours=rnd.randrange(0, 24)))
            for _ in range(rnd.randrange(0, 6))
        ]
        for name, ts in events:
            if ts <= last:
                msgs.append(
                    {
                        "type": "track",
                        "userId": user,
                        "event": name,
                        "timestamp": ts.isoformat() + "Z",
                    }
                )
                rows.append({"user": user, "name": name, "ts": ts})
    msgs.append(
        {"type": "track", "userId": "closer", "event": "noise", "timestamp": last.isoformat() + "Z"}
    )
    ws = sqlite_ctx.workspaces.create_workspace("Open week").id
    assert not sqlite_ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    s = spec(interval="week", periods=5, range={"date_from": "2026-06-01", "date_to": "2026-07-05"})
    got = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces).retention(ws, s)

    # pandas, from the rows we sent
    df = pd.DataFrame(rows)
    df["week"] = (df["ts"] - pd.to_timedelta(df["ts"].dt.day_of_week, unit="D")).dt.normalize()
    first = df[df.name == "signed_up"].groupby("user")["week"].min().rename("cohort")
    ret = df[df.name == "used"].join(first, on="user")
    ret = ret[ret["ts"] > ret["user"].map(df[df.name == "signed_up"].groupby("user")["ts"].min())]
    ret["k"] = (ret["week"] - ret["cohort"]).dt.days // 7
    open_week = pd.Timestamp(monday + timedelta(weeks=4))
    sizes = first.value_counts()
    all_num: dict[int, int] = collections.Counter()
    all_den: dict[int, int] = collections.Counter()
    for c in got.cohorts:
        cohort = pd.Timestamp(c.start)
        n_open = (open_week - cohort).days // 7  # the first open period of this cohort
        assert c.size == sizes[cohort]
        assert c.complete == [k < n_open for k in range(6)], c.start
        for k in range(1, 6):
            if k < n_open:
                want = ret[(ret.cohort == cohort) & (ret.k == k)]["user"].nunique()
                assert c.retained[k] == want, (c.start, k)
                all_num[k] += want
                all_den[k] += c.size
            elif k == n_open:
                assert c.retained[k] is not None  # shown (a partial count), but flagged
            else:
                assert c.retained[k] is None
    assert got.overall[1:] == [all_num[k] / all_den[k] if all_den[k] else None for k in range(1, 6)]
    assert got.overall[4] is None  # only the first cohort reaches week 4, and it is open there
    assert got.as_dict()["cohorts"][-1]["complete"] == [False] * 6  # the open week's own cohort
