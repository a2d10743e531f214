"""The dashboard in real Chromium (Debian's /usr/bin/chromium, driven by Playwright)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from traction.ingest.domain import normalize_segment

pytestmark = pytest.mark.browser


@pytest.fixture
def site(server: LiveServer):  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces
    a = ws.create_workspace("Acme")
    b = ws.create_workspace("Globex")
    hidden = ws.create_workspace("Hidden")
    ws.create_user("pat@acme.io", "s3cret-pass", [a.id, b.id])
    server.ctx.ingest.ingest_sync(
        a.id,
        [
            {"type": "page", "anonymousId": "anon-pat", "name": "pricing", "messageId": "m1"},
            {
                "type": "identify",
                "anonymousId": "anon-pat",
                "userId": "pat",
                "traits": {"email": "pat@acme.io"},
                "messageId": "m2",
            },
            {"type": "track", "userId": "pat", "event": "signed_up", "messageId": "m3"},
            {"type": "track", "userId": "sam", "event": "report_created", "messageId": "m4"},
        ],
        normalize_segment,
    )
    server.ctx.ingest.ingest_sync(
        b.id,
        [{"type": "track", "userId": "gus", "event": "globex_event", "messageId": "g1"}],
        normalize_segment,
    )
    return {"a": a, "b": b, "hidden": hidden}


def login(
    page, server: LiveServer, password: str = "s3cret-pass", email: str = "pat@acme.io"
) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def test_login_live_events_filter_and_person(
    page, server: LiveServer, site, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    login(page, server, "wrong-password")
    assert page.get_by_role("alert").inner_text() == "Wrong email or password."
    login(page, server)
    page.wait_for_url(re.compile(f"/w/{site['a'].id}/scorecard"))  # after login: the scorecard
    page.get_by_role("link", name="Events").click()
    table = page.get_by_test_id("events-table")
    table.get_by_text("report_created").wait_for()
    assert "globex_event" not in table.inner_text()
    page.locator("#per-minute .main-svg").first.wait_for()  # Plotly drew the chart

    # live: a new event shows up without reloading
    httpx.post(
        server.url + "/v1/track",
        json={"userId": "pat", "event": "live_one"},
        auth=(site["a"].write_key, ""),
    )
    table.get_by_text("live_one").wait_for(timeout=10_000)

    page.fill("input[name=name]", "signed_up")
    page.click("#filters button")
    expect(page.get_by_test_id("events-table")).not_to_contain_text("report_created")
    assert "signed_up" in table.inner_text()
    page.screenshot(path=str(tmp_path / "events.png"), full_page=True)
    page.fill("input[name=name]", "no_such_event")
    page.click("#filters button")
    expect(page.get_by_test_id("events-empty")).to_have_text(
        "No events match: clear the filter to see every event."
    )
    page.fill("input[name=name]", "signed_up")
    page.click("#filters button")
    table.get_by_text("signed_up").first.wait_for()

    table.get_by_role("link", name="pat").first.click()
    page.get_by_test_id("person-title").wait_for()
    assert page.get_by_test_id("person-title").inner_text() == "pat@acme.io"
    assert sorted(page.get_by_test_id("distinct-id").all_inner_texts()) == ["anon-pat", "pat"]
    events = page.get_by_test_id("person-events").inner_text()
    assert "pricing" in events and "signed_up" in events  # anonymous history included


def test_keys_page_creates_working_keys_and_revokes(page, server: LiveServer, site) -> None:  # type: ignore[no-untyped-def]
    login(page, server)
    page.goto(f"{server.url}/w/{site['a'].id}/keys")
    page.fill("input[name=name]", "ios app")
    page.select_option("select[name=scope]", "write")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("tr_pub_")
    assert (
        httpx.post(
            server.url + "/v1/track", json={"userId": "k", "event": "x"}, auth=(key, "")
        ).status_code
        == 200
    )
    row = page.get_by_test_id("keys-table").locator("tr", has_text="ios app")
    row.get_by_role("button", name="Revoke").click()
    page.get_by_test_id("keys-table").locator("tr", has_text="ios app").get_by_text(
        "revoked"
    ).wait_for()
    assert (
        httpx.post(
            server.url + "/v1/track", json={"userId": "k", "event": "x"}, auth=(key, "")
        ).status_code
        == 401
    )


def test_workspace_switcher_membership_and_logout(page, server: LiveServer, site) -> None:  # type: ignore[no-untyped-def]
    login(page, server)
    page.wait_for_url(re.compile("/scorecard"))
    page.goto(f"{server.url}/w/{site['a'].id}/events")
    page.get_by_test_id("workspace-switcher").select_option(label="Globex")
    page.wait_for_url(re.compile(f"/w/{site['b'].id}/events"))
    page.get_by_test_id("events-table").get_by_text("globex_event").wait_for()
    r = page.goto(f"{server.url}/w/{site['hidden'].id}/events")
    assert r is not None and r.status == 404  # not a member
    page.goto(f"{server.url}/w/{site['a'].id}/keys")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile("/login"))
    page.goto(f"{server.url}/w/{site['a'].id}/events")
    page.wait_for_url(re.compile("/login"))


def test_forms_refuse_cross_origin_posts(server: LiveServer, site) -> None:  # type: ignore[no-untyped-def]
    with server.client() as c:
        r = c.post(
            "/login",
            data={"email": "pat@acme.io", "password": "s3cret-pass"},
            headers={"Origin": "https://evil.example"},
        )
    assert r.status_code == 403
