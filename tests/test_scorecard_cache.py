"""The scorecard's cache: after any sequence of new batches (late events, merges, events in
open and closed periods), the cached figures equal a full recomputation."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traction.analytics.domain.kpis import BY_KEY, previous_range, scorecard_row
from traction.analytics.domain.specs import DateRange
from traction.analytics.incremental import ActorRows
from traction.analytics.scorecard import reads_until
from traction.analytics.service import AnalyticsService
from traction.context import Context
from traction.ingest.domain import normalize_segment

EVENTS = ["signed_up", "trial_started", "project_created", "teammate_invited",
          "referral_link_shared", "dashboard_viewed", "data_source_connected", "report_created"]  # fmt: skip
START = datetime(2026, 2, 1)
MARCH = DateRange(date_from="2026-03-01", date_to="2026-03-31")
EARLY_FEB = DateRange(
    date_from="2026-02-01", date_to="2026-02-07"
)  # final once data reaches mid-March
_ids = itertools.count()

message = st.tuples(
    st.sampled_from(["track", "track", "track", "page", "identify", "billing"]),
    st.sampled_from(EVENTS),
    st.integers(0, 5),  # which person
    st.booleans(),  # known by user id, or still anonymous
    st.integers(0, 95 * 24),  # hours after Feb 1: late events land in closed periods
    st.sampled_from([None, "acme", "globex"]),  # the account (billing's events name theirs)
)
batches = st.lists(st.lists(message, min_size=1, max_size=12), min_size=1, max_size=5)


def to_segment(
    kind: str, event: str, who: int, known: bool, hours: int, account: str | None = None
) -> dict[str, Any]:
    m: dict[str, Any] = {
        "type": "track" if kind == "billing" else kind,
        "timestamp": (START + timedelta(hours=hours)).isoformat() + "Z",
        "messageId": f"m{next(_ids)}",
        "anonymousId": f"a{who}",
    }
    if known or kind == "identify":  # identify merges the anonymous person into the user
        m["userId"] = f"u{who}"
    if kind == "track":
        m["event"] = event
    if account and kind != "billing":
        m["context"] = {"groupId": account}
    if kind == "billing":  # a subscription change; its account only in its properties
        before, after = (0, 49) if who % 2 else (49, 99)
        m["event"] = "plan_upgraded"
        m["properties"] = {"account": account or "initech", "subscription": f"sub-{account}",
                           "mrr_before": before, "mrr_after": after}  # fmt: skip
    return m


def _warmed(ctx: Context, ws: str, msgs: list[dict[str, Any]]) -> AnalyticsService:
    """A service that has kept March's scorecard of `msgs` (its per-actor rows included)."""
    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    svc = AnalyticsService(ctx.events, ctx.workspaces)
    svc.scorecard(ws, MARCH)
    return svc


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_cached_scorecard_equals_a_full_recomputation(
    sqlite_ctx: Context, batches: list[list[tuple[str, str, int, bool, int, str | None]]]
) -> None:
    ws = sqlite_ctx.workspaces.create_workspace(f"cache-{next(_ids)}").id
    cached = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces)
    for batch in batches:
        msgs = [to_segment(*m) for m in batch]
        assert not sqlite_ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
        for r in (EARLY_FEB, MARCH):
            fresh = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces).scorecard(ws, r)
            assert cached.scorecard(ws, r) == fresh


def test_closed_periods_are_not_recomputed_when_new_events_arrive(sqlite_ctx: Context) -> None:
    ws = sqlite_ctx.workspaces.create_workspace("closed").id
    base = [to_segment("track", "signed_up", i, True, 24 * 30 + i) for i in range(4)]
    base += [to_segment("track", "dashboard_viewed", 0, True, 24 * 200)]  # past every window
    sqlite_ctx.ingest.ingest_sync(ws, base, normalize_segment)
    svc = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces)
    calls = _counting(svc)
    svc.scorecard(ws, MARCH)
    assert len(calls) == 2 * len(BY_KEY)  # every KPI, two periods
    calls.clear()
    # a new event after every closed window: nothing recomputed
    sqlite_ctx.ingest.ingest_sync(
        ws, [to_segment("track", "signed_up", 9, True, 24 * 201)], normalize_segment
    )
    svc.scorecard(ws, MARCH)
    assert calls == []
    # a late event on Mar 13: March's figures are recomputed; of February's, only those that
    # read that far (30-day visitor and paid windows, day-7 and day-30 retention, the 90-day
    # expansion windows)
    sqlite_ctx.ingest.ingest_sync(
        ws, [to_segment("track", "signed_up", 8, True, 24 * 40)], normalize_segment
    )
    svc.scorecard(ws, MARCH)
    assert {k for k, r in calls if r == MARCH} == set(BY_KEY)
    feb = {k for k, r in calls if r != MARCH}
    assert feb == {"visitor_to_signup", "activation_retention_d7", "activation_retention_d30",
                   "free_to_paid", "free_to_paid_activated", "free_to_paid_not_activated",
                   "upgrade_rate_post_activation", "revenue_per_trial_user", "converted_pql_ltv",
                   "activation_to_expansion", "time_to_expansion_signal"}  # fmt: skip


