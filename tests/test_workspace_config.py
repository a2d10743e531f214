"""Per-workspace configuration: the time zone and which events the KPIs read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.conftest import LiveServer
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)
from tests.test_kpis import MARCH, msgs
from traction.analytics.domain.kpis import KPIConfig
from traction.cli import app
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.settings import Settings


def test_kpi_config_is_stored_per_workspace_and_drives_the_kpis(ctx: Context) -> None:
    a = ctx.workspaces.create_workspace("A").id
    b = ctx.workspaces.create_workspace("B").id
    ctx.ingest.ingest_sync(a, msgs(), normalize_segment)
    assert ctx.saved.kpi_config(a) == KPIConfig()
    # 7-day windows: only u1's has closed by the latest event (Mar 10), and u1 activated
    assert ctx.analytics.kpi(a, "activation_rate", MARCH) == pytest.approx(1.0)
    ctx.saved.set_kpi_config(a, {"activation_window_days": 1})  # every window has closed
    assert ctx.analytics.kpi(a, "activation_rate", MARCH) == pytest.approx(1 / 3)
    stored = ctx.saved.set_kpi_config(
        a, {"activation_window_days": 1, "activation_events": ["project_created"]}
    )
    assert stored.signup_event == "signed_up"  # fields left out keep their defaults
    # u1 and u3 created a project within a day of signing up
    assert ctx.analytics.kpi(a, "activation_rate", MARCH) == pytest.approx(2 / 3)
    assert ctx.saved.kpi_config(b) == KPIConfig()
    with pytest.raises(ValidationError, match="activation_window_days"):
        ctx.saved.set_kpi_config(a, {"activation_window_days": 0})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ctx.saved.set_kpi_config(a, {"signup": "x"})


def test_time_zone_validation(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("Z", timezone="Europe/Berlin")
    assert ctx.workspaces.get_workspace(ws.id).timezone == "Europe/Berlin"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown time zone"):
        ctx.workspaces.update_workspace(ws.id, timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        ctx.workspaces.create_workspace("Y", timezone="Nowhere")


def test_config_over_http(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("H")
    server.ctx.ingest.ingest_sync(
        ws.id,
        [{"type": "track", "userId": "u", "event": "x", "timestamp": "2026-03-01T23:30:00Z"}],
        normalize_segment,
    )
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    trend = {
        "series": [{"event": {"event": "x"}}],
        "range": {"date_from": "2026-03-01", "date_to": "2026-03-02"},
    }
    with server.client() as c:
        assert c.post("/api/v1/insights/trend", json=trend, headers=auth).json()["lines"][0][
            "y"
        ] == [1.0, 0.0]
        r = c.patch("/api/v1/workspace", json={"timezone": "Asia/Tokyo"}, headers=auth)
        assert r.status_code == 200 and r.json()["timezone"] == "Asia/Tokyo"
        # 23:30 UTC on Mar 1 is Mar 2 in Tokyo
        assert c.post("/api/v1/insights/trend", json=trend, headers=auth).json()["lines"][0][
            "y"
        ] == [0.0, 1.0]
        bad = c.patch("/api/v1/workspace", json={"timezone": "Mars/Olympus"}, headers=auth)
        assert bad.status_code == 422 and "unknown time zone" in bad.json()["error"]
        assert c.get("/api/v1/kpi-config", headers=auth).json()["signup_event"] == "signed_up"
        r = c.put("/api/v1/kpi-config", json={"signup_event": "registered"}, headers=auth)
        assert r.status_code == 200 and r.json()["signup_event"] == "registered"
        bad = c.put("/api/v1/kpi-config", json={"share_events": []}, headers=auth)
        assert bad.status_code == 422 and "share_events" in bad.json()["error"]


def test_configure_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "workspace",
            "create",
            "C",
            "--data-dir",
            str(tmp_path),
            "--timezone",
            "America/New_York",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "workspace",
            "configure",
            "--data-dir",
            str(tmp_path),
            "--timezone",
            "Europe/Paris",
            "--kpi-config",
            json.dumps({"trial_event": "trial_begun"}),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "Europe/Paris" in r.stdout and "trial_begun" in r.stdout
    r = runner.invoke(
        app, ["workspace", "configure", "--data-dir", str(tmp_path), "--timezone", "Nope/Nope"]
    )
    assert r.exit_code == 1 and "unknown time zone" in r.stderr
    ctx = Context.open(Settings(data_dir=tmp_path), start_writer=False)
    try:
        (ws,) = ctx.workspaces.list_workspaces()
        assert (
            ws.timezone == "Europe/Paris"
            and ctx.saved.kpi_config(ws.id).trial_event == "trial_begun"
        )
    finally:
        ctx.close()


@pytest.mark.browser
def test_settings_page(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{ws.id}/settings")
    page.fill("#timezone", "Asia/Tokyo")
    config = json.loads(page.get_by_test_id("kpi-config").input_value())
    page.get_by_test_id("kpi-config").fill(json.dumps({**config, "signup_event": "registered"}))
    page.get_by_role("button", name="Save settings").click()
    page.get_by_test_id("settings-saved").wait_for()
    assert server.ctx.saved.kpi_config(ws.id).signup_event == "registered"
    assert server.ctx.workspaces.get_workspace(ws.id).timezone == "Asia/Tokyo"
    page.get_by_test_id("kpi-config").fill('{"activation_window_days": -1}')
    page.get_by_role("button", name="Save settings").click()
    error = page.get_by_test_id("settings-error")
    error.wait_for()
    assert "activation_window_days" in error.inner_text()
    assert server.ctx.saved.kpi_config(ws.id).signup_event == "registered"  # nothing half-written
