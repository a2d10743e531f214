"""Lists that scale: persons and accounts searched, counted, sorted and paged, checked against
a plain-Python computation over the generated data."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, web_client
from traction.ingest.domain import normalize_segment

START = datetime(2026, 3, 1, 9, 0)
PLANS = ("free", "pro", "enterprise")


def ts(hours: float) -> str:
    return (START + timedelta(hours=hours)).isoformat() + "Z"


@pytest.fixture
def crowd(server: LiveServer) -> dict[str, Any]:
    ws = server.ctx.workspaces.create_workspace("Crowd")
    msgs: list[dict[str, Any]] = []
    people = {}
    for i in range(120):
        uid = f"u{i}"
        plan = PLANS[i % 3]
        people[uid] = {"email": f"person-{i}@acme.io", "plan": plan, "last": i}
        msgs.append({"type": "identify", "userId": uid, "anonymousId": f"anon-{i}", "timestamp": ts(i),
                     "traits": {"email": f"person-{i}@acme.io", "plan": plan}, "messageId": f"id-{i}"})  # fmt: skip
    # a busy person: 130 events
    msgs += [{"type": "track", "userId": "u7", "event": "clicked", "timestamp": ts(200 + k / 10), "messageId": f"c{k}"} for k in range(130)]  # fmt: skip
    # known only by a user id (no identify call): still identified
    msgs.append(
        {
            "type": "track",
            "userId": "only-user",
            "event": "x",
            "timestamp": ts(300),
            "messageId": "ou",
        }
    )
    msgs.append(
        {"type": "page", "anonymousId": "just-anon", "timestamp": ts(301), "messageId": "ja"}
    )
    # accounts: acme has 3 members (joined Mar 1), globex 1 member but more recent events
    for uid, group in [("u1", "acme"), ("u2", "acme"), ("u3", "acme"), ("u4", "globex")]:
        msgs.append({"type": "group", "userId": uid, "groupId": group, "timestamp": ts(10),
                     "traits": {"name": group.title()}, "messageId": f"g-{uid}"})  # fmt: skip
    msgs += [{"type": "track", "userId": "u4", "event": "used", "timestamp": ts(400 + k), "messageId": f"gx{k}"} for k in range(5)]  # fmt: skip
    assert not server.ctx.ingest.ingest_sync(ws.id, msgs, normalize_segment).rejected
    # the server's reactors (last seen, the catalog, journeys) caught up: nothing moves while
    # the tests page through people by last seen
    runner, head = server.app.state.reactors, server.ctx.events.max_seq()
    deadline = time.monotonic() + 30
    while any(runner.position(r.name) < head for r in runner.reactors):
        assert time.monotonic() < deadline, "the reactors did not catch up"
        time.sleep(0.05)
    return {"ws": ws, "people": people}


def api(server: LiveServer, crowd: dict[str, Any]) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", auth=(crowd["ws"].secret_key, ""))


def test_persons_search_counts_and_pages(server: LiveServer, crowd: dict[str, Any]) -> None:
    c = api(server, crowd)
    everyone = c.get("/persons/search", params={"limit": 1000}).json()
    assert everyone["total"] == 122  # 120 identified + only-user + just-anon
    # by id: any part of a distinct id (user or anonymous)
    got = c.get("/persons/search", params={"q": "u1", "limit": 1000}).json()
    expected = {u for u in crowd["people"] if "u1" in u}
    assert got["total"] == len(expected) == 31
    assert {p["user_id"] for p in got["persons"]} == expected
    # by a trait value
    got = c.get("/persons/search", params={"q": "ENTERPRISE", "limit": 1000}).json()
    assert got["total"] == sum(1 for p in crowd["people"].values() if p["plan"] == "enterprise")
    got = c.get("/persons/search", params={"q": "person-42@"}).json()
    assert [p["user_id"] for p in got["persons"]] == ["u42"] and got["persons"][0][
        "shown_id"
    ] == "u42"
    # pages: disjoint, in last-seen order, covering everyone
    pages = [
        c.get("/persons/search", params={"offset": o, "limit": 50}).json()["persons"]
        for o in (0, 50, 100)
    ]
    ids = [p["id"] for page in pages for p in page]
    assert [len(p) for p in pages] == [50, 50, 22] and len(set(ids)) == 122
    seen = [p["last_seen_at"] for page in pages for p in page]
    assert seen == sorted(seen, reverse=True)
    # identified: by an identify call, or simply by being known under a user id
    only = c.get("/persons/search", params={"q": "only-user"}).json()["persons"][0]
    anon = c.get("/persons/search", params={"q": "just-anon"}).json()["persons"][0]
    assert only["is_identified"] is True and only["shown_id"] == "only-user"
    assert anon["is_identified"] is False and anon["user_id"] is None
    assert c.get(f"/persons/{only['id']}").json()["is_identified"] is True


def test_a_persons_events_are_paged_with_the_true_total(
    server: LiveServer, crowd: dict[str, Any]
) -> None:
    c = api(server, crowd)
    u7 = c.get("/persons", params={"distinct_id": "u7"}).json()
    first = c.get(f"/persons/{u7['id']}/events", params={"limit": 100}).json()
    rest = c.get(f"/persons/{u7['id']}/events", params={"limit": 100, "offset": 100}).json()
    assert len(first) == 100 and len(rest) == 31  # 130 clicks + the identify
    assert server.ctx.events.count(crowd["ws"].id, person_id=u7["id"]) == 131
    assert {e["event_id"] for e in first}.isdisjoint({e["event_id"] for e in rest})


def test_accounts_search_sort_and_activity(server: LiveServer, crowd: dict[str, Any]) -> None:
    c = api(server, crowd)
    by_members = c.get("/accounts", params={"sort": "members"}).json()
    assert [(a["key"], a["members"]) for a in by_members] == [("acme", 3), ("globex", 1)]
    by_events = c.get("/accounts", params={"sort": "events_30d"}).json()
    assert [(a["key"], a["events_30d"]) for a in by_events] == [
        ("globex", 6),
        ("acme", 3),
    ]  # the group calls count
    assert by_members[0]["since"] == "2026-03-01T19:00:00"  # its first membership, not load time
    assert [a["key"] for a in c.get("/accounts", params={"q": "glob"}).json()] == ["globex"]
    assert c.get("/accounts", params={"sort": "size"}).status_code == 422
    assert c.get("/accounts/acme").json()["since"] == "2026-03-01T19:00:00"


def test_list_pages_search_and_page(server: LiveServer, crowd: dict[str, Any]) -> None:
    svc = server.ctx.workspaces
    svc.create_user("pat@acme.io", "s3cret-pass", [crowd["ws"].id])
    with web_client(server, "pat@acme.io") as web:
        ws = crowd["ws"].id
        page = web.get(f"/w/{ws}/persons").text
        assert "122 in all" in page and "page 1 of 3" in page
        assert 'data-testid="person-link">u119<' in page  # the user's own id, not an internal one
        assert "31 match" in web.get(f"/w/{ws}/persons", params={"q": "u1"}).text
        u7 = server.ctx.persons.by_distinct_id(ws, "u7")
        assert "131 in all" in web.get(f"/w/{ws}/persons/{u7.id}").text  # type: ignore[union-attr]
        accounts = web.get(f"/w/{ws}/accounts", params={"sort": "events_30d"}).text
        assert accounts.index('data-key="globex"') < accounts.index('data-key="acme"')
