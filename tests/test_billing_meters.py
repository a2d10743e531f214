"""Meters on real stores: what the meter reactor keeps equals a recomputation from the raw
event log, for random event streams with duplicates, reorderings and redeliveries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.store.models import ReactorCursor
from traction.worker import ReactorRunner, default_reactors

AGGS = ["COUNT", "SUM", "MAX", "UNIQUE_COUNT", "LATEST"]
CATALOG = {
    "meters": [{"key": a.lower(), "event": "used", "aggregation": a,
                **({} if a == "COUNT" else {"value_property": "$.n"}),
                **({"filters": {"kind": "a"}} if a == "SUM" else {})} for a in AGGS],
    "features": [{"key": f"{a.lower()}_{r}", "type": "metered", "meter": a.lower(), "reset": r}
                 for a in AGGS for r in ("day", "month", "never")],
    "plans": [{"key": "free", "kind": "free"}],
}  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    from traction.settings import Settings

    c = Context.open(
        Settings(data_dir=tmp_path_factory.mktemp("meters"), log_json=False), start_writer=False
    )
    try:
        yield c
    finally:
        c.close()


EVENT = st.fixed_dictionaries({
    "name": st.sampled_from(["used", "used", "other"]),
    "account": st.sampled_from(["acme", "globex"]),
    "n": st.one_of(st.integers(-5, 50), st.floats(0, 10, allow_nan=False).map(lambda f: round(f, 2)),
                   st.sampled_from(["x", None, True])),
    "kind": st.sampled_from(["a", "b"]),
    "minutes": st.integers(0, 60 * 24 * 70),  # ten weeks: days and months both roll over
    "dup": st.booleans(),
})  # fmt: skip


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(EVENT, max_size=40), st.integers(1, 7), st.integers(1, 9), st.integers(0, 10))
def test_reactor_values_equal_a_recomputation(shared: Context, events: list[dict[str, Any]],
                                              chunk: int, batch: int, rewind: int) -> None:  # fmt: skip
    ctx = shared
    ws = ctx.workspaces.create_workspace("m").id
    ctx.billing.apply_catalog(ws, CATALOG)
    t0 = datetime(2026, 1, 20)
    msgs = []
    for i, e in enumerate(events):
        m = {"type": "track", "userId": f"u-{e['account']}", "event": e["name"], "messageId": f"m{i}",
             "timestamp": (t0 + timedelta(minutes=e["minutes"])).isoformat() + "Z",
             "properties": {"n": e["n"], "kind": e["kind"]}, "context": {"groupId": e["account"]}}  # fmt: skip
        msgs.append(m)
        if e["dup"]:  # a client retry: the same message again, later in the stream
            msgs.append(dict(m))
    for start in range(0, len(msgs), chunk):
        ctx.ingest.ingest_sync(ws, msgs[start : start + chunk], normalize_segment)
    runner = ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state, ctx.catalog, ctx.billing),
                           ctx.metrics, batch_size=batch)  # fmt: skip
    runner.run_once()
    # a crash before the cursor moved: the meters see part of the log again
    with ctx.state.session() as s:
        row = s.get(ReactorCursor, "billing.meters")
        if row is not None:
            row.position = max(0, row.position - rewind)
    runner.run_once()
    for account in ("acme", "globex"):
        log = ctx.events.account_events(ws, account, ["used"])
        for f in CATALOG["features"]:
            kept = {w: v for w, v in ctx.billing.meter_values(ws, account, f["key"]).items()}
            assert kept == ctx.billing.recompute(ws, account, f["key"], log), (account, f["key"])


def test_meter_values_by_hand(shared: Context) -> None:
    """Five events of one account over two days, one sent twice, one arriving late."""
    ctx = shared
    ws = ctx.workspaces.create_workspace("hand").id
    ctx.billing.apply_catalog(ws, CATALOG)
    rows = [  # (messageId, day, hour, n, kind)
        ("a", 1, 9, 5, "a"), ("b", 1, 10, 7, "b"), ("c", 2, 8, 3, "a"),
        ("a", 1, 9, 5, "a"),  # a retry: stored once
        ("d", 1, 8, 2, "a"),  # arrives last, happened first on day 1
    ]  # fmt: skip
    msgs = [{"type": "track", "userId": "u1", "event": "used", "messageId": mid,
             "timestamp": f"2026-03-0{day}T{hour:02d}:00:00Z", "properties": {"n": n, "kind": k},
             "context": {"groupId": "acme"}} for mid, day, hour, n, k in rows]  # fmt: skip
    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state, ctx.catalog, ctx.billing),
                  ctx.metrics).run_once()  # fmt: skip
    d1, d2, month = datetime(2026, 3, 1), datetime(2026, 3, 2), datetime(2026, 3, 1)
    val = lambda f: {w: float(v) for w, v in ctx.billing.meter_values(ws, "acme", f).items()}  # noqa: E731
    assert val("count_day") == {d1: 3, d2: 1}  # a, b, d on day 1; c on day 2
    assert val("sum_month") == {month: 10}  # kind a only: 5 + 3 + 2
    assert val("max_day") == {d1: 7, d2: 3}
    assert val("unique_count_month") == {month: 4}  # 5, 7, 3, 2
    assert val("latest_day") == {d1: 7, d2: 3}  # by event time: b (10:00) is day 1's latest, not d
    assert list(val("count_never").values()) == [4]
    # the entitlement reads the current window's value (a free plan without the feature: 0 used)


def test_live_usage_crossing_a_limit_records_the_upgrade_triggers(sqlite_ctx: Context) -> None:
    """Free allows 3 projects: the 2nd is 67%, the 3rd 100% fires `$limit_reached` (a step
    straight past 80% to the limit fires only that); a 4th (the product sent it anyway) fires
    nothing new. History older than a day is a backfill: no triggers."""
    import time
    from pathlib import Path

    import yaml

    ctx = sqlite_ctx
    now = datetime(2026, 3, 10, 12)
    ctx.billing.now = lambda: now
    ws = ctx.workspaces.create_workspace("Live").id
    example = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"
    ctx.billing.apply_catalog(ws, yaml.safe_load(example.read_text()))

    def project(i: int, account: str, when: datetime) -> dict[str, Any]:
        return {"type": "track", "userId": f"u-{account}", "event": "project_created",
                "messageId": f"p-{account}-{i}", "timestamp": when.isoformat() + "Z",
                "context": {"groupId": account}}  # fmt: skip

    live = [project(i, "acme", now - timedelta(hours=4 - i)) for i in range(4)]
    old = [project(i, "initech", now - timedelta(days=30 - i)) for i in range(4)]
    assert not ctx.ingest.ingest_sync(ws, live + old, normalize_segment).rejected
    runner = ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state, ctx.catalog, ctx.billing),
                           ctx.metrics)  # fmt: skip
    runner.run_once()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ctx.events.count(ws) < 9:
        time.sleep(0.02)
    triggers = [e for e in ctx.events.recent(ws, limit=100) if e["name"].startswith("$limit")]
    assert [(e["name"], e["properties"]["usage"], e["user_id"]) for e in triggers] == [
        ("$limit_reached", 3, "u-acme")]  # fmt: skip
    assert triggers[0]["timestamp"] == now - timedelta(hours=2)  # the 3rd project's time
    runner.run_once()  # the trigger itself passes through the meters: nothing more
    assert ctx.events.count(ws) == 9


def test_billing_period_meters_follow_each_accounts_subscription(shared: Context) -> None:
    """A feature reset each billing period counts in the account's own periods (anchored at
    its subscription's start, read for the batch's accounts at once); an account without a
    subscription counts in calendar months. Equal to a recomputation, and by hand."""
    ctx = shared
    ws = ctx.workspaces.create_workspace("periods").id
    ctx.billing.apply_catalog(ws, {
        "meters": [{"key": "calls", "event": "used", "aggregation": "COUNT"}],
        "features": [{"key": "calls", "type": "metered", "meter": "calls", "reset": "billing_period"}],
        "plans": [{"key": "pro", "prices": [{"interval": "month", "flat": 10}]}],
    })  # fmt: skip
    now, ctx.billing.now = ctx.billing.now, lambda: datetime(2026, 1, 15, 12)
    try:
        sub = ctx.billing.subscribe(ws, "acme", "pro", trial=False)
    finally:
        ctx.billing.now = now
    anchor = sub.period_start
    days = [-3, -1, 0, 2, 20, 29, 31, 40]  # around the anchor and the next period's start
    msgs = [{"type": "track", "userId": f"u-{acct}", "event": "used", "messageId": f"{acct}{d}",
             "timestamp": (anchor + timedelta(days=d, hours=1)).isoformat() + "Z",
             "context": {"groupId": acct}} for acct in ("acme", "globex") for d in days]  # fmt: skip
    ctx.ingest.ingest_sync(ws, msgs, normalize_segment)
    ReactorRunner(ctx.state, ctx.events, default_reactors(ctx.state, ctx.catalog, ctx.billing),
                  ctx.metrics, batch_size=5).run_once()  # fmt: skip
    for acct in ("acme", "globex"):
        log = [e for e in ctx.events.events_after(0, 1_000_000)
               if e["workspace_id"] == ws and e["account_id"] == acct]  # fmt: skip
        kept = ctx.billing.meter_values(ws, acct, "calls")
        assert kept == ctx.billing.recompute(ws, acct, "calls", log), acct
    acme = ctx.billing.meter_values(ws, "acme", "calls")
    assert sum(acme.values()) == len(days) and anchor in acme
    assert acme[anchor] == sum(1 for d in days if 0 <= d < (sub.period_end - anchor).days)
    globex = ctx.billing.meter_values(ws, "globex", "calls")
    assert all(w.day == 1 and w.hour == 0 for w in globex)  # calendar months