def test_reads_until_adds_each_kpis_look_ahead() -> None:
    from traction.analytics.domain.kpis import KPIConfig

    c = KPIConfig()
    end = datetime(2026, 4, 1)
    assert reads_until(BY_KEY["stickiness"], MARCH, c, "UTC") == end
    assert reads_until(BY_KEY["activation_rate"], MARCH, c, "UTC") == end + timedelta(days=7)
    assert reads_until(BY_KEY["visitor_to_signup"], MARCH, c, "UTC") == end + timedelta(days=30)
    assert reads_until(BY_KEY["activation_retention_d30"], MARCH, c, "UTC") == end + timedelta(
        days=38
    )
    # a zone east of UTC ends its day earlier in UTC
    assert reads_until(BY_KEY["stickiness"], MARCH, c, "Europe/Paris") == end - timedelta(hours=2)


def test_changes_of_rates_are_in_points_and_never_minus_zero() -> None:
    rate, count = BY_KEY["activation_rate"], BY_KEY["referral_link_shares"]
    row = scorecard_row(rate, 0.44, 0.40)
    assert row["formatted_change"] == "+4.0 pp" and row["change_points"] == pytest.approx(4.0)
    assert row["trend"] == "good"
    assert scorecard_row(rate, 0.40, 0.4004)["formatted_change"] == "0.0 pp"
    assert scorecard_row(rate, 0.40, 0.4004)["trend"] is None
    assert scorecard_row(count, 100.0, 100.04)["formatted_change"] == "0.0%"
    assert scorecard_row(count, 90.0, 100.0)["formatted_change"] == "-10.0%"
    assert scorecard_row(count, 90.0, 0.0)["formatted_change"] == "—"
    assert scorecard_row(BY_KEY["onboarding_dropoff"], 0.5, 0.6)["trend"] == "good"  # down is good
    empty = scorecard_row(rate, None, 0.4)
    assert empty["formatted"] == "—" and "activation window" in empty["empty"]
    assert empty["formatted_change"] == "—" and empty["trend"] is None


def test_a_merge_after_the_window_still_refreshes_closed_figures(sqlite_ctx: Context) -> None:
    """A visitor who signs up under a user id: separate people until an identify, timestamped
    long after the period, merges them. No new event falls in the window; the merge must count."""
    ws = sqlite_ctx.workspaces.create_workspace("merge").id
    base = [
        to_segment("page", "", 1, False, 30),  # a1 views a page on Feb 2
        to_segment("track", "signed_up", 1, True, 31),  # u1 signs up an hour later
        to_segment("track", "dashboard_viewed", 5, True, 24 * 90),  # data reaches May 2
    ]
    base[1].pop("anonymousId")  # the sign-up carries the user id only: no link yet
    sqlite_ctx.ingest.ingest_sync(ws, base, normalize_segment)
    svc = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces)
    before = {row["key"]: row["value"] for row in svc.scorecard(ws, EARLY_FEB)}
    assert before["visitor_to_signup"] == 0.0
    sqlite_ctx.ingest.ingest_sync(
        ws, [to_segment("identify", "", 1, True, 24 * 91)], normalize_segment
    )
    after = {row["key"]: row["value"] for row in svc.scorecard(ws, EARLY_FEB)}
    assert after["visitor_to_signup"] == 1.0


