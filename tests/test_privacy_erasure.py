"""Erasing a person: gone from every query, page, export and catalog value, their ids
suppressed, and gone from the files on disk after a purge (checked by reading the bytes)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, web_client
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)
from traction.analytics.domain.specs import FunnelSpec, TrendSpec
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.settings import Settings
from traction.store.events import _MIGRATIONS
from traction.worker import ReactorRunner, default_reactors

RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-05"}


def eve(marker: str) -> list[dict[str, Any]]:
    """The person to erase: two anonymous ids merged into one user (alias + identify), with
    a unique marker in a trait, in an event property and in one of her ids."""
    anon2 = f"anon-{marker}"
    return [
        {"type": "page", "anonymousId": "eve-a1", "name": "pricing", "timestamp": "2026-03-01T09:00:00Z", "messageId": "e1"},
        {"type": "track", "anonymousId": anon2, "event": "signed_up", "properties": {"note": marker}, "timestamp": "2026-03-01T09:01:00Z", "messageId": "e2"},
        {"type": "alias", "previousId": anon2, "userId": "u-eve", "timestamp": "2026-03-01T09:02:00Z", "messageId": "e3"},
        {"type": "identify", "anonymousId": "eve-a1", "userId": "u-eve", "traits": {"email": f"{marker}@example.com", "plan": "pro"}, "timestamp": "2026-03-01T09:03:00Z", "messageId": "e4"},
        {"type": "group", "userId": "u-eve", "groupId": "acme", "traits": {"name": "Acme"}, "timestamp": "2026-03-01T09:04:00Z", "messageId": "e5"},
    ] + [
        {"type": "track", "userId": "u-eve", "event": "clicked", "properties": {"plan": "pro", "ref": marker}, "timestamp": f"2026-03-02T10:{i:02d}:00Z", "messageId": f"ec{i}"}
        for i in range(5)
    ]  # fmt: skip


def keeper() -> list[dict[str, Any]]:
    return [
        {"type": "identify", "userId": "u-kim", "traits": {"email": "kim@example.com", "plan": "pro"}, "timestamp": "2026-03-01T08:00:00Z", "messageId": "k0"},
        {"type": "track", "userId": "u-kim", "event": "signed_up", "timestamp": "2026-03-01T08:01:00Z", "messageId": "k1"},
        {"type": "group", "userId": "u-kim", "groupId": "acme", "timestamp": "2026-03-01T08:02:00Z", "messageId": "k2"},
    ] + [
        {"type": "track", "userId": "u-kim", "event": "clicked", "properties": {"plan": "pro"}, "timestamp": f"2026-03-03T10:{i:02d}:00Z", "messageId": f"kc{i}"}
        for i in range(3)
    ]  # fmt: skip


def catch_up(ctx: Context) -> None:
    ReactorRunner(
        ctx.state, ctx.events, default_reactors(ctx.state, ctx.catalog), ctx.metrics
    ).run_once()


def queries(ctx: Context, ws: str) -> dict[str, Any]:
    trend = TrendSpec.model_validate({"series": [{"event": {"event": "clicked"}}], "range": RANGE})
    funnel = FunnelSpec.model_validate(
        {"steps": [{"event": "signed_up"}, {"event": "clicked"}], "range": RANGE}
    )
    return {
        "trend": ctx.analytics.trend(ws, trend),
        "funnel": ctx.analytics.funnel(ws, funnel),
        "events": ctx.events.count(ws),
    }


def on_disk(data_dir: Path, needle: bytes) -> list[str]:
    """Every file under the data dir holding `needle`."""
    return sorted(
        str(f.relative_to(data_dir))
        for f in data_dir.rglob("*")
        if f.is_file() and needle in f.read_bytes()
    )


def test_erasure_removes_the_person_everywhere(ctx: Context, tmp_path: Path) -> None:
    marker = "mk" + uuid.uuid4().hex[:16]
    ws = ctx.workspaces.create_workspace("Acme").id
    assert not ctx.ingest.ingest_sync(ws, eve(marker) + keeper(), normalize_segment).rejected
    catch_up(ctx)
    eve_view = ctx.persons.by_distinct_id(ws, "u-eve")
    assert eve_view is not None and len(ctx.events.merged_ids(ws, eve_view.id)[0]) == 2
    queries(ctx, ws)  # cached now: the erasure must invalidate these
    values = ctx.catalog.values(ws, "email", source="person")
    assert f"{marker}@example.com" in {v["value"] for v in values}

    erasure = ctx.privacy.delete_person(ws, "u-eve")  # any of her ids will do
    assert (erasure.events, erasure.person_ids, erasure.suppressed) == (10, 2, True)
    assert erasure.distinct_ids == 3  # eve-a1, anon-…, u-eve

    # the same answers as a workspace that only ever had the keeper
    fresh = Context.open(Settings(data_dir=tmp_path / "fresh", log_json=False))
    try:
        only = fresh.workspaces.create_workspace("Acme").id
        assert not fresh.ingest.ingest_sync(only, keeper(), normalize_segment).rejected
        expected = queries(fresh, only)
    finally:
        fresh.close()
    got = queries(ctx, ws)
    assert got["events"] == expected["events"] == 6
    assert got["trend"] == expected["trend"]
    assert got["funnel"] == expected["funnel"]

    for did in ("u-eve", "eve-a1", f"anon-{marker}"):
        assert ctx.persons.by_distinct_id(ws, did) is None
    assert ctx.persons.get(ws, eve_view.id) is None
    assert ctx.privacy.export_person(ws, eve_view.id) is None
    people, total = ctx.persons.search(ws, "")
    assert total == 1 and people[0]["traits"]["email"] == "kim@example.com"
    members = ctx.accounts.get(ws, "acme")
    assert members is not None and [m["person_id"] for m in members.members] == [
        ctx.persons.by_distinct_id(ws, "u-kim").id  # type: ignore[union-attr]
    ]
    assert not any(marker in str(e) for e in ctx.events.recent(ws, limit=1000))

    # the catalog: her values gone, shared values counted down, volumes back to the keeper's
    for source, prop, event in (("person", "email", None), ("event", "ref", "clicked"),
                                ("event", "note", "signed_up")):  # fmt: skip
        vals = {v["value"] for v in ctx.catalog.values(ws, prop, source=source, event=event)}
        assert not any(marker in v for v in vals), (prop, vals)
    plans = {
        v["value"]: v["count"]
        for v in ctx.catalog.values(ws, "plan", source="event", event="clicked")
    }
    assert plans == {"pro": 3}
    volumes = {e["name"]: e["volume"] for e in ctx.catalog.events(ws)}
    assert volumes["clicked"] == 3 and volumes["signed_up"] == 1 and volumes["$page"] == 0

    # late events from an SDK queue: dropped, the person is not recreated
    late = [
        {"type": "track", "userId": "u-eve", "event": "clicked", "timestamp": "2026-03-04T10:00:00Z", "messageId": "late1"},
        {"type": "page", "anonymousId": "eve-a1", "timestamp": "2026-03-04T10:01:00Z", "messageId": "late2"},
        {"type": "track", "userId": "u-new", "event": "clicked", "timestamp": "2026-03-04T10:02:00Z", "messageId": "late3"},
    ]  # fmt: skip
    assert ctx.ingest.ingest_sync(ws, late, normalize_segment).accepted == 3
    assert ctx.persons.by_distinct_id(ws, "u-eve") is None
    assert ctx.persons.by_distinct_id(ws, "eve-a1") is None
    assert ctx.persons.by_distinct_id(ws, "u-new") is not None  # others are not held back
    assert ctx.events.count(ws) == 7
    assert ctx.metrics.events.labels("suppressed")._value.get() == 2

    # recorded (counts only: the log does not name her ids)
    (entry,) = ctx.audit.entries(ws, action="person.deleted")
    assert entry["details"]["events"] == 10 and entry["actor"] == "system"
    assert "u-eve" not in str(entry) and marker not in str(entry)

    # erasing again: nothing left to find
    with pytest.raises(LookupError):
        ctx.privacy.delete_person(ws, "u-eve")


def test_bytes_leave_the_disk_after_a_purge(sqlite_ctx: Context) -> None:
    """The control comes first: the marker is readable in the files before the erasure and
    still there after DuckDB's DELETE and CHECKPOINT; only the purge removes it."""
    ctx = sqlite_ctx
    data_dir = ctx.settings.data_dir
    marker = "mk" + uuid.uuid4().hex[:16]
    ws = ctx.workspaces.create_workspace("Acme").id
    assert not ctx.ingest.ingest_sync(ws, eve(marker) + keeper(), normalize_segment).rejected
    catch_up(ctx)
    ctx.events._con.execute("CHECKPOINT")
    needle = marker.encode()
    before = on_disk(data_dir, needle)
    assert "events.duckdb" in before and any(f.startswith("state.db") for f in before), before

    ctx.privacy.delete_person(ws, "u-eve")
    ctx.events._con.execute("CHECKPOINT")
    assert "events.duckdb" in on_disk(data_dir, needle)  # DELETE alone keeps the bytes
    assert not [f for f in on_disk(data_dir, needle) if f.startswith("state.db")]
    assert ctx.events.pending_purge() == 1

    result = ctx.privacy.purge()
    assert on_disk(data_dir, needle) == []
    assert ctx.events.pending_purge() == 0 and result.deletions == 1
    # the store still works on the new file: reads, writes, dedupe of what was stored
    assert ctx.events.count(ws) == 6
    assert ctx.ingest.ingest_sync(ws, keeper(), normalize_segment).accepted == 6
    assert ctx.events.count(ws) == 6
    assert ctx.events.schema_version == _MIGRATIONS[-1][0]


