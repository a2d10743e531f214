"""Quiet hours, frequency caps and suppression are never broken: properties checked with
hypothesis, on the pure functions and on the engine over random schedules of sign-ups and
worker rounds, in random time zones (the outbox stands in for SMTP: what matters here is what
was decided, and when)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traction.context import Context
from traction.engage.domain import timing
from traction.engage.domain.journeys import QuietHours
from traction.engage.reactors import JourneyReactor
from traction.ingest.domain import normalize_segment
from traction.worker import ReactorRunner

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham",
         "America/St_Johns", "Asia/Kathmandu"]  # fmt: skip
hhmm = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45])
)
STATUSES: list[
    str
] = []  # every decision made, across examples (the last test checks some were sends)
moments = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31))


@given(now=moments, start=hhmm, end=hhmm, zone=st.sampled_from(ZONES))
def test_next_allowed_is_outside_quiet_hours_and_as_soon_as_possible(
    now: datetime, start: str, end: str, zone: str
) -> None:
    q, tz = QuietHours(start=start, end=end), ZoneInfo(zone)
    t = timing.next_allowed(now, q, tz)
    assert t >= now and not timing.in_quiet_hours(t, q, tz)
    if t > now:  # nothing earlier would do: every 15 minutes in between is quiet
        probe = now
        while probe + timedelta(minutes=15) <= t:
            assert timing.in_quiet_hours(probe, q, tz)
            probe += timedelta(minutes=15)
        assert t - now <= timedelta(hours=25)


@given(after=moments, hour=st.integers(0, 23), zone=st.sampled_from(ZONES))
def test_next_hour_is_that_hour_locally_within_a_day(after: datetime, hour: int, zone: str) -> None:
    tz = ZoneInfo(zone)
    t = timing.next_hour(after, hour, tz)
    local = t.replace(tzinfo=UTC).astimezone(tz)
    assert t > after and t - after <= timedelta(hours=25)
    assert local.minute == 0 and (
        local.hour == hour or local.dst() != (after.replace(tzinfo=UTC).astimezone(tz)).dst()
    )


@given(
    sent=st.lists(st.integers(0, 10 * 24 * 60), max_size=30),
    per_day=st.integers(1, 5),
    per_week=st.integers(1, 12),
)
def test_caps(sent: list[int], per_day: int, per_week: int) -> None:
    now = datetime(2026, 6, 15)
    times = [now - timedelta(minutes=m) for m in sent]
    day = sum(1 for m in sent if m < 24 * 60)
    week = sum(1 for m in sent if m < 7 * 24 * 60)
    assert timing.over_cap(times, now, per_day, per_week) == (day >= per_day or week >= per_week)


def _journeys(quiet: tuple[str, str]) -> dict[str, Any]:
    msg = {"type": "email", "email": {"subject": "s", "text": "t"}}
    return {
        "a": {"trigger": {"event": "signed_up"}, "quiet_hours": {"start": quiet[0], "end": quiet[1]},
              "steps": [{"id": "a1", **msg}, {"id": "w", "type": "wait", "hours": 3}, {"id": "a2", **msg}]},
        "b": {"trigger": {"event": "project_created"}, "quiet_hours": {"start": quiet[0], "end": quiet[1]},
              "steps": [{"id": "b1", **msg}, {"id": "b2", "type": "inapp", "inapp": {"title": "Nice"}}]},
        "receipt": {"trigger": {"event": "paid"},
                    "steps": [{"id": "r", "type": "email", "transactional": True, "email": {"subject": "Receipt", "text": "t"}}]},
    }  # fmt: skip


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    quiet=st.tuples(hhmm, hhmm),
    people=st.lists(
        st.tuples(st.sampled_from(ZONES), st.lists(st.tuples(st.sampled_from(["signed_up", "project_created", "paid"]),
                                                            st.integers(0, 72 * 60)), min_size=1, max_size=6),
                  st.booleans()),
        min_size=1, max_size=6),
    rounds=st.lists(st.integers(1, 240), min_size=5, max_size=40),
)  # fmt: skip
def test_the_engine_never_breaks_quiet_hours_caps_or_suppression(
    tmp_path_factory: Any,
    quiet: tuple[str, str],
    people: list[tuple[str, list[tuple[str, int]], bool]],
    rounds: list[int],
) -> None:
    from traction.settings import Settings

    data = tmp_path_factory.mktemp("engage")
    ctx = Context.open(
        Settings(data_dir=data, log_json=False, engage_cap_per_day=2, engage_cap_per_week=4)
    )
    try:
        ws = ctx.workspaces.create_workspace("P").id
        ctx.engage.apply(ws, _journeys(quiet))
        t0 = datetime(2026, 3, 28)  # a daylight-saving change falls inside the window
        msgs: list[dict[str, Any]] = []
        zones: dict[str, str] = {}
        for i, (zone, events, suppressed) in enumerate(people):
            u = f"u{i}"
            zones[u] = zone
            msgs.append({"type": "identify", "userId": u, "timestamp": t0.isoformat() + "Z", "messageId": f"i{i}",
                         "traits": {"email": f"{u}@example.com", "timezone": zone}})  # fmt: skip
            if suppressed:
                ctx.engage.suppress(ws, f"{u}@example.com")
            for j, (name, minute) in enumerate(events):
                msgs.append({"type": "track", "userId": u, "event": name, "messageId": f"e{i}-{j}",
                             "timestamp": (t0 + timedelta(minutes=minute)).isoformat() + "Z"})  # fmt: skip
        msgs.sort(key=lambda m: m["timestamp"])
        ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
        ReactorRunner(
            ctx.state, ctx.events, [JourneyReactor(ctx.engage.engine)], ctx.metrics
        ).run_once()
        now = t0
        for step in rounds:
            now += timedelta(minutes=step)
            ctx.engage.work(now)
        q = QuietHours(start=quiet[0], end=quiet[1])
        rows = ctx.engage.deliveries(ws, limit=1000)
        suppressed = {f"u{i}@example.com" for i, p in enumerate(people) if p[2]}
        by_person: dict[str, list[datetime]] = {}
        for d in rows:
            at = datetime.fromisoformat(d["created_at"][:-1])
            if d["channel"] == "email" and d["status"] in ("sent", "outbox"):
                assert d["target"] not in suppressed
            if d["status"] in ("sent", "outbox", "pending") and d["step"] != "r":
                view = ctx.persons.get(ws, d["person_id"])
                assert view is not None
                assert not timing.in_quiet_hours(at, q, timing.zone(view.traits.get("timezone"))), d
                by_person.setdefault(d["person_id"], []).append(at)
        STATUSES.extend(d["status"] for d in rows)
        counted = ("sent", "outbox", "pending", "shown", "clicked", "dismissed")
        for d in rows:  # capped only when the caps were really reached (not one early)
            if d["status"] == "capped":
                at = datetime.fromisoformat(d["created_at"][:-1])
                before = [datetime.fromisoformat(x["created_at"][:-1]) for x in rows
                          if x["person_id"] == d["person_id"] and x["id"] != d["id"] and x["status"] in counted
                          and x["step"] != "r" and datetime.fromisoformat(x["created_at"][:-1]) <= at]  # fmt: skip
                assert (sum(1 for x in before if at - x < timedelta(days=1)) >= 2
                        or sum(1 for x in before if at - x < timedelta(days=7)) >= 4), d  # fmt: skip
        for times in by_person.values():  # the caps, over any window, across journeys
            times.sort()
            for k, t in enumerate(times):
                assert sum(1 for x in times[: k + 1] if t - x < timedelta(days=1)) <= 2
                assert sum(1 for x in times[: k + 1] if t - x < timedelta(days=7)) <= 4
    finally:
        ctx.close()


def test_the_property_run_made_every_kind_of_decision() -> None:
    """The run above is not vacuous: it sent, held for caps and suppressed (runs after it)."""
    if STATUSES:  # only when the property test ran in this session
        assert {"outbox", "capped", "suppressed"} <= set(STATUSES), sorted(set(STATUSES))


_values = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([1.0, 2.5, -0.0])
    | st.sampled_from(["a", "b", "1", "2.5", "true", ""])
)


def _filter(prop: str, op: str, scalar: Any, many: list[Any]) -> dict[str, Any]:
    """A filter anyone could save: the value fits the operator."""
    if op in ("is_set", "is_not_set"):
        return {"property": prop, "operator": op}
    if op in ("in", "not_in"):
        return {"property": prop, "operator": op, "value": many}
    if op in ("gt", "lte"):
        return {"property": prop, "operator": op, "value": scalar if isinstance(scalar, int) else 1}
    return {"property": prop, "operator": op, "value": scalar}


_filters = st.builds(
    _filter,
    st.sampled_from(["plan", "n", "a.b"]),
    st.sampled_from(["equals", "not_equals", "in", "not_in", "is_set", "is_not_set", "contains", "gt", "lte", "regex"]),
    st.sampled_from(["a", "1", "true", 0, 2]),
    st.lists(st.sampled_from(["a", "b", "1", "true", 2]), min_size=1, max_size=3),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(raw=_filters, props=st.dictionaries(st.sampled_from(["plan", "n", "a", "x"]), _values | st.dictionaries(st.sampled_from(["b"]), _values), max_size=4))  # fmt: skip
def test_compiled_filters_mean_what_holds_means(raw: dict[str, Any], props: dict[str, Any]) -> None:
    """The reactor's compiled checks answer as `holds` does, on every operator and value."""
    from pydantic import ValidationError

    from traction.analytics.domain.specs import PropertyFilter
    from traction.engage.domain.conditions import compile_filter, compile_start, holds, may_trigger
    from traction.engage.domain.journeys import Trigger

    try:
        f = PropertyFilter.model_validate(raw)
    except ValidationError:
        return  # not a filter anyone could save
    compiled, reference = compile_filter(f)(props), holds(f, props, {})
    assert compiled == reference, (compiled, reference)
    for trigger in (Trigger(event="e", filters=[f]), Trigger(identify=True, filters=[f])):
        for kind, event_props in (("track", props), ("identify", {"$set": props})):
            compiled = compile_start(trigger)(kind, event_props)
            reference = may_trigger(trigger, kind, "e", event_props)
            assert compiled == reference, (compiled, reference)


