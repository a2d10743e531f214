"""Segments through the CLI (apply with its diff, all or nothing; list; refresh; members) and
the dashboard in Chromium (a new segment with its live count, its members, an edit refused
inline)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import LiveServer
from tests.test_dashboard import page  # noqa: F401  (the browser fixture)
from traction.cli import app
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.settings import Settings
from traction.store.state import utcnow

PRO = {"name": "Pro users", "traits": [{"property": "plan", "source": "person", "value": "pro"}]}


def _people(ctx: Context, ws: str) -> None:
    at = (utcnow() - timedelta(hours=1)).isoformat() + "Z"
    msgs = [{"type": "identify", "userId": u, "timestamp": at, "traits": {"plan": plan}}
            for u, plan in (("ann", "pro"), ("bob", "free"), ("cat", "pro"))]  # fmt: skip
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected


def test_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ctx = Context.open(Settings(data_dir=data, log_json=False))
    _people(ctx, ctx.workspaces.create_workspace("Acme").id)
    ctx.close()
    d = ["--data-dir", str(data)]
    f = tmp_path / "segments.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "segments": {
                    "pro": PRO,
                    "bad": {"traits": [{"property": "x", "operator": "gt", "value": "a"}]},
                }
            }
        )
    )
    r = CliRunner().invoke(app, ["segments", "apply", str(f), *d])
    assert r.exit_code == 2 and "bad: traits[0]:" in r.output and "needs a number" in r.output, (
        r.output
    )
    assert json.loads(CliRunner().invoke(app, ["segments", "list", "--json", *d]).stdout) == []
    one = tmp_path / "pro.yaml"
    one.write_text(yaml.safe_dump(PRO))
    r = CliRunner().invoke(app, ["segments", "apply", str(one), *d])
    assert r.exit_code == 0 and "pro: create" in r.output
    r = CliRunner().invoke(app, ["segments", "refresh", "pro", *d])
    assert r.exit_code == 0 and "2 members (2 entered, 0 left)" in r.output, r.output
    r = CliRunner().invoke(app, ["segments", "members", "pro", "--json", *d])
    assert sorted(m["id"] for m in json.loads(r.stdout)["members"]) == ["ann", "cat"]
    r = CliRunner().invoke(app, ["segments", "refresh", "nope", *d])
    assert r.exit_code == 2 and "no segment 'nope'" in r.output


@pytest.mark.browser
def test_segments_pages(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    from tests.test_dashboard import login

    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    _people(ctx, ws.id)
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.get_by_role("navigation").get_by_role("link", name="Segments").click()
    assert page.get_by_test_id("segments-empty").is_visible()
    page.get_by_label("Key").fill("pro")
    box = page.locator("textarea[name=document]")
    box.fill(json.dumps(PRO))
    expect(page.get_by_test_id("segment-count")).to_contain_text("2 people match")
    box.fill(
        json.dumps({**PRO, "traits": [{"property": "plan", "source": "person", "value": "free"}]})
    )
    expect(page.get_by_test_id("segment-count")).to_contain_text("1 person matches")
    box.fill(json.dumps(PRO))
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/segments/pro")
    assert "2 members" in page.get_by_test_id("segment-size").inner_text()
    assert sorted(
        page.get_by_test_id("segment-members").locator("tbody tr td:first-child").all_inner_texts()
    ) == ["ann", "cat"]
    box = page.locator("textarea[name=document]")
    box.fill(json.dumps({"traits": [{"property": "plan", "operator": "teleport"}]}))
    expect(page.get_by_test_id("segment-count")).to_contain_text("operator")
    page.get_by_role("button", name="Save").click()
    assert "traits[0].operator" in page.get_by_test_id("segment-error").inner_text()
    assert ctx.segments.get(ws.id, "pro")["version"] == 1
