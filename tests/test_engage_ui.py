"""Journeys through the CLI (apply with its diff, all or nothing; list; stats) and the
dashboard in Chromium (the list with figures, a journey's steps, the JSON editor refusing a
bad edit inline, the dead-letter list's retry)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect
from typer.testing import CliRunner

from tests.conftest import LiveServer
from tests.test_dashboard import page  # noqa: F401  (the browser fixture)
from tests.test_engage import T0, WELCOME, person, track
from traction.cli import app
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.settings import Settings


def test_cli_apply_list_stats(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ctx = Context.open(Settings(data_dir=data, log_json=False))
    ctx.workspaces.create_workspace("Acme")
    ctx.close()
    d = ["--data-dir", str(data)]
    f = tmp_path / "journeys.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "journeys": {
                    "welcome": WELCOME,
                    "bad": {**WELCOME, "steps": [{"id": "x", "type": "sms"}]},
                }
            }
        )
    )
    r = CliRunner().invoke(app, ["journeys", "apply", str(f), *d])
    assert r.exit_code == 2 and "bad: steps[0]: unknown step type" in r.output
    r = CliRunner().invoke(app, ["journeys", "list", "--json", *d])
    assert json.loads(r.stdout) == []  # nothing half-applied
    one = tmp_path / "welcome.yaml"
    one.write_text(yaml.safe_dump(WELCOME))
    r = CliRunner().invoke(app, ["journeys", "apply", str(one), "--dry-run", *d])
    assert r.exit_code == 0 and "welcome: create" in r.output and "dry run" in r.output
    assert json.loads(CliRunner().invoke(app, ["journeys", "list", "--json", *d]).stdout) == []
    assert CliRunner().invoke(app, ["journeys", "apply", str(one), *d]).exit_code == 0
    changed = {**WELCOME, "holdout": 0.1}
    one.write_text(yaml.safe_dump(changed))
    r = CliRunner().invoke(app, ["journeys", "apply", str(one), *d])
    assert r.exit_code == 0 and "welcome: update" in r.output and "holdout: 0.0 → 0.1" in r.output
    listed = json.loads(CliRunner().invoke(app, ["journeys", "list", "--json", *d]).stdout)
    assert [(j["key"], j["holdout"], j["version"]) for j in listed] == [("welcome", 0.1, 2)]
    r = CliRunner().invoke(app, ["journeys", "stats", "welcome", *d])
    assert r.exit_code == 0 and "entered 0" in r.output, r.output


@pytest.mark.browser
def test_journeys_pages(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.test_dashboard import login

    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    hook: dict[str, Any] = {"trigger": {"event": "$limit_reached"}, "steps": [
        {"id": "crm", "type": "webhook", "url": "http://127.0.0.1:9/down"}]}  # fmt: skip
    ctx.engage.apply(ws.id, {"welcome": WELCOME, "hook": hook})
    ctx.ingest.ingest_sync(ws.id, [*person("ann", T0), track("ann", "signed_up", T0), track("ann", "$limit_reached", T0)],
                           normalize_segment)  # fmt: skip
    # the server's own reactor and journey worker take it from here (as in production)
    deadline = time.monotonic() + 20
    # settled: not pending, and not `sending` either (its mark may still be queued, and
    # would overwrite the dead letter made below)
    while len(ctx.engage.deliveries(ws.id)) < 2 or any(
        d["status"] in ("pending", "sending") for d in ctx.engage.deliveries(ws.id)
    ):
        assert time.monotonic() < deadline, ctx.engage.deliveries(ws.id)
        time.sleep(0.1)
    from traction.engage.models import Delivery

    with ctx.state.session() as s:  # the webhook gave up: a dead letter
        for d in s.query(Delivery).filter(Delivery.step == "crm"):
            assert d.status == "failed"  # retried in 30 s: time enough for what follows
            d.status, d.attempts, d.error = "dead", 6, "ConnectError: refused"
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.get_by_role("navigation").get_by_role("link", name="Journeys").click()
    rows = page.get_by_test_id("journeys-table").locator("tbody tr")
    expect(rows).to_have_count(2)  # (the click navigates: wait for the page)
    assert "ConnectError" in page.get_by_test_id("dead-letters").inner_text()
    page.locator("[data-testid^=retry-]").first.click()
    assert page.get_by_test_id("no-dead-letters").is_visible()
    page.get_by_role("link", name="Welcome and onboarding nudge").click()
    assert page.get_by_test_id("journey-steps").locator("tbody tr").count() == 5
    drawn = page.get_by_test_id("journey-graph")
    assert (
        drawn.locator("g[data-step]").count() == 5 and drawn.locator("path[data-edge]").count() == 6
    )
    # columns by the longest path: welcome, wait, is_free, nudge, done (each one further right)
    xs = [float(drawn.locator(f"g[data-step={k}] rect").get_attribute("x") or -1)
          for k in ("welcome", "wait", "is_free", "nudge", "done")]  # fmt: skip
    assert xs == sorted(xs) and len(set(xs)) == 5
    assert "Entered 1" in page.get_by_test_id("journey-counts").inner_text()
    # the live preview renders the welcome for the most recent person (Ann: no first name)
    assert page.get_by_test_id("preview-subject").first.inner_text() == "Welcome, there"
    box = page.locator("textarea[name=document]")
    box.fill(box.input_value().replace("Welcome, {{", "Hello, {{"))
    expect(page.get_by_test_id("preview-subject").first).to_have_text("Hello, there")
    box.fill(box.input_value().replace('"type": "exit"', '"type": "teleport"'))
    page.get_by_role("button", name="Save").click()
    assert "unknown step type" in page.get_by_test_id("journey-error").inner_text()
    assert ctx.engage.get(ws.id, "welcome")["version"] == 1
    # the person's page lists what the journeys sent them (the delivery log)
    view = ctx.persons.by_distinct_id(ws.id, "ann")
    assert view is not None
    page.goto(f"{server.url}/w/{ws.id}/persons/{view.id}")
    log = page.get_by_test_id("person-deliveries").inner_text()
    assert "welcome / welcome" in log and "hook / crm" in log