def test_purge_while_ingesting_loses_and_doubles_nothing(sqlite_ctx: Context) -> None:
    """Events acknowledged during a purge (some land in its snapshot, some after it) are all
    in the new file, once."""
    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("Acme").id
    base = [
        {"type": "track", "userId": f"u{i % 50}", "event": "e", "timestamp": "2026-03-01T00:00:00Z", "messageId": f"b{i}"}
        for i in range(20_000)
    ]  # fmt: skip
    ctx.ingest.ingest_sync(ws, base, normalize_segment)
    ctx.privacy.delete_person(ws, "u7")
    acked: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        n = 0
        while not stop.is_set():
            batch = [
                {"type": "track", "userId": "live", "event": "e", "timestamp": "2026-03-02T00:00:00Z", "messageId": f"l{n}-{j}"}
                for j in range(50)
            ]  # fmt: skip
            ctx.writer.submit([(ws, normalize_segment(m, normalize_now())) for m in batch]).result()
            acked.extend(m["messageId"] for m in batch)
            n += 1

    t = threading.Thread(target=ingest)
    t.start()
    try:
        result = ctx.privacy.purge()
    finally:
        stop.set()
        t.join()
    assert result.deletions == 1 and len(acked) > 0
    with ctx.events.reading() as cur:
        rows = cur.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events WHERE user_id = 'live'"
        ).fetchone()
    assert rows == (len(acked), len(acked))
    assert ctx.events.count(ws) == 20_000 - 400 + len(acked)


