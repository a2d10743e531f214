"""The billing pages in Chromium: Plans (the catalog and its last diff), Revenue (MRR
movements charted and tabled), an account's plan, usage bars and invoice preview."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import LiveServer
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)
from traction.ingest.domain import normalize_segment

EXAMPLE = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"


@pytest.mark.browser
def test_billing_pages(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{ws.id}/plans")
    assert page.get_by_test_id("plans-empty").is_visible()
    page.goto(f"{server.url}/w/{ws.id}/revenue")
    assert page.get_by_test_id("revenue-empty").is_visible()
    group = {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"name": "Acme Inc"}}
    ctx.ingest.ingest_sync(ws.id, [group], normalize_segment)
    page.goto(f"{server.url}/w/{ws.id}/accounts/acme")
    page.get_by_text("No plan catalog yet").wait_for()

    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["features"].append({"key": "ai_credits", "type": "metered", "reset": "never"})
    doc["plans"][1]["features"]["ai_credits"] = {"limit": 100}
    ctx.billing.apply_catalog(ws.id, doc)
    ctx.billing.subscribe(ws.id, "acme", "pro", seats=3, trial=False)
    ctx.billing.consume(ws.id, "acme", "ai_credits", 40, "k1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ctx.events.named_events(
        ws.id, ["subscription_started"]
    ):
        time.sleep(0.02)

    page.goto(f"{server.url}/w/{ws.id}/plans")
    cards = page.get_by_test_id("plans").locator(".plan")
    assert cards.count() == 3
    pro = page.locator('[data-plan="pro"]').inner_text()
    assert "29 USD/month" in pro and "+ 10/seat" in pro and "projects: 50" in pro
    assert "added plan pro" in page.get_by_test_id("catalog-diff").inner_text()

    page.goto(f"{server.url}/w/{ws.id}/revenue")
    page.locator("#mrr-chart .main-svg").first.wait_for()
    last = page.get_by_test_id("revenue-table").locator("tbody tr").last.inner_text()
    assert "59.00" in last and "708.00" in last  # 29 + 3 x 10 = 59 MRR, 708 ARR
    cohort = page.get_by_test_id("cohort-table").locator("tbody tr").first.inner_text()
    assert "59.00" in cohort and "100.0%" in cohort  # one account, all of it kept
    plg = page.get_by_test_id("plg-revenue")
    assert plg.locator('[data-kpi="expansion_revenue"] .value').inner_text() == "0.00"

    page.goto(f"{server.url}/w/{ws.id}/accounts/acme")
    billing = page.get_by_test_id("account-billing")
    billing.wait_for()
    assert "Plan pro" in billing.inner_text() and "active" in billing.inner_text()
    row = page.get_by_test_id("usage-table").locator("tr", has_text="ai_credits").inner_text()
    assert "40 / 100" in row
    assert page.get_by_test_id("usage-table").locator("meter").count() >= 3
    assert "59.00 USD" in page.get_by_test_id("invoice-preview").inner_text()


@pytest.mark.browser
def test_upgrade_page_from_a_denied_check(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The product's user reaches the upgrade page by a link, sees the plans with theirs
    marked and the one that unlocks the feature, chooses, and is back in the product
    upgraded (the manual provider applies at once)."""
    import httpx

    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.billing.apply_catalog(ws.id, yaml.safe_load(EXAMPLE.read_text()))
    key = ctx.workspaces.create_key(ws.id, "server").key
    check = httpx.post(f"{server.url}/api/v1/entitlements/check", auth=(key, ""),
                       json={"account": "acme", "feature": "sso"}).json()  # fmt: skip
    assert not check["granted"] and check["upgrade_options"][0]["plan"] == "business"
    back = f"{server.url}/healthz"
    r = httpx.post(f"{server.url}/api/v1/upgrade-links", auth=(key, ""),
                   json={"account": "acme", "return_url": back, "feature": "sso"})  # fmt: skip
    assert r.status_code == 200
    page.goto(r.json()["url"])
    assert "Unlock sso" in page.get_by_test_id("locked-feature").inner_text()
    free = page.locator('[data-plan="free"]')
    assert free.get_by_test_id("current-plan").is_visible()
    business = page.locator('[data-plan="business"]')
    assert "unlocks sso" in business.inner_text()
    assert "119.00 USD a month" in business.inner_text()  # 99 flat + 1 seat x 20
    assert "Adds:" in business.inner_text() and "audit_log" in business.inner_text()
    business.get_by_role("button", name="Choose Business").click()
    page.wait_for_url(back)
    sub = ctx.billing.subscription(ws.id, "acme")
    assert sub is not None and sub.plan_key == "business" and sub.status == "active"
    assert httpx.get(f"{server.url}/upgrade/not-a-token").status_code == 404
