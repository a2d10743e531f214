"""The event and property catalog: pure rules, then kept by its reactor on SQLite and
PostgreSQL and checked against a count of the log itself."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_dashboard import page  # noqa: F401  (shared fixture)
from traction.catalog.domain import (
    MAX_VALUES,
    catalog_event,
    infer_type,
    main_type,
    merge_values,
    tally,
    value_key,
)
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.worker import ReactorRunner, default_reactors

# -- pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "boolean"), (3, "number"), (2.5, "number"), ("pro", "string"),
        ("2026-03-01", "datetime"), ("2026-03-01T10:00:00Z", "datetime"), ("2026-13-45", "string"),
        ([1], "list"), ({"a": 1}, "object"), (None, "null"), ("1234-abc", "string"),
    ],
)  # fmt: skip
def test_infer_type(value: Any, kind: str) -> None:
    assert infer_type(value) == kind


def test_names_values_and_types() -> None:
    assert [catalog_event(k, n) for k, n in [("track", "x"), ("page", "pricing"), ("screen", "s"), ("identify", None), ("group", None)]] == ["x", "$page", "$screen", None, None]  # fmt: skip
    assert (value_key(True), value_key(3), value_key("a" * 200), value_key([1])) == ("true", "3", None, None)  # fmt: skip
    assert main_type({"null": 9, "number": 2, "string": 1}) == "number"
    assert main_type({"null": 3}) == "null" and main_type({}) == "null"


def test_top_values_keep_the_first_come_and_count_on() -> None:
    kept = merge_values({}, Counter({f"v{i}": i + 1 for i in range(MAX_VALUES + 5)}))
    assert len(kept) == MAX_VALUES and "v34" in kept and "v0" not in kept  # most frequent first
    again = merge_values(kept, Counter({"v34": 10, "new": 100}))
    assert again["v34"] == 45 and "new" not in again  # full: counted on, no newcomers
    assert next(iter(again)) == "v34"


def _ev(
    seq: int, kind: str, name: str | None, props: dict[str, Any], ws: str = "w"
) -> dict[str, Any]:
    return {"workspace_id": ws, "seq": seq, "type": kind, "name": name, "timestamp": datetime(2026, 3, seq % 28 + 1), "properties": props}  # fmt: skip


def test_tally_skips_what_a_row_has_counted() -> None:
    batch = [
        _ev(1, "track", "buy", {"plan": "pro", "n": 1}),
        _ev(2, "track", "buy", {"plan": "team"}),
        _ev(3, "page", "pricing", {"path": "/p"}),
        _ev(4, "identify", None, {"$set": {"email": "a@b.c"}}),
        _ev(5, "group", None, {"$set": {"seats": 4}}),
    ]
    t = tally(batch, {}, {})
    assert {k: v.count for k, v in t.events.items()} == {("w", "buy"): 2, ("w", "$page"): 1}
    assert t.properties[("w", ("event", "buy", "plan"))].values == Counter({"pro": 1, "team": 1})
    assert ("w", ("person", "", "email")) in t.properties
    assert ("w", ("account", "", "seats")) in t.properties
    # a redelivered batch: rows that counted up to seq 2 skip events 1 and 2
    again = tally(batch, {("w", "buy"): 2}, {("w", ("event", "buy", "plan")): 2})
    assert ("w", "buy") not in again.events
    assert ("w", ("event", "buy", "plan")) not in again.properties


# -- kept by the reactor, checked against the log ------------------------------------------


def _send(ctx: Context, ws: str, msgs: list[dict[str, Any]]) -> None:
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected


def _run(ctx: Context) -> ReactorRunner:
    runner = ReactorRunner(
        ctx.state, ctx.events, default_reactors(ctx.state), ctx.metrics, batch_size=7
    )
    runner.run_once()
    return runner


def test_catalog_matches_the_log_and_redelivery_is_harmless(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("Cat").id
    other = ctx.workspaces.create_workspace("Other").id
    msgs: list[dict[str, Any]] = []
    for i in range(40):
        msgs.append({"type": "track", "userId": f"u{i % 6}", "event": ["report_created", "signed_up", "invite_sent"][i % 3],
                     "properties": {"plan": ["free", "pro"][i % 2], "seats": i, "beta": i % 5 == 0},
                     "timestamp": f"2026-03-{i % 27 + 1:02d}T10:00:00Z"})  # fmt: skip
    msgs += [{"type": "page", "anonymousId": "a1", "name": "pricing", "properties": {"path": "/pricing"}},
             {"type": "identify", "userId": "u1", "traits": {"email": "u1@x.io", "role": "admin"}},
             {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"industry": "retail"}}]  # fmt: skip
    _send(ctx, ws, msgs)
    _send(ctx, other, [{"type": "track", "userId": "z", "event": "secret_thing"}])
    runner = _run(ctx)

    names = Counter(m["event"] for m in msgs if m["type"] == "track")
    got = {e["name"]: e for e in ctx.catalog.events(ws)}
    assert {n: e["volume"] for n, e in got.items()} == {**names, "$page": 1}
    assert got["report_created"]["first_seen_at"] == "2026-03-01T10:00:00"
    assert "secret_thing" not in got  # workspaces are separate
    props = {p["name"]: p for p in ctx.catalog.properties(ws, event="report_created")}
    assert props["seats"]["type"] == "number" and props["beta"]["type"] == "boolean"
    assert props["plan"]["count"] == names["report_created"]
    plan_values = ctx.catalog.values(ws, "plan", event="report_created")
    want = Counter(m["properties"]["plan"] for m in msgs if m.get("event") == "report_created")
    assert {v["value"]: v["count"] for v in plan_values} == dict(want)
    assert [p["name"] for p in ctx.catalog.properties(ws, source="person")] == ["email", "role"]
    assert [p["name"] for p in ctx.catalog.properties(ws, source="account")] == ["industry"]
    assert ctx.catalog.values(ws, "email", source="person", q="U1") == [
        {"value": "u1@x.io", "count": 1}
    ]

    # every batch again, as after a crash between handling and saving the cursor
    for r in runner.reactors:
        if r.name == "catalog":
            r.handle(ctx.events.events_after(0, 10_000, r.columns))
    assert {e["name"]: e["volume"] for e in ctx.catalog.events(ws)} == {**names, "$page": 1}
    assert ctx.catalog.values(ws, "plan", event="report_created")[0]["count"] == max(want.values())

    # annotations survive new events
    ctx.catalog.update_event(
        ws, "signed_up", description="A new account", verified=True, tags=["core"]
    )
    _send(ctx, ws, [{"type": "track", "userId": "u9", "event": "signed_up"}])
    _run(ctx)
    e = ctx.catalog.event(ws, "signed_up")
    assert (e["volume"], e["description"], e["verified"], e["tags"]) == (
        names["signed_up"] + 1,
        "A new account",
        True,
        ["core"],
    )
    ctx.catalog.update_event(ws, "invite_sent", hidden=True)
    assert "invite_sent" not in [x["name"] for x in ctx.catalog.events(ws, include_hidden=False)]
    assert ctx.catalog.unknown_events(ws, ["signed_up", "sign_up", "$any", "$page"]) == ["sign_up"]


# -- API, page, CLI, warnings ----------------------------------------------------------------


def _wait_catalog(server: Any, ws: str, n: int) -> None:
    import time

    deadline = time.monotonic() + 20
    while sum(e["volume"] for e in server.ctx.catalog.events(ws)) < n:
        assert time.monotonic() < deadline, "the catalog reactor did not catch up"
        time.sleep(0.05)


def test_catalog_api_and_insight_warnings(server: Any) -> None:
    w = server.ctx.workspaces.create_workspace("API")
    other = server.ctx.workspaces.create_workspace("Other")
    _send(server.ctx, w.id, [{"type": "track", "userId": "u", "event": "signed_up", "properties": {"plan": "pro"}},
                             {"type": "track", "userId": "v", "event": "signed_up", "properties": {"plan": "free"}}])  # fmt: skip
    _wait_catalog(server, w.id, 2)
    auth = {"Authorization": f"Bearer {w.secret_key}"}
    with server.client() as c:
        r = c.get("/api/v1/catalog/events", headers=auth)
        assert [(e["name"], e["volume"]) for e in r.json()] == [("signed_up", 2)]
        r = c.get("/api/v1/catalog/properties", params={"event": "signed_up"}, headers=auth)
        assert [(p["name"], p["type"]) for p in r.json()] == [("plan", "string")]
        r = c.get(
            "/api/v1/catalog/values",
            params={"event": "signed_up", "property": "plan", "q": "pr"},
            headers=auth,
        )
        assert r.json() == [{"value": "pro", "count": 1}]
        r = c.patch(
            "/api/v1/catalog/events/signed_up",
            json={"description": "New account", "verified": True},
            headers=auth,
        )
        assert r.status_code == 200 and r.json()["verified"] is True
        assert (
            c.patch("/api/v1/catalog/events/nope", json={"hidden": True}, headers=auth).status_code
            == 404
        )
        bad = c.patch("/api/v1/catalog/events/signed_up", json={"verfied": True}, headers=auth)
        assert bad.status_code == 422 and "verfied" in bad.json()["error"]
        assert (
            c.get(
                "/api/v1/catalog/properties", params={"source": "robot"}, headers=auth
            ).status_code
            == 422
        )
        # another workspace's key sees nothing of this one; a write key is refused
        other_auth = {"Authorization": f"Bearer {other.secret_key}"}
        assert c.get("/api/v1/catalog/events", headers=other_auth).json() == []
        assert c.get("/api/v1/catalog/events", auth=(w.write_key, "")).status_code == 403
        # an insight on a misspelt event warns; on a real one it does not
        spec = {
            "steps": [{"event": "signed_up"}, {"event": "sigend_up"}],
            "range": {"date_from": "2026-01-01", "date_to": "2026-12-31"},
        }
        r = c.post("/api/v1/insights/funnel", json=spec, headers=auth)
        assert (
            r.status_code == 200
            and len(r.json()["warnings"]) == 1
            and "'sigend_up'" in r.json()["warnings"][0]
        )
        spec["steps"][1] = {"event": "$any"}
        assert c.post("/api/v1/insights/funnel", json=spec, headers=auth).json()["warnings"] == []


def test_catalog_cli_works_while_the_server_runs(server: Any) -> None:
    from typer.testing import CliRunner

    from traction.cli import app

    w = server.ctx.workspaces.create_workspace("CLI")
    _send(
        server.ctx,
        w.id,
        [
            {
                "type": "track",
                "userId": "u",
                "event": "report_created",
                "properties": {"kind": "chart"},
            }
        ],
    )
    _wait_catalog(server, w.id, 1)
    data_dir = str(server.ctx.settings.data_dir)
    runner = CliRunner()
    r = runner.invoke(
        app, ["catalog", "events", "--data-dir", data_dir, "--workspace", "CLI", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert [e["name"] for e in json.loads(r.stdout)] == ["report_created"]
    r = runner.invoke(
        app,
        [
            "catalog",
            "properties",
            "--event",
            "report_created",
            "--data-dir",
            data_dir,
            "--workspace",
            "CLI",
        ],
    )
    assert r.exit_code == 0 and "kind" in r.stdout and "chart (1)" in r.stdout
    r = runner.invoke(
        app,
        [
            "catalog",
            "describe",
            "report_created",
            "--description",
            "A report",
            "--verified",
            "--data-dir",
            data_dir,
            "--workspace",
            "CLI",
        ],
    )
    assert r.exit_code == 0 and server.ctx.catalog.event(w.id, "report_created")["verified"] is True
    r = runner.invoke(
        app, ["catalog", "describe", "nope", "--data-dir", data_dir, "--workspace", "CLI"]
    )
    assert r.exit_code == 1 and "no event 'nope'" in r.stderr


@pytest.mark.browser
def test_data_page_lists_events_properties_and_saves_notes(page: Any, server: Any) -> None:  # noqa: F811
    from tests.test_dashboard import login

    w = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [w.id])
    _send(server.ctx, w.id, [{"type": "track", "userId": "u", "event": "plan_upgraded", "properties": {"to": "team"}},
                             {"type": "identify", "userId": "u", "traits": {"email": "u@acme.io"}}])  # fmt: skip
    _wait_catalog(server, w.id, 1)
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.get_by_role("link", name="Data").click()
    table = page.get_by_test_id("catalog-events")
    row = table.locator("tr[data-event=plan_upgraded]")
    assert "plan_upgraded" in row.inner_text()
    assert "email" in page.get_by_test_id("person-traits").inner_text()
    row.get_by_test_id("event-link").click()
    props = page.get_by_test_id("event-properties")
    props.wait_for()
    assert "team (1)" in props.inner_text()
    row.get_by_label("Description of plan_upgraded").fill("Moved to a paid plan")
    row.get_by_label("Verified").check()
    row.get_by_role("button", name="Save").click()
    page.wait_for_url("**/data")
    assert server.ctx.catalog.event(w.id, "plan_upgraded")["description"] == "Moved to a paid plan"
    assert (
        "✓"
        in page.get_by_test_id("catalog-events")
        .locator("tr[data-event=plan_upgraded]")
        .inner_text()
    )


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.conftest import LiveServer
    from traction.settings import Settings

    s = Settings(data_dir=tmp_path_factory.mktemp("catfuzz") / "data", log_json=False)
    with LiveServer(s) as server:
        w = server.ctx.workspaces.create_workspace("Fuzz")
        _send(
            server.ctx,
            w.id,
            [{"type": "track", "userId": "u", "event": "e", "properties": {"p": 1}}],
        )
        yield server, w


_text = st.text(max_size=30)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text, lambda i: st.lists(i, max_size=3) | st.dictionaries(_text, i, max_size=3), max_leaves=8)  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/api/v1/catalog/events", "/api/v1/catalog/properties", "/api/v1/catalog/values"]),
    params=st.dictionaries(st.sampled_from(["q", "source", "event", "property", "limit", "include_hidden"]), _text, max_size=4),
    name=_text,
    body=_json,
)  # fmt: skip
def test_fuzz_catalog_api_never_5xx(
    fuzz_api: Any, path: str, params: dict[str, str], name: str, body: Any
) -> None:
    import httpx

    server, w = fuzz_api
    auth = {"Authorization": f"Bearer {w.secret_key}"}
    r = httpx.get(server.url + path, params=params, headers=auth, timeout=30)
    assert r.status_code in (200, 422), (path, params, r.text)
    r = httpx.patch(
        f"{server.url}/api/v1/catalog/events/{quote(name or 'e', safe='')}",
        json=body,
        headers=auth,
        timeout=30,
    )
    assert r.status_code in (200, 404, 422), (name, body, r.text)


def test_no_false_warning_while_the_catalog_catches_up(sqlite_ctx: Context) -> None:
    """Right after a bulk import the catalog's reactor has not read the events yet: the
    events themselves decide, so a name that did arrive never gets a warning."""
    ws = sqlite_ctx.workspaces.create_workspace("Late").id
    msgs = [{"type": "track", "userId": "u", "event": "signed_up", "messageId": "1"}]
    assert not sqlite_ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    assert sqlite_ctx.catalog.events(ws) == []  # no reactor ran here
    in_log = lambda names: sqlite_ctx.events.names_present(ws, names)  # noqa: E731
    assert sqlite_ctx.catalog.warnings(ws, ["signed_up"], in_log) == []
    (only,) = sqlite_ctx.catalog.warnings(ws, ["signed_up", "sigend_up"], in_log)
    assert "'sigend_up' has never been received" in only


# -- the tally against a value-by-value reference ------------------------------------------


def _reference_tally(
    batch: list[dict[str, Any]],
    applied_events: dict[tuple[str, str], int],
    applied_properties: dict[tuple[str, Any], int],
    known_counts: dict[tuple[str, str, str], int],
    counted: bool,
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """The catalog's rules, one event and one value at a time (how `tally` first did it)."""
    from traction.catalog.domain import MAX_PROPERTIES_PER_EVENT, property_sources

    def fresh(seq: int, applied: int) -> bool:
        return seq <= applied if counted else seq > applied

    events: dict[Any, list[Any]] = {}
    props: dict[Any, list[Any]] = {}
    per_event = Counter(known_counts)
    for ev in batch:
        ws, seq = ev["workspace_id"], ev["seq"]
        name = catalog_event(ev["type"], ev["name"])
        if name is not None and fresh(seq, applied_events.get((ws, name), 0)):
            e = events.setdefault((ws, name), [0, None, None, 0])
            e[0] += 1
            e[1] = ev["timestamp"] if e[1] is None else min(e[1], ev["timestamp"])
            e[2] = ev["timestamp"] if e[2] is None else max(e[2], ev["timestamp"])
            e[3] = max(e[3], seq)
        for (source, event, _), p in property_sources(ev):
            for prop, value in p.items():
                if source == "event" and prop in ("$set", "$set_once"):
                    continue
                key = (ws, (source, event, str(prop)[:200]))
                if not fresh(seq, applied_properties.get(key, 0)):
                    continue
                if key not in props:
                    scope = (ws, source, event)
                    if key not in applied_properties:
                        if per_event[scope] >= MAX_PROPERTIES_PER_EVENT:
                            continue
                        per_event[scope] += 1
                    props[key] = [0, Counter(), Counter(), 0]
                t = props[key]
                t[0] += 1
                t[1][infer_type(value)] += 1
                if (k := value_key(value)) is not None:
                    t[2][k] += 1
                t[3] = max(t[3], seq)
    return {k: tuple(v) for k, v in events.items()}, {k: tuple(v) for k, v in props.items()}