def test_new_events_patch_only_their_actors_rows(sqlite_ctx: Context) -> None:
    """New events recompute the rows of the actors they belong to, from those actors' events
    alone (after a merge: the survivor's, and the merged person's rows go); the figures equal
    a full recomputation."""
    ws = sqlite_ctx.workspaces.create_workspace("patch").id
    msgs = [to_segment("track", e, who, True, 24 * 28 + 5 * who + k, "acme" if who % 2 else None)
            for who in range(6) for k, e in enumerate(EVENTS)]  # fmt: skip
    msgs += [to_segment("billing", "", 1, True, 24 * 35, "acme")]
    # u9 on one device; on another, still anonymous (a9), signs up and activates
    laptop = to_segment("track", "dashboard_viewed", 9, True, 24 * 20)
    msgs += [laptop | {"anonymousId": "laptop-9"}]
    msgs += [to_segment("track", e, 9, False, 24 * 29 + k) for k, e in enumerate(EVENTS[:4])]
    svc = _warmed(sqlite_ctx, ws, msgs)
    rows = svc._actor_rows
    patched: list[int] = []
    original = rows._patch

    def spy(*args: Any) -> Any:
        table = original(*args)
        patched.append(-1 if table is None else table.num_rows)
        return table

    rows._patch = spy  # type: ignore[method-assign]
    for batch in (
        [to_segment("track", "project_created", 2, True, 24 * 40)],  # a known person
        [to_segment("track", "signed_up", 7, True, 24 * 41, "globex")],  # someone new
        [to_segment("billing", "", 3, True, 24 * 42, "acme")],  # the account's MRR moves
        [to_segment("track", "report_created", 4, True, 24 * 10)],  # late: in a closed period
        [to_segment("identify", "", 9, True, 24 * 44)],  # a merge: a9's rows become u9's
    ):
        sqlite_ctx.ingest.ingest_sync(ws, batch, normalize_segment)
        patched.clear()
        for r in (EARLY_FEB, MARCH):
            fresh = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces).scorecard(ws, r)
            assert svc.scorecard(ws, r) == fresh
        assert patched and -1 not in patched  # every kept query was patched, none recomputed


def test_the_server_warms_each_scorecard_as_it_starts(settings: Any) -> None:
    """The first view of the dashboard finds the scorecard computed: the server computes
    every workspace's default scorecard as it starts (then every minute)."""
    from tests.conftest import LiveServer

    with LiveServer(settings) as first:
        ws = first.ctx.workspaces.create_workspace("warm").id
        msgs = [
            to_segment("track", e, who, True, 24 * 28 + who) for who in range(4) for e in EVENTS
        ]
        first.ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    with LiveServer(settings) as server:
        svc = server.ctx.analytics
        r = svc.default_range(ws)
        keys = {(ws, k, p) for k in BY_KEY for p in (r, previous_range(r))}
        deadline = time.monotonic() + 30  # well before the next round, a minute on
        while time.monotonic() < deadline:
            with svc._scorecard._lock:
                warmed = {(key[0], key[1], key[2]) for key in svc._scorecard._entries}
            if keys <= warmed:
                break
            time.sleep(0.1)
        assert keys <= warmed
        calls: list[str] = []
        svc.kpi = lambda *a, **k: calls.append(a[1])  # type: ignore[method-assign]
        svc.scorecard(ws, r)
        assert calls == []  # nothing left to compute


def test_the_latest_event_follows_new_events_and_deletions(sqlite_ctx: Context) -> None:
    """The latest event's time is read from the events stored since it was last read; a
    deletion (which may remove the latest event) reads the log again."""
    ws = sqlite_ctx.workspaces.create_workspace("latest").id
    svc = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces)

    def send(who: int, hours: int) -> None:
        msg = to_segment("track", "dashboard_viewed", who, True, hours)
        assert not sqlite_ctx.ingest.ingest_sync(ws, [msg], normalize_segment).rejected

    assert svc._latest_event(ws) is None
    send(1, 10)
    assert svc._latest_event(ws) == START + timedelta(hours=10)
    send(2, 30)
    assert svc._latest_event(ws) == START + timedelta(hours=30)
    send(1, 20)  # a late event: the latest stays
    assert svc._latest_event(ws) == START + timedelta(hours=30)
    other = sqlite_ctx.workspaces.create_workspace("latest-other").id  # moves the head only
    sqlite_ctx.ingest.ingest_sync(
        other, [to_segment("track", "signed_up", 5, True, 900)], normalize_segment
    )
    assert svc._latest_event(ws) == START + timedelta(hours=30)
    sqlite_ctx.privacy.delete_person(ws, "u2")  # the latest event goes with its person
    assert svc._latest_event(ws) == START + timedelta(hours=20)


