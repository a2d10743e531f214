"""The Flags pages in Chromium, as an admin would use them: create a flag from the template,
switch it off in production from the list, move a rollout slider, fix a bad edit that the
page refuses with its reason, and read the history's diffs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import LiveServer
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)


@pytest.mark.browser
def test_flags_pages(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.get_by_role("link", name="Flags").click()
    assert page.get_by_test_id("flags-empty").is_visible()
    assert page.get_by_test_id("sdk-keys").locator("tr").count() == 2
    form = page.get_by_test_id("new-flag")
    form.locator("input[name=key]").fill("new-dashboard")
    form.get_by_role("button", name="Create").click()
    page.wait_for_url("**/flags/new-dashboard")
    assert (
        ctx.flags.get(ws.id, "new-dashboard")["environments"]["production"]["rules"][0]["coverage"]
        == 0.1
    )

    # the rollout slider: 10% -> 35%
    slider = page.get_by_test_id("slider-production-0")
    slider.fill("35")
    assert page.locator('output[data-for="coverage:production:0"]').inner_text() == "35%"
    page.get_by_test_id("save-rollouts").click()
    page.get_by_test_id("flag-saved").wait_for()
    assert (
        ctx.flags.get(ws.id, "new-dashboard")["environments"]["production"]["rules"][0]["coverage"]
        == 0.35
    )

    # a bad edit is refused with its reason, and nothing changes
    doc = json.loads(page.get_by_test_id("flag-json").locator("textarea").input_value())
    doc["environments"]["production"]["rules"][0]["condition"] = {"plan": {"$regexx": "biz"}}
    page.get_by_test_id("flag-json").locator("textarea").fill(json.dumps(doc))
    page.get_by_test_id("flag-json").get_by_role("button", name="Save").click()
    assert "unknown operator" in page.get_by_test_id("flag-error").inner_text()
    assert ctx.flags.get(ws.id, "new-dashboard")["version"] == 2

    # the kill switch, from the list
    page.goto(f"{server.url}/w/{ws.id}/flags")
    page.get_by_test_id("toggle-new-dashboard-production").click()
    page.wait_for_url(f"**/w/{ws.id}/flags")
    assert page.get_by_test_id("toggle-new-dashboard-production").inner_text() == "production: off"
    assert ctx.flags.get(ws.id, "new-dashboard")["environments"]["production"]["enabled"] is False

    page.goto(f"{server.url}/w/{ws.id}/flags/new-dashboard")
    history = page.get_by_test_id("flag-history").inner_text()
    assert "environments.production.enabled" in history and "rules[0].coverage" in history
    assert "user:pat@acme.io" in history
