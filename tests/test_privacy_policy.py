"""Consent, Do Not Track, retention and the audit log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, web_client
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.privacy.domain import (
    ConsentPolicy,
    PrivacyPolicy,
    Suppressions,
    consent_allows,
    id_hash,
    retention_cutoff,
)

# -- the rules, pure --------------------------------------------------------------------------


def prefs(**cats: bool) -> dict[str, Any]:
    return {"consent": {"categoryPreferences": cats}}


@pytest.mark.parametrize(
    ("policy", "context", "dnt", "stored"),
    [
        (ConsentPolicy(), {}, False, True),
        (ConsentPolicy(), prefs(Analytics=False), True, True),  # the default stores all
        (ConsentPolicy(required_categories=["Analytics"]), prefs(Analytics=True), False, True),
        (ConsentPolicy(required_categories=["Analytics"]), prefs(Analytics=False), False, False),
        (ConsentPolicy(required_categories=["Analytics"]), prefs(Advertising=False), False, True),
        (ConsentPolicy(required_categories=["Analytics"]), {}, False, True),
        (ConsentPolicy(required_categories=["Analytics"], when_missing="drop"), {}, False, False),
        (ConsentPolicy(when_missing="drop"), prefs(Analytics=True), False, True),
        (
            ConsentPolicy(when_missing="drop"),
            {"consent": {"categoryPreferences": {}}},
            False,
            False,
        ),
        (ConsentPolicy(do_not_track="drop"), {}, True, False),
        (ConsentPolicy(do_not_track="drop"), {}, False, True),
        (ConsentPolicy(required_categories=["A", "B"]), prefs(A=True, B=False), False, False),
        (ConsentPolicy(required_categories=["A"]), {"consent": "yes"}, False, True),
    ],
)
def test_consent_rule(
    policy: ConsentPolicy, context: dict[str, Any], dnt: bool, stored: bool
) -> None:
    assert consent_allows(policy, context, dnt) is stored


def test_retention_cutoff_and_suppression_digests() -> None:
    now = datetime(2026, 3, 31, 12)
    assert retention_cutoff(now, None) is None
    assert retention_cutoff(now, 30) == datetime(2026, 3, 1, 12)
    # keyed by workspace: the same id in two workspaces is two different digests
    assert id_hash("ws1", "u1") != id_hash("ws2", "u1") and len(id_hash("ws1", "u1")) == 32
    s = Suppressions([("ws1", id_hash("ws1", "u1"))])
    assert s.blocks("ws1", [None, "u1"]) and not s.blocks("ws1", ["u2"])
    assert not s.blocks("ws2", ["u1"]) and bool(s) and not Suppressions()


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        PrivacyPolicy.model_validate({"retention_days": 0})
    with pytest.raises(ValueError):
        PrivacyPolicy.model_validate({"consent": {"when_missing": "maybe"}})
    with pytest.raises(ValueError):
        PrivacyPolicy.model_validate({"consent": {"required_categories": [" "]}})
    p = PrivacyPolicy.model_validate({"consent": {"required_categories": ["B", "A", "A"]}})
    assert p.consent.required_categories == ["A", "B"]


# -- over HTTP, through the real SDK endpoints --------------------------------------------------


def batch(ws: Any, messages: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.post(
        f"{BASE}/v1/batch", json={"batch": messages}, auth=(ws.write_key, ""), headers=headers
    )


BASE = ""


def test_consent_policy_applies_to_ingestion(server: LiveServer) -> None:
    global BASE
    BASE = server.url
    ws = server.ctx.workspaces.create_workspace("Acme")
    r = httpx.put(
        f"{server.url}/api/v1/privacy",
        json={"consent": {"required_categories": ["Analytics"], "do_not_track": "drop"}},
        auth=(ws.secret_key, ""),
    )
    assert r.status_code == 200 and r.json()["consent"]["required_categories"] == ["Analytics"]

    def msg(mid: str, **ctx: Any) -> dict[str, Any]:
        return {"type": "track", "userId": "u1", "event": "e", "messageId": mid, "context": ctx}

    assert batch(ws, [
        msg("yes", consent={"categoryPreferences": {"Analytics": True}}),
        msg("no", consent={"categoryPreferences": {"Analytics": False, "Ads": True}}),
        msg("unsaid"),
    ]).status_code == 200  # fmt: skip
    assert batch(ws, [msg("dnt")], DNT="1").status_code == 200
    assert batch(ws, [msg("gpc")], **{"Sec-GPC": "1"}).status_code == 200
    stored = {e["event_id"] for e in server.ctx.events.recent(ws.id, limit=100)}
    assert stored == {"yes", "unsaid"}
    assert server.ctx.metrics.events.labels("no_consent")._value.get() == 3

    bad = httpx.put(
        f"{server.url}/api/v1/privacy", json={"retention_days": -1}, auth=(ws.secret_key, "")
    )
    assert bad.status_code == 422 and "retention_days" in bad.json()["error"]
    assert httpx.get(f"{server.url}/api/v1/privacy", auth=(ws.write_key, "")).status_code == 403
    (entry,) = server.ctx.audit.entries(ws.id, action="privacy.")
    assert entry["details"]["after"]["consent"]["do_not_track"] == "drop"


def test_retention_deletes_old_raw_events(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("Acme").id
    other = ctx.workspaces.create_workspace("Other").id
    now = datetime(2026, 3, 31, 12)
    msgs = [
        {"type": "track", "userId": "u1", "event": "e", "messageId": f"m{d}",
         "timestamp": (now - timedelta(days=d)).isoformat() + "Z"}
        for d in (1, 29, 31, 90)
    ]  # fmt: skip
    for w in (ws, other):
        ctx.ingest.ingest_sync(w, msgs, normalize_segment)
    ctx.privacy.set_policy(ws, PrivacyPolicy(retention_days=30))
    version = ctx.analytics.data_version(ws)
    assert ctx.privacy.apply_retention(now) == {ws: 2}
    assert {e["event_id"] for e in ctx.events.recent(ws)} == {"m1", "m29"}
    assert ctx.events.count(other) == 4  # no period: kept
    assert ctx.analytics.data_version(ws) != version  # cached results are stale now
    assert ctx.persons.by_distinct_id(ws, "u1") is not None  # people stay
    (entry,) = ctx.audit.entries(ws, action="events.retention")
    assert entry["details"]["events"] == 2 and entry["actor"] == "system"
    deleted, purge = ctx.privacy.maintain(now)
    assert deleted == {ws: 0} and purge is not None and ctx.events.pending_purge() == 0
    assert ctx.privacy.maintain(now)[1] is None  # nothing pending: no rewrite


def test_audit_log_records_who_changed_what(server: LiveServer) -> None:
    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("ann@acme.io", "s3cret-pass", [ws.id], "admin")
    admin_key = next(k.id for k in ctx.workspaces.list_keys(ws.id) if k.scope == "admin")
    api = httpx.Client(base_url=server.url, auth=(ws.secret_key, ""))
    key = api.post("/api/v1/keys", json={"scope": "write", "name": "web"}).json()
    assert api.delete(f"/api/v1/keys/{key['id']}").status_code in (200, 204)
    assert api.patch("/api/v1/workspace", json={"timezone": "Europe/Paris"}).status_code == 200
    assert api.put("/api/v1/kpi-config", json={"activation_window_days": 3}).status_code == 200
    with web_client(server, "ann@acme.io") as ann:
        r = ann.post(f"/w/{ws.id}/members", data={"email": "bob@acme.io", "role": "member"})
        assert r.status_code == 200
    entries = api.get("/api/v1/audit").json()["entries"]
    got = [(e["action"], e["actor"]) for e in reversed(entries)]
    assert got[:5] == [
        ("workspace.created", "system"),
        ("member.added", "system"),
        ("key.created", f"key:{admin_key}"),
        ("key.revoked", f"key:{admin_key}"),
        ("workspace.updated", f"key:{admin_key}"),
    ]
    assert got[5:] == [
        ("kpi_config.changed", f"key:{admin_key}"),
        ("member.invited", "user:ann@acme.io"),
    ]
    tz = next(e for e in entries if e["action"] == "workspace.updated")
    assert tz["details"] == {"before": {"name": "Acme", "timezone": "UTC"},
                             "after": {"name": "Acme", "timezone": "Europe/Paris"}}  # fmt: skip
    # paging, filtering, export; and no way to change or remove an entry
    page = api.get("/api/v1/audit", params={"limit": 2}).json()
    older = api.get("/api/v1/audit", params={"before_id": page["next_before_id"]}).json()
    assert [e["id"] for e in page["entries"] + older["entries"]] == [e["id"] for e in entries]
    assert {
        e["action"] for e in api.get("/api/v1/audit", params={"action": "key."}).json()["entries"]
    } == {"key.created", "key.revoked"}
    lines = api.get("/api/v1/audit/export").text.splitlines()
    assert len(lines) == len(entries)
    assert api.delete("/api/v1/audit").status_code == 405
    other = ctx.workspaces.create_workspace("Other")
    theirs = httpx.get(f"{server.url}/api/v1/audit", auth=(other.secret_key, "")).json()
    assert [e["action"] for e in theirs["entries"]] == ["workspace.created"]  # isolated
    with web_client(server, "ann@acme.io") as ann:
        page_html = ann.get(f"/w/{ws.id}/audit").text
        assert "workspace.updated" in page_html and "Europe/Paris" in page_html
        assert ann.get(f"/w/{ws.id}/audit/export").text.count("\n") == len(entries) + 0


def test_cli_erases_sets_the_policy_and_shows_the_log(tmp_path: Path, server: LiveServer) -> None:
    """Locally on a data dir, and through a running server with --url/--key."""
    from typer.testing import CliRunner

    from traction.cli import app
    from traction.settings import Settings

    data = tmp_path / "cli-data"
    local = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
    ws = local.workspaces.create_workspace("Acme").id
    msgs = [{"type": "track", "userId": u, "event": "e", "messageId": f"{u}{i}"}
            for u in ("u1", "u2") for i in range(3)]  # fmt: skip
    local.ingest.ingest_sync(ws, msgs, normalize_segment)
    local.close()
    run = CliRunner().invoke
    d = ["--data-dir", str(data)]
    r = run(app, ["person", "delete", "u1", "--yes", *d])
    assert r.exit_code == 0 and "Erased 3 events" in r.stderr, r.output
    assert run(app, ["person", "delete", "u1", "--yes", *d]).exit_code == 1
    policy = tmp_path / "policy.json"
    policy.write_text('{"retention_days": 400, "consent": {"required_categories": ["Analytics"]}}')
    assert run(app, ["privacy", "set", str(policy), *d]).exit_code == 0
    shown = run(app, ["privacy", "show", *d])
    assert shown.exit_code == 0 and '"retention_days": 400' in shown.stdout
    policy.write_text('{"retention_days": "soon"}')
    bad = run(app, ["privacy", "set", str(policy), *d])
    assert bad.exit_code == 1 and "retention_days" in bad.stderr
    r = run(app, ["privacy", "purge", *d])
    assert r.exit_code == 0 and "Purged" in r.stderr
    log = run(app, ["audit", "--ndjson", *d])
    actions = [json.loads(line)["action"] for line in log.stdout.splitlines()]
    assert actions == ["workspace.created", "person.deleted", "privacy.policy_changed"]
    assert all(json.loads(line)["actor"].startswith("cli:") for line in log.stdout.splitlines()[1:])

    remote = server.ctx.workspaces.create_workspace("Remote")
    server.ctx.ingest.ingest_sync(remote.id, msgs, normalize_segment)
    via = ["--url", server.url, "--key", remote.secret_key]
    r = run(app, ["person", "delete", "u2", "--yes", *via])
    assert r.exit_code == 0 and "Erased 3 events" in r.stderr, r.output
    assert server.ctx.persons.by_distinct_id(remote.id, "u2") is None
    assert run(app, ["audit", *via]).exit_code == 0
    r = run(app, ["audit", "--ndjson", *via])
    assert r.exit_code == 0 and json.loads(r.stdout.splitlines()[-1])["action"] == "person.deleted"