def test_concurrent_patches_read_the_new_events_actors_once(sqlite_ctx: Context) -> None:
    """The scorecard patches its kept queries on several threads: the events of the actors
    that new events touched are read once for all of them, not once per thread."""
    ws = sqlite_ctx.workspaces.create_workspace("single-read").id
    msgs = [to_segment("track", e, who, True, 24 * 28 + 5 * who + k)
            for who in range(4) for k, e in enumerate(EVENTS)]  # fmt: skip
    svc = _warmed(sqlite_ctx, ws, msgs)
    rows = svc._actor_rows
    finds: list[tuple[Any, ...]] = []
    original = rows._find

    def slow_find(*args: Any) -> Any:
        finds.append(args)
        time.sleep(0.2)  # every thread asks meanwhile
        return original(*args)

    rows._find = slow_find  # type: ignore[method-assign]
    batch = [to_segment("track", "report_created", 2, True, 24 * 40)]
    sqlite_ctx.ingest.ingest_sync(ws, batch, normalize_segment)
    fresh = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces).scorecard(ws, MARCH)
    assert svc.scorecard(ws, MARCH) == fresh
    assert finds and len(finds) == len(set(finds))  # one read per (since, head, kind)


def test_the_events_a_query_reads_are_its_matchers_names_and_call_types() -> None:
    from traction.analytics.compile.params import reads_of
    from traction.analytics.compile.peractor import Reads
    from traction.analytics.domain.specs import EventMatcher

    def m(event: str) -> EventMatcher:
        return EventMatcher(event=event)

    reads = reads_of(m("signed_up"), m("$page"), m("report_created"))
    assert reads == Reads(frozenset({"signed_up", "report_created"}), frozenset({"page"}))
    assert reads.any_of([("pricing", "page")])  # any page call, whatever its name
    assert reads.any_of([("x", "track"), ("report_created", "track")])
    assert not reads.any_of(
        [("pricing", "screen"), ("dashboard_viewed", "track"), (None, "identify")]
    )
    assert reads_of(m("signed_up"), m("$any")) is None  # every event can matter
    assert reads_of(None) is None  # no matcher: every event counts (an active user)


def test_a_query_is_not_patched_for_events_it_does_not_read(sqlite_ctx: Context) -> None:
    """A dashboard view changes no funnel of sign-ups: queries that read only named events are
    left as they were, those that read every event are patched, and the figures still equal a
    full recomputation. A merge patches them all (it moves events between people)."""
    import threading

    ws = sqlite_ctx.workspaces.create_workspace("unread").id
    msgs = [to_segment("track", e, who, True, 24 * 28 + 5 * who + k, "acme" if who % 2 else None)
            for who in range(6) for k, e in enumerate(EVENTS)]  # fmt: skip
    # u9 on one device; on another, still anonymous (a9), signs up and activates
    msgs += [to_segment("track", "dashboard_viewed", 9, True, 24 * 20) | {"anonymousId": "l9"}]
    msgs += [to_segment("track", e, 9, False, 24 * 29 + k) for k, e in enumerate(EVENTS[:4])]
    svc = _warmed(sqlite_ctx, ws, msgs)
    rows = svc._actor_rows
    patched: list[tuple[Any, bool]] = []  # (what the query reads, whether it was recomputed)
    asked = threading.local()
    original_patch, original_affected = rows._patch, rows.affected

    def affected(*args: Any) -> Any:
        asked.yes = True
        return original_affected(*args)

    def patch(ws: str, q: Any, *args: Any) -> Any:
        asked.yes = False
        table = original_patch(ws, q, *args)
        patched.append((q.reads, asked.yes))
        return table

    rows._patch, rows.affected = patch, affected  # type: ignore[method-assign]
    for batch, name in (
        ([to_segment("track", "dashboard_viewed", 2, True, 24 * 40)], "dashboard_viewed"),
        ([to_segment("page", "", 3, True, 24 * 40)], None),
        ([to_segment("track", "signed_up", 7, True, 24 * 41)], "signed_up"),
        ([to_segment("identify", "", 9, True, 24 * 44)], None),  # a merge: a9 becomes u9
    ):
        sqlite_ctx.ingest.ingest_sync(ws, batch, normalize_segment)
        patched.clear()
        fresh = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces).scorecard(ws, MARCH)
        assert svc.scorecard(ws, MARCH) == fresh
        merge = batch[0]["type"] == "identify"
        kind = (name, batch[0]["type"])
        for reads, recomputed in patched:
            assert recomputed == (merge or reads is None or reads.any_of([kind])), (kind, reads)
        assert any(r is None for r, _ in patched) and any(r is not None for r, _ in patched)
        if name == "signed_up":
            assert any(r is not None and r.any_of([kind]) for r, _ in patched)