_raw_values = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.0, 2.5, 0.5, -0.0, 1e21])
    | st.sampled_from(["a", "A", "b", "1", "1.0", "2.5", "true", "", "abc", "ABC", "2026-01-02", "2026-01-02T10:00:00", "x.y"])
    | st.lists(st.integers(0, 2), max_size=2) | st.dictionaries(st.sampled_from(["b"]), st.integers(0, 2), max_size=1)
)  # fmt: skip
_any_filters = st.builds(
    _filter,
    st.sampled_from(["plan", "n", "a.b"]),
    st.sampled_from(["equals", "not_equals", "in", "not_in", "is_set", "is_not_set", "contains", "regex",
                     "gt", "gte", "lt", "lte", "before", "after"]),
    st.sampled_from(["a", "A", "1", "1.0", "true", "b", "2026-01-01", "^a", "[0-9]", 0, 1, 2.5]),
    st.lists(st.sampled_from(["a", "b", "1", "1.0", "true", 2, 2.5]), min_size=1, max_size=3),
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    raw=_any_filters,
    props=st.dictionaries(st.sampled_from(["plan", "n", "a.b", "a"]), _raw_values, max_size=4),
)
def test_python_filters_mean_what_the_sql_filters_mean(
    raw: dict[str, Any], props: dict[str, Any]
) -> None:
    """A journey's condition and an insight's filter agree: `holds` against the analytics'
    own SQL (`filter_sql`) run by DuckDB on the same properties, stored as the log stores them."""
    import duckdb
    import orjson
    from pydantic import ValidationError

    from traction.analytics.compile.params import Params, filter_sql
    from traction.analytics.domain.specs import PropertyFilter
    from traction.engage.domain.conditions import holds

    try:
        f = PropertyFilter.model_validate(raw)
    except ValidationError:
        return
    p = Params()
    cond = filter_sql(f, p, "properties")
    sql = f"SELECT coalesce({cond}, false) FROM (SELECT $doc::JSON AS properties)"
    (expected,) = duckdb.execute(sql, {**p.values, "doc": orjson.dumps(props).decode()}).fetchone()  # type: ignore[misc]
    got = holds(f, props, {})
    assert got == expected, (f.model_dump(), props, got, expected)
