"""Export everything stored about a person: API (streamed NDJSON), dashboard (admins), CLI."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import LiveServer, web_client
from traction.cli import app
from traction.ingest.domain import normalize_segment


def msgs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "page", "anonymousId": "a1", "name": "pricing", "timestamp": "2026-03-01T09:00:00Z", "messageId": "p1"},
        {"type": "identify", "anonymousId": "a1", "userId": "u1", "traits": {"email": "ann@acme.io"}, "timestamp": "2026-03-01T09:05:00Z", "messageId": "i1"},
        {"type": "track", "userId": "u2", "event": "other_persons_event", "timestamp": "2026-03-01T09:06:00Z", "messageId": "o1"},
    ]  # fmt: skip
    out += [{"type": "track", "userId": "u1", "event": "clicked", "properties": {"n": i},
             "timestamp": f"2026-03-02T10:{i:02d}:00Z", "messageId": f"c{i}"} for i in range(12)]  # fmt: skip
    return out


@pytest.fixture
def ann(server: LiveServer) -> tuple[LiveServer, Any, str]:
    ws = server.ctx.workspaces.create_workspace("Acme")
    assert not server.ctx.ingest.ingest_sync(ws.id, msgs(), normalize_segment).rejected
    pid = server.ctx.persons.by_distinct_id(ws.id, "u1").id  # type: ignore[union-attr]
    return server, ws, pid


def check(lines: list[dict[str, Any]], pid: str) -> None:
    person, events = lines[0], lines[1:]
    assert person["type"] == "person" and person["id"] == pid
    assert person["traits"] == {"email": "ann@acme.io"} and sorted(person["distinct_ids"]) == [
        "a1",
        "u1",
    ]
    ids = [e["event_id"] for e in events]
    expected = [
        m["messageId"] for m in msgs() if m.get("userId") == "u1" or m.get("anonymousId") == "a1"
    ]
    assert sorted(ids) == sorted(expected) and len(ids) == 14  # the anonymous page view included
    assert all(e["type"] in ("page", "identify", "track") and e["person_id"] == pid for e in events)
    assert [e["timestamp"] for e in events] == sorted(
        e["timestamp"] for e in events
    )  # oldest first
    assert "other_persons_event" not in json.dumps(lines)


def test_export_over_the_api(ann) -> None:  # type: ignore[no-untyped-def]
    server, ws, pid = ann
    r = httpx.get(f"{server.url}/api/v1/persons/{pid}/export", auth=(ws.secret_key, ""))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in r.headers["content-disposition"]
    check([json.loads(line) for line in r.text.splitlines()], pid)
    assert (
        httpx.get(
            f"{server.url}/api/v1/persons/nobody/export", auth=(ws.secret_key, "")
        ).status_code
        == 404
    )
    assert (
        httpx.get(f"{server.url}/api/v1/persons/{pid}/export", auth=(ws.write_key, "")).status_code
        == 403
    )


def test_export_from_the_dashboard_is_for_admins(ann) -> None:  # type: ignore[no-untyped-def]
    server, ws, pid = ann
    server.ctx.workspaces.create_user("ada@acme.io", "s3cret-pass", [ws.id], "admin")
    server.ctx.workspaces.create_user("max@acme.io", "s3cret-pass", [ws.id], "member")
    with web_client(server, "ada@acme.io") as web:
        assert 'data-testid="export-person"' in web.get(f"/w/{ws.id}/persons/{pid}").text
        r = web.get(f"/w/{ws.id}/persons/{pid}/export")
        check([json.loads(line) for line in r.text.splitlines()], pid)
    with web_client(server, "max@acme.io") as web:
        assert 'data-testid="export-person"' not in web.get(f"/w/{ws.id}/persons/{pid}").text
        assert web.get(f"/w/{ws.id}/persons/{pid}/export").status_code == 403


def test_export_from_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from traction.context import Context
    from traction.settings import Settings

    data = tmp_path / "data"
    ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.ingest.ingest_sync(ws, msgs(), normalize_segment)
    pid = ctx.persons.by_distinct_id(ws, "u1").id  # type: ignore[union-attr]
    ctx.close()
    out = tmp_path / "ann.ndjson"
    r = CliRunner().invoke(
        app, ["person", "export", "u1", "--output", str(out), "--data-dir", str(data)]
    )
    assert r.exit_code == 0, r.output
    check([json.loads(line) for line in out.read_text().splitlines()], pid)
    r = CliRunner().invoke(app, ["person", "export", "nobody", "--data-dir", str(data)])
    assert r.exit_code == 1 and "no person known as 'nobody'" in r.stderr