def _counting(svc: AnalyticsService) -> list[tuple[str, DateRange]]:
    """The KPIs `svc` computes from here on (values found in a cache are not computed)."""
    calls: list[tuple[str, DateRange]] = []
    original = svc.kpi

    def counting(workspace_id: str, key: str, r: DateRange, config: Any = None) -> float | None:
        calls.append((key, r))
        return original(workspace_id, key, r, config)

    svc.kpi = counting  # type: ignore[method-assign]
    return calls


def test_final_values_are_kept_for_the_next_process(sqlite_ctx: Context) -> None:
    """A new process (a restart, `traction report`) reads the final values an earlier one kept
    and computes the rest; a late event, a merge or an erasure makes a kept value stale like any
    other, and values kept by other definitions' code are never read."""
    from traction.analytics import kept as kept_module
    from traction.analytics.kept import KeptValues

    ws = sqlite_ctx.workspaces.create_workspace("kept").id
    base = [to_segment("track", e, i, True, 24 * 30 + 3 * i + k)
            for i in range(4) for k, e in enumerate(EVENTS)]  # fmt: skip
    base += [to_segment("track", "dashboard_viewed", 0, True, 24 * 70)]  # April 12
    base += [to_segment("page", "", 9, False, 30), to_segment("track", "signed_up", 9, True, 31)]
    base[-1].pop("anonymousId")  # a visitor (a9) who signs up as u9: not linked yet
    sqlite_ctx.ingest.ingest_sync(ws, base, normalize_segment)
    kept = KeptValues(sqlite_ctx.state)

    def process() -> tuple[list[dict[str, Any]], list[tuple[str, DateRange]]]:
        svc = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces, kept=kept)
        calls = _counting(svc)
        rows = svc.scorecard(ws, EARLY_FEB) + svc.scorecard(ws, MARCH)
        return rows, calls

    def fresh() -> list[dict[str, Any]]:
        svc = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces)
        return svc.scorecard(ws, EARLY_FEB) + svc.scorecard(ws, MARCH)

    first, calls = process()
    assert len(calls) == 4 * len(BY_KEY) and first == fresh()
    latest = datetime(2026, 4, 12)  # Feb 1 + 70 days: every KPI reading no further is final
    config = sqlite_ctx.analytics.kpi_config(ws)
    final = {(k, r) for k, r in calls if reads_until(BY_KEY[k], r, config, "UTC") <= latest}
    assert 0 < len(final) < len(calls)
    assert len(kept.load(ws)) == len(final)

    again, calls = process()  # nothing new: only what was not final is computed
    assert again == first and not set(calls) & final
    assert len(calls) == 4 * len(BY_KEY) - len(final)

    # a merge timestamped after every window (a9 is u9) changes early February's visitors
    link = to_segment("identify", "", 9, True, 24 * 71)
    sqlite_ctx.ingest.ingest_sync(ws, [link], normalize_segment)
    rows, calls = process()
    assert rows == fresh() and rows != first
    assert {k for k, r in calls if r == EARLY_FEB} == set(BY_KEY)
    first = rows

    # a late event on Feb 3: early February's values and those reading that far are stale
    late = to_segment("track", "signed_up", 7, True, 24 * 2)
    sqlite_ctx.ingest.ingest_sync(ws, [late], normalize_segment)
    rows, calls = process()
    assert rows == fresh() and rows != first
    assert {k for k, r in calls if r == EARLY_FEB} == set(BY_KEY)

    # other definitions' code: nothing kept is read
    kept_module.definitions.cache_clear()
    original = kept_module.definitions
    try:
        kept_module.definitions = lambda: "other code"  # type: ignore[assignment]
        rows, calls = process()
        assert rows == fresh() and len(calls) == 4 * len(BY_KEY)
    finally:
        kept_module.definitions = original


