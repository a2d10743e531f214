"""`traction.js` in Chromium on a sample app page from another origin, against a running
server whose journey worker runs on its own: a product tour appears for a new user, an
onboarding checklist ticks when its event happens (and the server agrees on the next
refresh), a dismissed modal does not come back after a reload, and with the server down the
host page keeps working with no error thrown."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port
from tests.test_dashboard import page  # noqa: F401  (the browser fixture)
from traction.settings import Settings

pytestmark = pytest.mark.browser

APP = """<!doctype html><html><head><meta charset="utf-8"><title>Sample app</title></head><body>
<nav id="nav">Home · Projects</nav>
<button id="new-project">New project</button>
<p id="clicks">0</p>
<script>
  /* the loader of docs/engage.md: calls queue until the snippet loads (or forever, if it cannot) */
  !function(){var t=window.traction=window.traction||{q:[]};["init","track","identify","page","flush","refresh","reset","setAttributes","onFlags"].forEach(function(m){t[m]=t[m]||function(){t.q.push([m,[].slice.call(arguments)])}})}();
  traction.init("KEY", {host: "TRACTION", poll: 300, flushMs: 30, clientKey: "CLIENT"});
  traction.onFlags(t => { document.body.dataset.greeting = t.flag("greeting", "fallback"); });
  document.getElementById("new-project").onclick = () => {
    const c = document.getElementById("clicks"); c.textContent = String(Number(c.textContent) + 1);
    traction.track("project_created");
  };
</script>
<script async src="TRACTION/traction.js"></script></body></html>"""

JOURNEYS: dict[str, Any] = {
    "tour": {"trigger": {"event": "signed_up"}, "steps": [{"id": "t", "type": "inapp", "inapp": {
        "kind": "tour", "title": "Tour", "steps": [
            {"selector": "#nav", "title": "Your projects live here"},
            {"selector": "#new-project", "title": "Start one", "body": "Click to create a project."}]}}]},
    "checklist": {"trigger": {"event": "signed_up"}, "steps": [{"id": "c", "type": "inapp", "inapp": {
        "kind": "checklist", "title": "Get started", "tasks": [
            {"title": "Create a project", "event": "project_created"},
            {"title": "Invite a teammate", "event": "teammate_invited"}]}}]},
    "promo": {"trigger": {"event": "pricing_viewed"}, "steps": [{"id": "m", "type": "inapp", "inapp": {
        "kind": "modal", "title": "Try Pro free", "body": "14 days, no card.", "cta_text": "Start trial",
        "cta_url": "#trial"}}]},
}  # fmt: skip


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings.model_copy(update={"engage_interval_seconds": 0.1})) as s:
        yield s


def site(tmp_path: Path, traction: str, key: str, client: str = "") -> str:
    html = APP.replace("TRACTION", traction).replace("CLIENT", client).replace("KEY", key)
    (tmp_path / "app.html").write_text(html)
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}/app.html"


def test_tour_checklist_and_modal(page, live: LiveServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ctx = live.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.engage.apply(ws.id, JOURNEYS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site(tmp_path, live.url, ws.write_key))
    page.wait_for_function("window.traction && window.traction.__loaded")
    page.evaluate(
        "traction.identify('ann', {email: 'ann@example.com'}); traction.track('signed_up')"
    )
    # the tour: the first tooltip, then the second, then done
    page.get_by_text("Your projects live here").wait_for()
    page.locator("[data-traction-next]").click()
    page.get_by_text("Start one").wait_for()
    page.locator("[data-traction-next]").click()
    assert page.get_by_text("Start one").count() == 0
    # the checklist: 0/2, then ticked by the host page's own event
    page.get_by_text("Get started (0/2)").wait_for()
    page.locator("#new-project").click()
    page.get_by_text("Get started (1/2)").wait_for()
    assert page.locator('[data-task="project_created"]').get_attribute("data-done") == "1"
    # the modal: shown on its trigger, dismissed, and not back after a reload
    page.evaluate("traction.track('pricing_viewed')")
    page.get_by_role("dialog").get_by_text("Try Pro free").wait_for()
    page.get_by_role("dialog").get_by_label("Dismiss").click()
    assert page.get_by_role("dialog").count() == 0
    page.evaluate("traction.flush()")
    deadline = time.monotonic() + 10
    while {d["step"]: d["status"] for d in ctx.engage.deliveries(ws.id)}.get("m") != "dismissed":
        assert time.monotonic() < deadline, ctx.engage.deliveries(ws.id)
        time.sleep(0.05)
    page.reload()
    page.get_by_text("Get started (1/2)").wait_for()  # the server's count agrees (from events)
    time.sleep(1.0)  # several refreshes
    assert page.get_by_role("dialog").count() == 0
    names = {e["name"] for e in ctx.events.recent(ws.id, limit=200)}
    assert {
        "$message_shown",
        "$message_dismissed",
        "$checklist_step_completed",
        "$tour_step_viewed",
    } <= names
    assert errors == []


def test_server_down_breaks_nothing(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """The snippet from a server that is gone cannot even load: the page still works. Then
    the snippet loaded but its server down: calls go nowhere, silently."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    dead = f"http://127.0.0.1:{free_port()}"
    page.goto(site(tmp_path, dead, "tr_pub_x"))
    page.locator("#new-project").click()  # the loader queues the call: nothing throws
    assert page.evaluate("traction.q.length") == 3  # init, onFlags and the track, kept
    # now the snippet arrives (as if it loaded) while its server is gone: the queue replays
    js = (
        Path(__file__).resolve().parent.parent / "src/traction/web/static/traction.js"
    ).read_text()
    page.add_script_tag(content=js)
    page.evaluate(
        "traction.track('x'); traction.identify('ann'); traction.page(); traction.refresh()"
    )
    page.locator("#new-project").click()
    time.sleep(0.8)
    assert page.locator("#clicks").inner_text() == "2" and errors == []
    assert (
        page.evaluate("traction.flag('greeting', 'fallback')") == "fallback"
    )  # no flags: the fallback
    assert page.evaluate("traction.errors.length") >= 1  # kept for debugging, not thrown


