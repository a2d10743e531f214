"""The scorecard and insight pages in real Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer, run_spec
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)
from tests.test_kpis import msgs
from traction.analytics.domain.kpis import CATALOG
from traction.analytics.web import sparkline_svg
from traction.ingest.domain import normalize_segment

pytestmark = pytest.mark.browser


@pytest.fixture
def site(server: LiveServer):  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    server.ctx.ingest.ingest_sync(ws.id, msgs(), normalize_segment)
    return ws


def test_scorecard_shows_every_kpi_with_sparklines(page, server: LiveServer, site) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{site.id}/scorecard?date_from=2026-03-01&date_to=2026-03-31")
    table = page.get_by_test_id("scorecard")
    assert table.locator("tr[data-kpi=visitor_to_signup] .value").inner_text() == "75.0%"
    assert table.locator("tr[data-kpi=activation_rate] .value").inner_text() == "100.0%"
    assert table.locator("tr[data-kpi=time_to_first_value] .value").inner_text() == "24.0 h"
    expect(page.locator("svg.spark")).to_have_count(
        len(CATALOG)
    )  # (no page-side eval: the CSP forbids it)
    assert "Share of people who" in table.inner_text()
    # an unknown value says why; a rate's change is in points
    d30 = table.locator("tr[data-kpi=activation_retention_d30] .why")
    assert d30.inner_text() == "nobody activated in the period, or their 30th day is still to come"


def test_scorecard_follows_new_events_without_blocking(page, server: LiveServer, site) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(page, server)
    page.wait_for_url("**/scorecard")
    url = f"{server.url}/w/{site.id}/scorecard?date_from=2026-03-01&date_to=2026-03-31"
    page.goto(url)
    value = page.get_by_test_id("scorecard").locator("tr[data-kpi=visitor_to_signup] .value")
    expect(value).to_have_text("75.0%")
    late = {
        "type": "page",
        "anonymousId": "a5",
        "timestamp": "2026-03-20T10:00:00Z",
        "messageId": "late-1",
    }
    server.ctx.ingest.ingest_sync(site.id, [late], normalize_segment)
    page.goto(url)  # answered from the stale figures at once, then refreshed in place
    # 3 of 5 visitors signed up; the fragment polls each second while the values are
    # recomputed (~3.5 s here, over 5 s on a busy CI box)
    expect(value).to_have_text("60.0%", timeout=30_000)
    expect(page.locator("[data-updating]")).to_have_count(0)


def test_insight_editor_runs_specs_and_explains_errors(page, server: LiveServer, site) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{site.id}/insights?kind=funnel")
    spec = '{"steps": [{"event": "signed_up"}, {"event": "trial_started"}], "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"}, "window_days": 1}'
    run_spec(page, spec)
    rows = page.get_by_test_id("funnel-table").locator("tbody tr")
    rows.first.wait_for()
    assert rows.nth(1).inner_text().split("\t")[:3] == ["2. trial_started", "2", "66.7%"]
    page.get_by_test_id("who-dropped-0").click()  # u3 signed up and started no trial
    dropped = page.get_by_test_id("dropoff-list").locator("a")
    dropped.first.wait_for()
    u3 = server.ctx.persons.by_distinct_id(site.id, "u3")
    assert (
        dropped.count() == 1
        and dropped.first.get_attribute("href") == f"/w/{site.id}/persons/{u3.id}"
    )
    run_spec(page, spec.replace('"window_days": 1', '"window_days": -1'))
    error = page.get_by_test_id("insight-error")
    error.wait_for()
    assert "window_days" in error.inner_text() and "greater than 0" in error.inner_text()
    for kind, marker in [
        ("retention", "retention-matrix"),
        ("trend", "trend-chart"),
        ("activation", "activation-rate"),
    ]:
        page.goto(f"{server.url}/w/{site.id}/insights?kind={kind}")
        page.get_by_role("button", name="Run").click()
        page.get_by_test_id(marker).wait_for()


def test_sparkline_svg() -> None:
    svg = sparkline_svg([1.0, None, 3.0, 2.0])
    assert 'data-points="3"' in svg and "<polyline" in svg
    assert "no data" in sparkline_svg([None, None])


def test_periods_in_progress_are_drawn_as_such(page, server: LiveServer, site, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The month fixture ends on Tuesday Mar 10: that week is hatched in the retention matrix
    (and out of the All row), and the trend's last day is dashed with a legend."""
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{site.id}/insights?kind=retention")
    spec = '{"range": {"date_from": "2026-03-01", "date_to": "2026-03-10"}, "interval": "week", "periods": 2}'
    run_spec(page, spec)
    matrix = page.get_by_test_id("retention-matrix")
    matrix.wait_for()
    open_cells = matrix.locator("td.open")
    assert open_cells.count() >= 1 and "in progress" in (
        open_cells.first.get_attribute("title") or ""
    )
    assert "hatched" in page.locator(".legend").inner_text()
    page.screenshot(path=str(tmp_path / "retention.png"), full_page=True)
    page.goto(f"{server.url}/w/{site.id}/insights?kind=trend")
    trend = '{"series": [{"event": {"event": "$any"}}], "range": {"date_from": "2026-03-01", "date_to": "2026-03-12"}}'
    run_spec(page, trend)
    page.get_by_test_id("open-legend").wait_for()
    page.locator('#chart path.js-line[style*="dasharray"]').first.wait_for()