def test_an_actor_sending_event_after_event_is_read_from_their_new_events(
    sqlite_ctx: Context,
) -> None:
    """The events of the people last patched are kept: their next event costs a read of what
    they sent since, not of their whole history, until a merge makes that unsafe."""
    ws = sqlite_ctx.workspaces.create_workspace("delta").id
    msgs = [to_segment("track", e, who, True, 24 * 28 + 5 * who + k)
            for who in range(4) for k, e in enumerate(EVENTS)]  # fmt: skip
    # u2 signed up first on another device (l2), not linked yet: a separate person
    msgs += [to_segment("track", "signed_up", 2, False, 24 * 20) | {"anonymousId": "l2"}]
    svc = _warmed(sqlite_ctx, ws, msgs)
    rows = svc._actor_rows
    reads: list[str] = []
    original = rows._run

    def spy(sql: str, params: dict[str, object], tables: dict[str, Any]) -> Any:
        if "person_id IN (" in sql and "old_person_id FROM person_overrides" in sql:
            reads.append("new only" if "$after" in sql else "whole")
        return original(sql, params, tables)

    rows._run = spy  # type: ignore[method-assign]
    for batch, expected in (
        ([to_segment("track", "project_created", 2, True, 24 * 40)], "whole"),  # read once
        ([to_segment("track", "report_created", 2, True, 24 * 41)], "new only"),  # then only
        ([to_segment("track", "teammate_invited", 2, True, 24 * 42)], "new only"),  # the new
        # l2 is u2: the merge moves l2's sign-up to u2, which u2's kept events do not have
        ([to_segment("identify", "", 2, True, 24 * 43) | {"anonymousId": "l2"}], "whole"),
    ):
        sqlite_ctx.ingest.ingest_sync(ws, batch, normalize_segment)
        reads.clear()
        fresh = AnalyticsService(sqlite_ctx.events, sqlite_ctx.workspaces).scorecard(ws, MARCH)
        assert svc.scorecard(ws, MARCH) == fresh
        assert reads[0] == expected and (expected == "whole" or "whole" not in reads), reads
        for (_, by, actors), (head, changes, events) in rows._events_of.items():
            whole = ActorRows(svc._arrow)._events(ws, by, list(actors), head, changes)
            assert sorted(events["seq"].to_pylist()) == sorted(whole["seq"].to_pylist())
    # an erasure: the events kept in memory go at the next computation, whatever it reads
    assert rows._events_of
    sqlite_ctx.privacy.delete_person(ws, "u2")
    svc.kpi(ws, "stickiness", EARLY_FEB)
    assert not rows._events_of


def test_kpis_are_computed_longest_first_and_those_sharing_a_result_last() -> None:
    from traction.analytics.domain.kpis import CATALOG, KPIConfig
    from traction.analytics.scorecard import _in_order

    c = KPIConfig()
    keys = [("ws", k.key, r, c, "UTC") for k in CATALOG for r in (MARCH, EARLY_FEB)]
    order = _in_order(keys)
    assert sorted(order, key=keys.index) == keys  # the same keys
    insights = [BY_KEY[k[1]].insight for k in order]
    assert insights[:2] == ["sessions", "sessions"]  # the longest queries start at once
    seen: set[tuple[str, DateRange]] = set()
    shared_at = []
    for i, k in enumerate(order):
        if (BY_KEY[k[1]].insight, k[2]) in seen:
            shared_at.append(i)
        seen.add((BY_KEY[k[1]].insight, k[2]))
    # every KPI reading a result another computes comes after every KPI that computes one
    assert shared_at == list(range(len(order) - len(shared_at), len(order)))
    assert insights.count("plg_revenue") > 2


def test_values_saved_at_once_by_two_computations_are_kept_once(ctx: Context) -> None:
    """The dashboard's refresh and a sparkline may compute and save one value together: the
    save is one upsert on either store, never a unique-key error, and the later value wins."""
    from concurrent.futures import ThreadPoolExecutor

    from traction.analytics.kept import KeptValues
    from traction.analytics.scorecard import Entry

    ws = ctx.workspaces.create_workspace("race").id
    kept = KeptValues(ctx.state)
    until = datetime(2026, 3, 1)

    def entries(value: float) -> dict[str, Entry]:
        return {f"k{i:02d}": Entry(value + i, 7, (0, 0), until, True) for i in range(40)}

    for _ in range(5):
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda v: kept.save(ws, entries(v)), [1.0, 1.0, 1.0, 1.0]))
    assert {k: e.value for k, e in kept.load(ws).items()} == {
        f"k{i:02d}": 1.0 + i for i in range(40)
    }
    kept.save(ws, entries(100.0))
    assert kept.load(ws)["k03"].value == 103.0