FLAGS: dict[str, Any] = {
    "greeting": {"value_type": "string", "default_value": "hello",
                 "environments": {"production": {"rules": [{"force": "hi"}]}}},
    "checkout": {"value_type": "string", "default_value": "a", "environments": {"production": {"rules": [
        {"key": "checkout-test", "variations": ["a", "b"], "weights": [0.5, 0.5], "hashAttribute": "id",
         "hashVersion": 2, "seed": "checkout-test", "meta": [{"key": "a"}, {"key": "b"}]}]}}},
}  # fmt: skip


def test_flags_in_the_browser(page, live: LiveServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """With a client key the snippet reads flags by remote evaluation: values as the server
    evaluates them for this person, a fallback for a flag that does not exist, and one
    `$experiment_viewed` however often an experiment's flag is read."""
    from playwright.sync_api import expect

    ctx = live.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    for key, flag in FLAGS.items():
        ctx.flags.put(ws.id, key, flag)
    client = next(k["key"] for k in ctx.flags.sdk_keys(ws.id) if k["environment"] == "production")
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site(tmp_path, live.url, ws.write_key, client))
    expect(page.locator("body")).to_have_attribute("data-greeting", "hi")  # from onFlags, queued
    assert page.evaluate("traction.flag('no-such-flag', 'fb')") == "fb"
    page.evaluate("traction.identify('ann')")
    page.wait_for_timeout(300)
    got = page.evaluate("[traction.flag('checkout', 'x'), traction.flag('checkout', 'x')][0]")
    r = httpx.post(f"{live.url}/api/eval/{client}", json={"attributes": {"id": "ann"}})
    assert got == r.json()["features"]["checkout"]["defaultValue"] and got in ("a", "b")
    page.evaluate("traction.flush()")
    deadline = time.monotonic() + 10
    while True:
        views = [
            e for e in ctx.events.recent(ws.id, limit=200) if e["name"] == "$experiment_viewed"
        ]
        if views or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(views) == 1 and views[0]["properties"]["experiment_id"] == "checkout-test"
    assert views[0]["properties"]["variation_id"] == ("a", "b").index(got) and errors == []