def normalize_now() -> Any:
    from traction.ingest.service import now_utc

    return now_utc()


def test_erasure_over_http_and_the_dashboard(server: LiveServer) -> None:
    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("admin@acme.io", "s3cret-pass", [ws.id], "admin")
    ctx.workspaces.create_user("member@acme.io", "s3cret-pass", [ws.id], "member")
    marker = "mk" + uuid.uuid4().hex[:16]
    ctx.ingest.ingest_sync(ws.id, eve(marker) + keeper(), normalize_segment)
    eve_id = ctx.persons.by_distinct_id(ws.id, "u-eve").id  # type: ignore[union-attr]
    kim_id = ctx.persons.by_distinct_id(ws.id, "u-kim").id  # type: ignore[union-attr]

    r = httpx.delete(f"{server.url}/api/v1/persons/{eve_id}", auth=(ws.write_key, ""))
    assert r.status_code == 403  # a write key only ingests
    with web_client(server, "member@acme.io") as member:
        assert member.post(f"/w/{ws.id}/persons/{eve_id}/delete").status_code == 403
        page = member.get(f"/w/{ws.id}/persons/{eve_id}").text
        assert 'data-testid="delete-person"' not in page

    r = httpx.delete(f"{server.url}/api/v1/persons/{eve_id}", auth=(ws.secret_key, ""))
    assert r.status_code == 200, r.text
    assert r.json() | {"person_id": None} == {
        "person_id": None, "person_ids": 2, "distinct_ids": 3, "events": 10,
        "suppressed": True, "purge_pending": True,
    }  # fmt: skip
    again = httpx.delete(f"{server.url}/api/v1/persons/{eve_id}", auth=(ws.secret_key, ""))
    assert again.status_code == 404 and "no person" in again.json()["error"]

    with web_client(server, "admin@acme.io") as admin:
        assert admin.get(f"/w/{ws.id}/persons/{eve_id}").status_code == 404
        assert 'data-testid="delete-person"' in admin.get(f"/w/{ws.id}/persons/{kim_id}").text
        r = admin.post(f"/w/{ws.id}/persons/{kim_id}/delete")
        assert r.status_code == 200 and 'data-testid="erased"' in r.text
        assert ctx.persons.get(ws.id, kim_id) is None
        audit = admin.get(f"/w/{ws.id}/audit").text
        assert "user:admin@acme.io" in audit and "person.deleted" in audit
        privacy = admin.get(f"/w/{ws.id}/privacy").text
        assert "2 deletions waiting" in privacy
        r = admin.post(f"/w/{ws.id}/privacy/purge")
        assert r.status_code == 200 and "Purged in" in r.text
    assert on_disk(ctx.settings.data_dir, marker.encode()) == []
    entries = ctx.audit.entries(ws.id, action="person.deleted")
    assert [e["actor"] for e in entries] == ["user:admin@acme.io", f"key:{_key_id(ctx, ws.id)}"]


def _key_id(ctx: Context, ws_id: str) -> str:
    (key,) = [k for k in ctx.workspaces.list_keys(ws_id) if k.scope == "admin"]
    return str(key.id)


@pytest.mark.browser
def test_delete_button_asks_first(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """In Chromium, under the page's Content-Security-Policy: dismissing the confirmation
    erases nothing; accepting it erases the person."""
    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id], "admin")
    server.ctx.ingest.ingest_sync(ws.id, keeper(), normalize_segment)
    kim = server.ctx.persons.by_distinct_id(ws.id, "u-kim").id  # type: ignore[union-attr]
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{ws.id}/persons/{kim}")
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name="Delete this person (erasure)").click()
    page.wait_for_timeout(300)
    assert server.ctx.persons.get(ws.id, kim) is not None and "/persons/" in page.url
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete this person (erasure)").click()
    page.get_by_test_id("erased").wait_for()
    assert "Deleted 6 events" in page.get_by_test_id("erased").inner_text()
    assert server.ctx.persons.get(ws.id, kim) is None