_LONG = "k" * 200
_values = st.one_of(
    st.booleans(), st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, 2.5, 10**20]), st.integers(),
    st.floats(allow_nan=False), st.sampled_from(["pro", "free", "2026-03-01", "2026-03-01T10:00:00Z",
    "2026-13-45", "x" * 130, ""]), st.text(max_size=8), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a"]), st.integers(), max_size=1), st.none(),
)  # fmt: skip
_props = st.dictionaries(
    st.sampled_from(["plan", "n", "$set", "$set_once", _LONG + "a", _LONG + "b", "x"]), _values,
    max_size=5,
)  # fmt: skip


@st.composite
def _batches(draw: Any) -> tuple[Any, ...]:
    n = draw(st.integers(0, 25))
    seqs = draw(st.permutations(list(range(1, n + 1))))
    batch = []
    for seq in seqs:
        kind = draw(st.sampled_from(["track", "page", "screen", "identify", "group", "alias"]))
        props = draw(_props)
        if kind in ("identify", "group") and draw(st.booleans()):
            props = {**props, "$set": draw(_props)}
        batch.append({
            "workspace_id": draw(st.sampled_from(["w1", "w2"])), "seq": seq, "type": kind,
            "name": draw(st.sampled_from(["buy", "view", None])),
            "timestamp": datetime(2026, 3, 1 + seq % 28), "properties": props,
        })  # fmt: skip
    scopes = [(w, "event", e) for w in ("w1", "w2") for e in ("buy", "view", "$page", "$screen")]
    scopes += [(w, s, "") for w in ("w1", "w2") for s in ("person", "account")]
    names = ["plan", "n", "x", (_LONG + "a")[:200]]
    applied_events = draw(
        st.dictionaries(st.sampled_from([(w, e) for w, _, e in scopes]), st.integers(0, n))
    )
    applied_props = draw(
        st.dictionaries(
            st.sampled_from([(w, (s, e, p)) for w, s, e in scopes for p in names]),
            st.integers(0, n),
        )
    )
    known = draw(st.dictionaries(st.sampled_from(scopes), st.sampled_from([0, 298, 299, 300])))
    return batch, applied_events, applied_props, known, draw(st.booleans())  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_tally_equals_the_value_by_value_rules(case: tuple[Any, ...]) -> None:
    """`tally` works per distinct value and per property; it must agree with the rules
    applied to each value of each event: redeliveries (`applied`), erasures (`counted`), the
    cap on properties per event, names cut to 200 characters, True against 1, 0.0 against
    -0.0, lists and objects."""
    batch, applied_events, applied_props, known, counted = case
    events, props = _reference_tally(batch, applied_events, applied_props, known, counted)
    t = tally(batch, applied_events, applied_props, known, counted=counted)
    assert {k: (v.count, v.first, v.last, v.max_seq) for k, v in t.events.items()} == events
    got = {k: (v.count, +v.types, +v.values, v.max_seq) for k, v in t.properties.items()}
    assert got == {k: (c, +ty, +va, m) for k, (c, ty, va, m) in props.items()}


@pytest.mark.parametrize(
    "values",
    [[0.0, -0.0, -0.0], [-0.0, 0.0], [True, 1, 1.0, False, 0], [[1], {"a": 1}, 1, "1", None]],
)
def test_tally_keeps_equal_values_of_other_kinds_apart(values: list[Any]) -> None:
    batch = [_ev(i + 1, "track", "buy", {"v": v}) for i, v in enumerate(values)]
    _, props = _reference_tally(batch, {}, {}, {}, False)
    t = tally(batch, {}, {}).properties[("w", ("event", "buy", "v"))]
    assert (t.count, +t.types, +t.values) == props[("w", ("event", "buy", "v"))][:3]
