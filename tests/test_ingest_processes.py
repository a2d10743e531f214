"""Batches prepared in an ingest process (parsed, validated and encoded there, committed by the
writer here) store what the in-process path stores: the same rows, people, traits and
accounts, the same refusals. Then the server's processes, through HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.ingest.prepare import SegmentJob, from_wire, prepare_segment_batch
from traction.privacy.domain import ConsentPolicy, PrivacyPolicy
from traction.settings import Settings

T0 = datetime(2026, 11, 2, 9, 0)
IDS = ["anon-1", "anon-2", "u-1", "u-2", "null"]  # "null": a junk id, never merged on


@st.composite
def message(draw: st.DrawFn, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "track", "identify", "alias", "group", "page", "bad"]))
    m: dict[str, Any] = {
        "messageId": f"m{draw(st.integers(0, 40))}",  # repeats: redeliveries in one batch
        "timestamp": (T0 + timedelta(minutes=i)).isoformat() + "Z",
        "anonymousId": draw(st.sampled_from([None, *IDS[:2], "null"])),
        "userId": draw(st.sampled_from([None, *IDS[2:]])),
    }
    if kind == "bad":
        return {**m, "type": "track"}  # no event name: refused, by position
    m["type"] = kind
    if kind == "track":
        m["event"] = draw(st.sampled_from(["signed_up", "opened", "$limit_reached"]))
        m["properties"] = draw(st.dictionaries(st.sampled_from("abc"), st.integers(-3, 3) | st.text(max_size=3), max_size=2))  # fmt: skip
    if kind in ("identify", "group", "track") and draw(st.booleans()):
        m["traits"] = {"plan": draw(st.sampled_from(["free", "pro"])), "n": i}
    if kind == "alias":
        m["previousId"] = draw(st.sampled_from(IDS[:2]))
        m["userId"] = draw(st.sampled_from(IDS[2:4]))
    if kind == "group":
        m["groupId"] = draw(st.sampled_from(["acme", "globex"]))
    if draw(st.booleans()):
        m["context"] = {"consent": {"categoryPreferences": {"Analytics": draw(st.booleans())}}}
    return {k: v for k, v in m.items() if v is not None}


@st.composite
def batches(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4))
    n = 0
    out = []
    for size in sizes:
        out.append([draw(message(n + k)) for k in range(size)])
        n += size
    return out


def stored(ctx: Context, ws: str) -> list[tuple[Any, ...]]:
    """The workspace's rows in log order, with each person named by their first distinct id
    in the log (person ids are random) and without the time of arrival."""
    with ctx.events.reading() as cur:
        rows = cur.execute(
            "SELECT event_id, type, name, timestamp, anonymous_id, user_id, distinct_id, "
            "person_id, account_id, properties, context FROM events WHERE workspace_id = ? "
            "ORDER BY seq",
            [ws],
        ).fetchall()
    names: dict[str, str] = {}
    for r in rows:
        names.setdefault(r[7], r[6])
    return [(*r[:7], names[r[7]], *r[8:]) for r in rows]


def people(ctx: Context, ws: str) -> dict[str, tuple[Any, ...]]:
    out = {}
    for did in IDS:
        p = ctx.persons.by_distinct_id(ws, did)
        if p is not None:
            out[did] = (sorted(p.distinct_ids), p.is_identified, p.traits, p.accounts)
    return out


def both_ways(
    ctx: Context, requests: list[list[dict[str, Any]]], policy: ConsentPolicy | None = None
) -> tuple[str, str, list[Any], list[Any]]:
    here = ctx.workspaces.create_workspace("Here").id
    there = ctx.workspaces.create_workspace("There").id
    if policy is not None:
        for ws in (here, there):
            ctx.privacy.set_policy(ws, PrivacyPolicy(consent=policy))
    said_here, said_there = [], []
    for messages in requests:
        said_here.append(ctx.ingest.ingest_sync(here, messages, normalize_segment).rejected)
        body = orjson.dumps({"batch": messages})
        job = SegmentJob(body, T0, None, 32 * 1024, policy, False)
        prepared = from_wire(prepare_segment_batch(job))
        if prepared.rows.num_rows:
            ctx.writer.submit_prepared(there, prepared).result(timeout=30)
        said_there.append(prepared.rejected)
    return here, there, said_here, said_there


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=batches())
def test_prepared_batches_store_what_the_in_process_path_stores(
    sqlite_ctx: Context, requests: list[list[dict[str, Any]]]
) -> None:
    # (one data dir for all examples: each example has two workspaces of its own)
    here, there, said_here, said_there = both_ways(sqlite_ctx, requests)
    assert said_here == said_there
    assert stored(sqlite_ctx, here) == stored(sqlite_ctx, there)
    assert people(sqlite_ctx, here) == people(sqlite_ctx, there)


@pytest.mark.parametrize("missing", ["store", "drop"])
def test_the_consent_policy_applies_in_the_process(sqlite_ctx: Context, missing: str) -> None:
    policy = ConsentPolicy(required_categories=["Analytics"], when_missing=missing)  # type: ignore[arg-type]
    consent = [{"consent": {"categoryPreferences": {"Analytics": ok}}} for ok in (True, False)]
    messages = [
        {
            "type": "track",
            "event": "e",
            "userId": "u-1",
            "messageId": f"c{i}",
            "context": c,
            "timestamp": "2026-11-02T09:00:00Z",
        }
        for i, c in enumerate([*consent, {}])
    ]
    here, there, _, _ = both_ways(sqlite_ctx, [messages], policy)
    kept = [r[0] for r in stored(sqlite_ctx, there)]
    assert kept == (["c0", "c2"] if missing == "store" else ["c0"])
    assert stored(sqlite_ctx, here) == stored(sqlite_ctx, there)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "request body is empty"),
        (b"{", "body is not valid JSON"),
        (b"[]", "body must be an object"),
        (b'{"batch": {}}', "batch must be a list"),
        (b'{"batch": [], "extra": 1}', "unknown field 'extra'"),
        (b'{"batch": [], "sentAt": "yesterday"}', "sentAt"),
        (b'{"batch": [], "context": 3}', "context must be an object"),
    ],
)
def test_a_refused_body_says_why(body: bytes, problem: str) -> None:
    wire = prepare_segment_batch(SegmentJob(body, T0, None, 32 * 1024, None, False))
    assert isinstance(wire, str) and problem in wire


def test_duckdb_sees_one_row_per_message(sqlite_ctx: Context) -> None:
    """A request redelivered (a client retry) stores nothing twice, whichever path took it."""
    ws = sqlite_ctx.workspaces.create_workspace("Acme").id
    messages = [{"type": "track", "event": "e", "userId": "u", "messageId": f"r{i}"} for i in range(3)]  # fmt: skip
    job = SegmentJob(orjson.dumps({"batch": messages}), T0, None, 32 * 1024, None, False)
    for _ in range(2):
        sqlite_ctx.writer.submit_prepared(ws, from_wire(prepare_segment_batch(job))).result()
    sqlite_ctx.ingest.ingest_sync(ws, messages, normalize_segment)
    assert [r[0] for r in stored(sqlite_ctx, ws)] == ["r0", "r1", "r2"]


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings.model_copy(update={"ingest_processes": 2})) as s:
        yield s


def test_the_servers_processes_answer_as_the_server_would(server: LiveServer) -> None:
    """Once its ingest processes are ready, a server's answers are those of the in-process
    path: 200 and stored, each refused event by position, a refused body, a wrong key."""
    ws = server.ctx.workspaces.create_workspace("Acme")
    processes = server.ctx.ingest.processes
    assert processes is not None
    deadline = time.monotonic() + 30
    while not processes.available():
        assert time.monotonic() < deadline, "the ingest processes did not start"
        time.sleep(0.05)
    good = {"type": "track", "event": "e", "userId": "u-1", "messageId": "p1"}
    with server.client(auth=(ws.write_key, "")) as c:
        r = c.post("/v1/batch", json={"batch": [good, {"type": "track", "userId": "u"}]})
        assert r.status_code == 400 and r.json()["accepted"] == 1
        assert [x["index"] for x in r.json()["rejected"]] == [1]
        assert "event" in r.json()["rejected"][0]["error"]
        r = c.post("/v1/batch", content=b'{"batch": [], "extra": 1}')
        assert r.status_code == 400 and "unknown field 'extra'" in r.json()["error"]
    with server.client(auth=("wk_wrong", "")) as c:
        assert c.post("/v1/batch", json={"batch": [good]}).status_code == 401
    assert [r[0] for r in stored(server.ctx, ws.id)] == ["p1"]
    assert server.ctx.metrics.ingest_processes._value.get() == processes.size


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(orjson.dumps),
    json_values.map(lambda v: orjson.dumps({"batch": v})),
    st.lists(json_values, max_size=4).map(lambda b: orjson.dumps({"batch": b})),
    st.lists(st.dictionaries(st.sampled_from(["type", "event", "userId", "anonymousId", "timestamp", "properties", "traits", "context", "messageId"]), json_values), max_size=4)
    .map(lambda b: orjson.dumps({"batch": b, "sentAt": "2026-11-02T09:00:00Z"})),
)  # fmt: skip


@hsettings(max_examples=300, deadline=None)
@given(body=bodies)
def test_any_body_is_prepared_or_refused_never_raises(body: bytes) -> None:
    """What runs in an ingest process answers every body: rows and per-event errors, or the
    reason the body is refused (an exception there would reach the client as a 503)."""
    wire = prepare_segment_batch(SegmentJob(body, T0, None, 32 * 1024, None, False))
    if isinstance(wire, str):
        assert wire
        return
    prepared = from_wire(wire)
    assert prepared.rows.num_rows + len(prepared.rejected) == len(orjson.loads(body)["batch"])


KEYS: dict[int, str] = {}  # each server's workspace, for all the examples


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies)
def test_fuzzed_batches_through_the_processes_never_answer_5xx(
    server: LiveServer, body: bytes
) -> None:
    ctx = server.ctx
    if id(server) not in KEYS:
        KEYS[id(server)] = ctx.workspaces.create_workspace("Acme").write_key
    key = KEYS[id(server)]
    processes = ctx.ingest.processes
    assert processes is not None
    deadline = time.monotonic() + 30
    while not processes.available():
        assert time.monotonic() < deadline, "the ingest processes did not start"
        time.sleep(0.05)
    with server.client(auth=(key, "")) as c:
        r = c.post("/v1/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text
