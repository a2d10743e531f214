"""Funnels: hand-built fixtures with known answers, and a plain-Python reference on simulator data."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from traction.analytics.domain.specs import (
    DateRange,
    EventMatcher,
    FunnelSpec,
    PropertyFilter,
    day_bounds,
)
from traction.analytics.service import AnalyticsService
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.simulate.runner import run_simulation
from traction.simulate.world import SimulationParams
from traction.store.events import RESOLVED_EVENTS

T0 = datetime(2026, 3, 2, 9, 0, 0)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat() + "Z"


class Fixture:
    def __init__(self, ctx: Context, tz: str = "UTC") -> None:
        self.ctx = ctx
        self.ws = ctx.workspaces.create_workspace("F", timezone=tz).id
        self.svc = AnalyticsService(ctx.events, ctx.workspaces)
        self.n = 0

    def send(
        self,
        who: str,
        event: str,
        minutes: float,
        props: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        self.n += 1
        msg = {
            "type": "track",
            "userId": who,
            "event": event,
            "timestamp": ts(minutes),
            "messageId": f"m{self.n}",
            "properties": props or {},
            **extra,
        }
        assert not self.ctx.ingest.ingest_sync(self.ws, [msg], normalize_segment).rejected

    def send_at(self, who: str, event: str, when: str, **props: Any) -> None:
        """A track call at an absolute ISO time."""
        self.send(
            who, event, (datetime.fromisoformat(when.rstrip("Z")) - T0).total_seconds() / 60, props
        )

    def funnel(self, *steps: str | EventMatcher, **kw: Any) -> list[int]:
        spec = FunnelSpec(
            steps=[s if isinstance(s, EventMatcher) else EventMatcher(event=s) for s in steps],
            range=kw.pop("range", {"date_from": "2026-03-01", "date_to": "2026-03-31"}),
            **kw,
        )
        return [s.entered for s in self.svc.funnel(self.ws, spec).steps]


@pytest.fixture
def fx(sqlite_ctx: Context) -> Fixture:
    return Fixture(sqlite_ctx)


def test_ordered_funnel_counts(fx: Fixture) -> None:
    for m, e in [(0, "a"), (5, "b"), (9, "c")]:
        fx.send("full", e, m)
    fx.send("two", "a", 0), fx.send("two", "b", 1)
    fx.send("one", "a", 0)
    fx.send("no-entry", "b", 0), fx.send("no-entry", "c", 1)
    fx.send("wrong-order", "b", 0), fx.send("wrong-order", "a", 1)
    assert fx.funnel("a", "b", "c") == [4, 2, 1]


def test_window_boundary_is_inclusive(fx: Fixture) -> None:
    day = 24 * 60
    fx.send("on-edge", "a", 0), fx.send("on-edge", "b", 14 * day)
    fx.send("just-late", "a", 0), fx.send("just-late", "b", 14 * day + 0.001)
    assert fx.funnel("a", "b") == [2, 1]
    assert fx.funnel("a", "b", window_days=15) == [2, 2]


def test_equal_timestamps_count_in_arrival_order(fx: Fixture) -> None:
    fx.send("in-order", "a", 0), fx.send("in-order", "b", 0)
    fx.send("reversed", "b", 0), fx.send("reversed", "a", 0)  # b arrived first
    assert fx.funnel("a", "b") == [2, 1]


def test_a_later_attempt_can_convert(fx: Fixture) -> None:
    day = 24 * 60
    fx.send("retry", "a", 0)  # no b within 1 day
    fx.send("retry", "a", 3 * day), fx.send("retry", "b", 3 * day + 30)
    r = fx.svc.funnel(
        fx.ws,
        FunnelSpec(
            steps=[EventMatcher(event="a"), EventMatcher(event="b")],
            range={"date_from": "2026-03-01", "date_to": "2026-03-31"},
            window_days=1,
        ),
    )
    assert [s.entered for s in r.steps] == [1, 1]
    assert r.steps[1].median_seconds_from_previous == 30 * 60  # measured in the converting attempt


def test_repeated_step_needs_distinct_events(fx: Fixture) -> None:
    fx.send("once", "a", 0), fx.send("once", "b", 1)
    fx.send("twice", "a", 0), fx.send("twice", "b", 1), fx.send("twice", "b", 2)
    assert fx.funnel("a", "b", "b") == [2, 2, 1]


def test_strict_mode_needs_adjacent_steps(fx: Fixture) -> None:
    fx.send("adjacent", "a", 0), fx.send("adjacent", "b", 1)
    fx.send("gap", "a", 0), fx.send("gap", "x", 1), fx.send("gap", "b", 2)
    assert fx.funnel("a", "b", mode="strict") == [2, 1]
    assert fx.funnel("a", "b") == [2, 2]


def test_date_range_bounds_entries_not_completions(fx: Fixture) -> None:
    day = 24 * 60
    fx.send("before", "a", -2 * day), fx.send("before", "b", -2 * day + 1)  # Feb 28: out
    fx.send("late-finish", "a", 0), fx.send("late-finish", "b", 3 * day)  # Mar 5, after date_to
    assert fx.funnel("a", "b", range={"date_from": "2026-03-01", "date_to": "2026-03-02"}) == [1, 1]


def test_workspace_time_zone_decides_the_day(sqlite_ctx: Context) -> None:
    fx = Fixture(sqlite_ctx, tz="America/New_York")
    # 2026-03-02 03:00 UTC is 2026-03-01 22:00 in New York
    fx.n += 1
    sqlite_ctx.ingest.ingest_sync(
        fx.ws,
        [
            {
                "type": "track",
                "userId": "ny",
                "event": "a",
                "timestamp": "2026-03-02T03:00:00Z",
                "messageId": "ny",
            }
        ],
        normalize_segment,
    )
    fx.send("ny", "b", 0)
    assert fx.funnel("a", "b", range={"date_from": "2026-03-01", "date_to": "2026-03-01"}) == [1, 1]
    utc = Fixture(sqlite_ctx)
    assert day_bounds(
        FunnelSpec(
            steps=[EventMatcher(event="a")] * 2,
            range={"date_from": "2026-03-01", "date_to": "2026-03-01"},
        ).range,
        "UTC",
    )[1] == datetime(2026, 3, 2)
    assert utc.funnel("a", "b", range={"date_from": "2026-03-01", "date_to": "2026-03-01"}) == [
        0,
        0,
    ]


def test_anonymous_events_merged_later_count_for_the_person(fx: Fixture) -> None:
    fx.ctx.ingest.ingest_sync(
        fx.ws,
        [
            {
                "type": "track",
                "anonymousId": "cookie",
                "event": "a",
                "timestamp": ts(0),
                "messageId": "anon-a",
            }
        ],
        normalize_segment,
    )
    fx.send("later-user", "b", 10)
    assert fx.funnel("a", "b") == [1, 0]
    fx.ctx.ingest.ingest_sync(
        fx.ws,
        [
            {
                "type": "identify",
                "anonymousId": "cookie",
                "userId": "later-user",
                "timestamp": ts(20),
                "messageId": "idf",
            }
        ],
        normalize_segment,
    )
    assert fx.funnel("a", "b") == [1, 1]  # and the cache saw the merge


def test_aggregate_by_account(fx: Fixture) -> None:
    (
        fx.send("p1", "a", 0, context={"groupId": "acme"}),
        fx.send("p2", "b", 5, context={"groupId": "acme"}),
    )
    fx.send("p3", "a", 0, context={"groupId": "globex"})
    fx.send("loner", "a", 0)  # no account: not counted by account
    assert fx.funnel("a", "b", aggregate_by="account") == [2, 1]
    assert fx.funnel("a", "b") == [3, 0]


def test_step_property_filters(fx: Fixture) -> None:
    (
        fx.send("pro", "a", 0),
        fx.send("pro", "b", 1, {"plan": "pro", "seats": 5, "tags": "Beta,EU", "at": "2026-02-01"}),
    )
    fx.send("free", "a", 0), fx.send("free", "b", 1, {"plan": "free", "seats": 1})
    fx.send("bare", "a", 0), fx.send("bare", "b", 1)

    def conv(**f: Any) -> int:
        return fx.funnel("a", EventMatcher(event="b", filters=[PropertyFilter(**f)]))[1]

    assert conv(property="plan", value="pro") == 1
    assert (
        conv(property="plan", operator="not_equals", value="pro") == 2
    )  # missing counts as "not pro"
    assert conv(property="plan", operator="in", value=["pro", "free"]) == 2
    assert conv(property="plan", operator="not_in", value=["pro"]) == 2
    assert conv(property="seats", operator="gt", value=1) == 1
    assert conv(property="seats", operator="lte", value=5) == 2
    assert conv(property="seats", value=5) == 1
    assert conv(property="tags", operator="contains", value="beta") == 1
    assert conv(property="tags", operator="regex", value="^Beta,") == 1
    assert conv(property="at", operator="before", value="2026-03-01") == 1
    assert conv(property="plan", operator="is_set") == 2
    assert conv(property="plan", operator="is_not_set") == 1
    assert conv(property="unknown", value="x") == 0  # unknown property: zero, not an error


def test_time_to_convert_and_dropoffs(fx: Fixture) -> None:
    for who, gap in [("u1", 10), ("u2", 20), ("u3", 60)]:
        fx.send(who, "a", 0), fx.send(who, "b", gap)
    fx.send("stuck", "a", 0)
    spec = FunnelSpec(
        steps=[EventMatcher(event="a"), EventMatcher(event="b")],
        range={"date_from": "2026-03-01", "date_to": "2026-03-31"},
    )
    r = fx.svc.funnel(fx.ws, spec)
    assert r.steps[1].median_seconds_from_previous == 20 * 60
    assert r.steps[1].mean_seconds_from_previous == pytest.approx(30 * 60)
    assert (r.steps[0].dropped, r.steps[0].drop_off_rate, r.overall_conversion) == (1, 0.25, 0.75)
    stuck = fx.ctx.persons.by_distinct_id(fx.ws, "stuck")
    assert [d["actor"] for d in fx.svc.funnel_dropoffs(fx.ws, spec, 0)] == [stuck.id]  # type: ignore[union-attr]


def test_the_dropoff_list_pages_past_any_cap(fx: Fixture) -> None:
    for i in range(25):
        fx.send(f"s{i}", "a", i)  # 25 people start and stop, one a minute
    spec = FunnelSpec(
        steps=[EventMatcher(event="a"), EventMatcher(event="b")],
        range={"date_from": "2026-03-01", "date_to": "2026-03-31"},
    )
    pages = [fx.svc.funnel_dropoffs(fx.ws, spec, 0, limit=10, offset=o) for o in (0, 10, 20, 30)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    everyone = [d for p in pages for d in p]
    expected = [fx.ctx.persons.by_distinct_id(fx.ws, f"s{i}").id for i in range(25)]  # type: ignore[union-attr]
    assert [d["actor"] for d in everyone] == expected  # earliest start first, none twice


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {
                "steps": [{"event": "a"}],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
            },
            "steps",
        ),
        (
            {
                "steps": [{"event": "a"}, {"event": "b"}],
                "range": {"date_from": "2026-01-02", "date_to": "2026-01-01"},
            },
            "range",
        ),
        (
            {
                "steps": [{"event": "a"}, {"event": "b"}],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
                "window_days": -1,
            },
            "window_days",
        ),
        (
            {
                "steps": [{"event": "a"}, {"event": "b"}],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
                "window_days": "soon",
            },
            "window_days",
        ),
        (
            {
                "steps": [
                    {"event": "a", "filters": [{"property": "p", "operator": "like", "value": 1}]},
                    {"event": "b"},
                ],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
            },
            "operator",
        ),
        (
            {
                "steps": [
                    {"event": "a", "filters": [{"property": "p", "operator": "in", "value": "x"}]},
                    {"event": "b"},
                ],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
            },
            "non-empty list",
        ),
        (
            {
                "steps": [
                    {
                        "event": "a",
                        "filters": [{"property": "p", "operator": "gt", "value": "big"}],
                    },
                    {"event": "b"},
                ],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
            },
            "needs a number",
        ),
        (
            {
                "steps": [
                    {
                        "event": "a",
                        "filters": [{"property": "p", "operator": "regex", "value": "("}],
                    },
                    {"event": "b"},
                ],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
            },
            "invalid regex",
        ),
        (
            {
                "steps": [{"event": "a"}] * 21,
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
            },
            "steps",
        ),
        (
            {
                "steps": [{"event": "a"}, {"event": "b"}],
                "range": {"date_from": "2026-01-01", "date_to": "2026-01-02"},
                "colour": 1,
            },
            "colour",
        ),
    ],
)
def test_invalid_specs_name_the_problem(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        FunnelSpec.model_validate(spec)


# -- reference implementation on simulator data ----------------------------------------------


def reference_funnel(
    rows: list[dict[str, Any]],
    steps: list[Any],
    start: datetime,
    end: datetime,
    window: timedelta,
    strict: bool,
    actor: str,
    exclusion: tuple[str, int, int] | None = None,
) -> list[int]:
    """Plain Python, no shared code with the SQL compiler: loops over each actor's events.
    `exclusion` = (event, from_step, to_step): attempts with that event after their from-step
    event and before their to-step event (or before the window closes) are dropped."""
    names = [*steps, *([exclusion[0]] if exclusion else [])]

    def is_(e: dict[str, Any], step: str | Callable[[dict[str, Any]], bool]) -> bool:
        if callable(step):  # a predicate over the event (`$any` with filters)
            return step(e)
        return (
            e["type"] == "page" if step == "$page" else e["name"] == step
        )  # "$page": any page call

    by_actor: dict[Any, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        if (
            r[actor] is not None
            and start <= r["timestamp"] < end + window
            and (strict or any(is_(r, n) for n in names))
        ):
            by_actor[r[actor]].append(r)
    reached = [0] * len(steps)
    for evs in by_actor.values():
        evs.sort(key=lambda r: (r["timestamp"], r["seq"]))
        best = 0
        for i, e in enumerate(evs):
            if not is_(e, steps[0]) or not (start <= e["timestamp"] < end):
                continue
            positions, pos = [i], i
            for k in range(1, len(steps)):
                nxt = next((j for j in range(pos + 1, len(evs)) if is_(evs[j], steps[k])), None)
                if (
                    nxt is None
                    or evs[nxt]["timestamp"] > e["timestamp"] + window
                    or (strict and nxt != pos + 1)
                ):
                    break
                positions.append(nxt)
                pos = nxt
            level = len(positions)
            if exclusion and level > exclusion[1]:
                excl, frm, to = exclusion
                x = next(
                    (j for j in range(positions[frm] + 1, len(evs)) if evs[j]["name"] == excl), None
                )
                if x is not None and (
                    x < positions[to]
                    if level > to
                    else evs[x]["timestamp"] <= e["timestamp"] + window
                ):
                    continue
            best = max(best, level)
        for k in range(best):
            reached[k] += 1
    return reached


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from traction.settings import Settings

    ctx = Context.open(Settings(data_dir=tmp_path_factory.mktemp("sim")), start_writer=False)
    ws = ctx.workspaces.create_workspace("Sim").id
    run_simulation(ctx, ws, SimulationParams(people=1500, days=45, seed=4))
    cur = ctx.events._con.cursor()
    cur.execute(f"SELECT * FROM ({RESOLVED_EVENTS}) WHERE workspace_id = ?", [ws])
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    yield ctx, ws, rows
    ctx.close()


@pytest.mark.parametrize(
    ("steps", "strict", "window", "actor"),
    [
        (["signed_up", "project_created", "teammate_invited"], False, 7, "person_id"),
        (["session_started", "report_created", "$feature_locked"], False, 14, "person_id"),
        (["session_started", "feature_used"], True, 1, "person_id"),
        (["session_started", "dashboard_viewed", "dashboard_viewed"], True, 1, "person_id"),
        (["signed_up", "project_created", "report_created"], False, 3, "account_id"),
        (["$page", "signed_up", "project_created"], False, 30, "person_id"),  # by call type
    ],
)
def test_matches_reference_on_simulated_product(
    simulated, steps: list[str], strict: bool, window: int, actor: str
) -> None:  # type: ignore[no-untyped-def]
    ctx, ws, rows = simulated
    spec = FunnelSpec(
        steps=[EventMatcher(event=s) for s in steps],
        range={"date_from": "2026-07-05", "date_to": "2026-08-05"},
        window_days=window,
        mode="strict" if strict else "ordered",
        aggregate_by="person" if actor == "person_id" else "account",
    )
    start, end = day_bounds(spec.range, "UTC")
    got = [s.entered for s in AnalyticsService(ctx.events, ctx.workspaces).funnel(ws, spec).steps]
    expected = reference_funnel(rows, steps, start, end, timedelta(days=window), strict, actor)
    assert got == expected and expected[-1] > 0
    assert expected[0] > 50 and expected[-1] > 0  # the fixture is not trivially empty


def test_any_event_step_with_filters_matches_reference(simulated) -> None:  # type: ignore[no-untyped-def]
    """A step that is `$any` event with property filters (free-to-paid's "MRR went from
    nothing to some" is one): the funnel numbers only the events its steps can match, which
    must not change the counts."""
    ctx, ws, rows = simulated
    r = DateRange(date_from="2026-07-05", date_to="2026-08-05")
    busy = EventMatcher(
        event="$any", filters=[PropertyFilter(property="dashboard_id", operator="gte", value=15)]
    )
    spec = FunnelSpec(steps=[EventMatcher(event="signed_up"), busy, EventMatcher(event="report_created")],
                      range=r, window_days=14)  # fmt: skip

    def busy_(e: dict[str, Any]) -> bool:
        return json.loads(e["properties"] or "{}").get("dashboard_id", 0) >= 15

    start, end = day_bounds(r, "UTC")
    got = [s.entered for s in AnalyticsService(ctx.events, ctx.workspaces).funnel(ws, spec).steps]
    steps = ["signed_up", busy_, "report_created"]
    expected = reference_funnel(rows, steps, start, end, timedelta(days=14), False, "person_id")
    assert got == expected and expected[2] > 0


def test_funnel_over_http(server) -> None:  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(ws.id, [
        {"type": "track", "userId": "u", "event": "a", "timestamp": ts(0), "messageId": "1"},
        {"type": "track", "userId": "u", "event": "b", "timestamp": ts(5), "messageId": "2"},
        {"type": "track", "userId": "v", "event": "a", "timestamp": ts(0), "messageId": "3"},
    ], normalize_segment)  # fmt: skip
    spec = {
        "steps": [{"event": "a"}, {"event": "b"}],
        "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"},
    }
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    with server.client() as c:
        r = c.post("/api/v1/insights/funnel", json=spec, headers=auth)
        assert r.status_code == 200, r.text
        assert [s["entered"] for s in r.json()["steps"]] == [2, 1] and r.json()[
            "overall_conversion"
        ] == 0.5
        drops = c.post("/api/v1/insights/funnel/dropoffs?step=0", json=spec, headers=auth).json()
        assert [d["person_id"] for d in drops] == [server.ctx.persons.by_distinct_id(ws.id, "v").id]
        bad = c.post("/api/v1/insights/funnel", json={**spec, "window_days": -3}, headers=auth)
        assert bad.status_code == 422 and "window_days" in bad.json()["error"]
        assert (
            c.post("/api/v1/insights/funnel/dropoffs?step=1", json=spec, headers=auth).status_code
            == 422
        )
        assert (
            c.post(
                "/api/v1/insights/funnel",
                json=spec,
                headers={"Authorization": f"Bearer {ws.write_key}"},
            ).status_code
            == 403
        )


# -- exclusions and breakdowns ---------------------------------------------------------------

R31 = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


def test_exclusion_steps(fx: Fixture) -> None:
    day = 24 * 60
    fx.send("x-between", "a", 0), fx.send("x-between", "x", 1), fx.send("x-between", "b", 2)
    fx.send("x-after", "a", 0), fx.send("x-after", "b", 1), fx.send("x-after", "x", 2)
    fx.send("x-no-b", "a", 0), fx.send("x-no-b", "x", 1)
    fx.send("clean", "a", 0)
    (
        fx.send("retry", "a", 0),
        fx.send("retry", "x", 1),
        fx.send("retry", "a", 3 * day),
        fx.send("retry", "b", 3 * day + 1),
    )
    spec = FunnelSpec.model_validate({"steps": [{"event": "a"}, {"event": "b"}], "range": R31,
                                      "exclusions": [{"event": {"event": "x"}, "from_step": 0, "to_step": 1}]})  # fmt: skip
    assert [s.entered for s in fx.svc.funnel(fx.ws, spec).steps] == [
        3,
        2,
    ]  # x-after, clean, retry; x-after and retry convert
    assert fx.funnel("a", "b") == [5, 3]


def test_breakdown_attributions(fx: Fixture) -> None:
    fx.send("p1", "a", 0, {"src": "ads"}), fx.send("p1", "b", 1, {"src": "x"})
    fx.send("p2", "a", 0, {"src": "seo"})
    fx.send("p3", "a", 0, {"src": "ads"})
    fx.send("p4", "a", 0), fx.send("p4", "b", 1, {"src": "y"})

    def split(**kw: Any) -> dict[str, list[int]]:
        spec = FunnelSpec.model_validate(
            {"steps": [{"event": "a"}, {"event": "b"}], "range": R31, "breakdown": "src", **kw}
        )
        result = fx.svc.funnel(fx.ws, spec)
        assert [s.entered for s in result.steps] == [4, 2]  # the total is unchanged by a breakdown
        return {v: [s.entered for s in r.steps] for v, r in result.breakdown or []}

    assert split() == {"ads": [2, 1], "$none": [1, 1], "seo": [1, 0]}
    assert split(breakdown_attribution="last_touch") == {
        "x": [1, 1],
        "y": [1, 1],
        "ads": [1, 0],
        "seo": [1, 0],
    }
    assert split(breakdown_attribution="step", breakdown_step=1) == {
        "x": [1, 1],
        "y": [1, 1],
        "$none": [2, 0],
    }
    assert split(breakdown_limit=1) == {"ads": [2, 1], "$other": [2, 1]}


@pytest.mark.parametrize(
    ("kw", "problem"),
    [
        (
            {"exclusions": [{"event": {"event": "x"}, "from_step": 1, "to_step": 1}]},
            "from_step < to_step",
        ),
        (
            {"exclusions": [{"event": {"event": "x"}, "from_step": 0, "to_step": 5}]},
            "from_step < to_step",
        ),
        ({"breakdown": "p", "breakdown_attribution": "step"}, "needs breakdown_step"),
        ({"breakdown": "p", "breakdown_step": 1}, "goes with breakdown_attribution"),
        ({"breakdown": "p", "breakdown_limit": 50}, "breakdown_limit"),
    ],
)
def test_invalid_exclusions_and_breakdowns(kw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        FunnelSpec.model_validate({"steps": [{"event": "a"}, {"event": "b"}], "range": R31, **kw})


def test_exclusion_matches_reference_on_simulated_product(simulated) -> None:  # type: ignore[no-untyped-def]
    ctx, ws, rows = simulated
    steps = ["signed_up", "project_created", "teammate_invited"]
    spec = FunnelSpec.model_validate({
        "steps": [{"event": s} for s in steps], "range": {"date_from": "2026-07-05", "date_to": "2026-08-05"},
        "window_days": 7, "exclusions": [{"event": {"event": "session_started"}, "from_step": 0, "to_step": 1}],
    })  # fmt: skip
    start, end = day_bounds(spec.range, "UTC")
    got = [s.entered for s in AnalyticsService(ctx.events, ctx.workspaces).funnel(ws, spec).steps]
    expected = reference_funnel(
        rows, steps, start, end, timedelta(days=7), False, "person_id", ("session_started", 0, 1)
    )
    assert got == expected and expected[0] > 10
    plain = reference_funnel(rows, steps, start, end, timedelta(days=7), False, "person_id")
    assert expected[0] < plain[0]  # the exclusion did remove someone


def test_unordered_funnel(fx: Fixture) -> None:
    day = 24 * 60
    fx.send("any-order", "c", 0), fx.send("any-order", "a", 1), fx.send("any-order", "b", 2)
    fx.send("two", "b", 0), fx.send("two", "a", 5)
    fx.send("too-slow", "a", 0), fx.send("too-slow", "b", 15 * day)
    fx.send("repeat", "a", 0), fx.send("repeat", "a", 1)  # the same step twice is one step
    assert fx.funnel("a", "b", "c", mode="unordered") == [4, 2, 1]
    assert fx.funnel("a", "b", "c") == [4, 1, 0]  # in order: only any-order's a -> b
    with pytest.raises(ValidationError, match="unordered funnels take no"):
        FunnelSpec.model_validate(
            {
                "steps": [{"event": "a"}, {"event": "b"}],
                "range": R31,
                "mode": "unordered",
                "breakdown": "p",
            }
        )


def test_unordered_matches_reference_on_simulated_product(simulated) -> None:  # type: ignore[no-untyped-def]
    ctx, ws, rows = simulated
    steps = ["project_created", "teammate_invited", "report_created"]
    spec = FunnelSpec.model_validate(
        {
            "steps": [{"event": s} for s in steps],
            "range": {"date_from": "2026-07-05", "date_to": "2026-08-05"},
            "window_days": 3,
            "mode": "unordered",
        }
    )
    start, end = day_bounds(spec.range, "UTC")
    window = timedelta(days=3)
    by_actor: dict[Any, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        if r["name"] in steps and start <= r["timestamp"] < end + window:
            by_actor[r["person_id"]].append(r)
    reached = [0] * 3
    for evs in by_actor.values():
        best = max(
            (len({x["name"] for x in evs if a["timestamp"] <= x["timestamp"] <= a["timestamp"] + window})
             for a in evs if a["timestamp"] < end),
            default=0,
        )  # fmt: skip
        for k in range(best):
            reached[k] += 1
    got = [s.entered for s in AnalyticsService(ctx.events, ctx.workspaces).funnel(ws, spec).steps]
    assert got == reached and reached[2] > 0


def test_times_are_to_the_millisecond_without_float_noise() -> None:
    from traction.analytics.domain.results import ActivationResult, funnel_result

    row = {"entered_0": 2, "entered_1": 1, "median_s_1": 55807.12043750286, "mean_s_1": 0.1 + 0.2}
    step = funnel_result(["a", "b"], row).steps[1]
    assert (step.median_seconds_from_previous, step.mean_seconds_from_previous) == (55807.12, 0.3)
    assert ActivationResult([], [1.0, 2.0000000001]).ttfv(0.5) == 1.5
