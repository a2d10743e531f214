"""The real browser SDKs, unmodified, in Chromium, on a page from another origin.

`@segment/analytics-next` and `posthog-js` come from the npm registry (cached in `.build/`
by `fetch_browser_sdks`), are served by a second loopback server as a customer's site
would serve them, and are initialised with the exact snippets of `docs/tracking-api.md`.
The checks are what a customer cares about: every event lands exactly once (sent online,
offline, at page exit, and while Traction answers 503), the anonymous visit joins the
identified person, nothing is sent to any other host, and Traction never answers 4xx.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, LiveServer, fetch_browser_sdks, free_port
from traction.ingest.writer import WriterOverloaded
from traction.workspaces.service import CreatedWorkspace

pytestmark = pytest.mark.browser

# What a person's browser shows: posthog-js drops events from "HeadlessChrome" and from a
# browser whose navigator.webdriver is set (as Playwright's is) as bots.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


def doc_snippet(name: str) -> str:
    """The ```html block after `<!-- snippet: NAME -->` in docs/tracking-api.md."""
    text = (ROOT / "docs" / "tracking-api.md").read_text()
    m = re.search(rf"<!-- snippet: {name} -->\s*```html\n(.*?)```", text, re.S)
    assert m, f"docs/tracking-api.md has no snippet {name!r}"
    return m.group(1)


class Site:
    """The customer's website: a second loopback origin serving the SDK bundles and pages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add_page(self, name: str, snippet: str, write_key: str, traction_url: str) -> str:
        body = snippet.replace("tr_pub_…", write_key).replace("http://127.0.0.1:8000", traction_url)
        (self.root / name).write_text(
            f"<!doctype html><html><head><title>{name}</title>{body}</head>"
            "<body><h1>Acme</h1></body></html>"
        )
        return f"{self.url}/{name}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def sdks() -> dict[str, Path]:
    return fetch_browser_sdks()


@pytest.fixture
def site(sdks: dict[str, Path], tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "site"
    (root / "vendor").mkdir(parents=True)
    shutil.copytree(sdks["analytics-next"] / "dist" / "umd", root / "vendor" / "analytics-next")
    (root / "vendor" / "posthog-js").mkdir()
    shutil.copy(sdks["posthog-js"] / "dist" / "array.js", root / "vendor" / "posthog-js")
    (root / "favicon.ico").write_bytes(b"")
    s = Site(root)
    yield s
    s.httpd.shutdown()


class Traffic:
    """Everything the browser asked for, and every answer Traction gave."""

    def __init__(self, context: Any, traction_url: str, site_url: str) -> None:
        self.context = context
        self.hosts = {urlsplit(traction_url).netloc, urlsplit(site_url).netloc}
        self.traction = urlsplit(traction_url).netloc
        self.requests: list[str] = []
        self.answers: list[tuple[int, str]] = []
        self.console: list[str] = []
        self.failed: list[tuple[str, str | None]] = []
        context.on("request", lambda r: self.requests.append(r.url))
        context.on("response", self._response)
        context.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))

    def _response(self, r: Any) -> None:
        if urlsplit(r.url).netloc == self.traction:
            self.answers.append((r.status, r.request.method + " " + r.url))

    def watch(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append(m.text))

    def pump(self) -> None:
        """Playwright's sync API delivers events only during a call into it: make one."""
        self.context.new_page().close()

    def outside(self) -> list[str]:
        return [u for u in self.requests if urlsplit(u).netloc not in self.hosts]

    def client_errors(self) -> list[tuple[int, str]]:
        return [a for a in self.answers if 400 <= a[0] < 500]

    def assert_clean(self) -> None:
        self.pump()
        assert self.outside() == [], "requests left for other hosts"
        assert self.client_errors() == [], "Traction answered 4xx"
        assert [m for m in self.console if "CORS" in m] == []


@pytest.fixture
def context(browser):  # type: ignore[no-untyped-def]
    ctx = browser.new_context(user_agent=USER_AGENT)
    ctx.add_init_script("Object.defineProperty(navigator, 'webdriver', {get: () => false})")
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


def stored(server: LiveServer, ws: CreatedWorkspace) -> list[dict[str, Any]]:
    return server.ctx.events.recent(ws.id, limit=10_000)


def wait_for(
    server: LiveServer,
    ws: CreatedWorkspace,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 45,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(server, ws)
        if done(rows):
            return rows
        if time.monotonic() > deadline:
            names = sorted(str(r["name"] or r["type"]) for r in rows)
            raise AssertionError(f"events did not land in {timeout} s; stored: {names}")
        time.sleep(0.2)


def has(*names: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: set(names) <= {r["name"] for r in rows}


def assert_once(rows: list[dict[str, Any]], *names: str) -> None:
    ids = Counter(r["event_id"] for r in rows)
    assert max(ids.values()) == 1
    counts = Counter(r["name"] for r in rows)
    assert {n: counts[n] for n in names} == dict.fromkeys(names, 1)


@contextmanager
def outage(server: LiveServer, seconds: float) -> Iterator[None]:
    """Traction answers 503 + Retry-After (its overloaded-writer answer) for `seconds`."""
    until = time.monotonic() + seconds
    real = server.ctx.ingest.ingest

    async def overloaded(*args: Any, **kw: Any) -> Any:
        if time.monotonic() < until:
            raise WriterOverloaded("the writer's queue is full")
        return await real(*args, **kw)

    server.ctx.ingest.ingest = overloaded  # type: ignore[method-assign]
    try:
        yield
    finally:
        time.sleep(max(0.0, until - time.monotonic()))
        server.ctx.ingest.ingest = real  # type: ignore[method-assign]


def test_analytics_next_loses_nothing(
    server: LiveServer, workspace: CreatedWorkspace, site: Site, context: Any
) -> None:
    url = site.add_page("seg.html", doc_snippet("analytics-next"), workspace.write_key, server.url)
    traffic = Traffic(context, server.url, site.url)
    page = context.new_page()
    traffic.watch(page)
    page.goto(url)
    wait_for(server, workspace, lambda rows: any(r["type"] == "page" for r in rows))
    page.evaluate(
        "analytics.identify('user-seg', {email: 'seg@acme.io'})"
        ".then(() => analytics.track('online_event'))"
    )
    wait_for(server, workspace, has("online_event"))

    context.set_offline(True)
    page.evaluate("analytics.track('offline_event')")
    time.sleep(1.5)
    context.set_offline(False)
    wait_for(server, workspace, has("offline_event"))

    with outage(server, 3):
        page.evaluate("analytics.track('during_503')")
    wait_for(server, workspace, has("during_503"))
    traffic.pump()
    assert any(status == 503 for status, _ in traffic.answers)  # the outage was real

    page.evaluate("analytics.track('closing_event')")
    page.close(run_before_unload=True)
    # analytics-next keeps what was in flight at page exit and sends it on the next visit.
    again = context.new_page()
    traffic.watch(again)
    again.goto(url)
    rows = wait_for(server, workspace, has("closing_event"))
    time.sleep(1)  # a resend, if any, would land now
    rows = stored(server, workspace)
    assert_once(rows, "online_event", "offline_event", "during_503", "closing_event")

    people = {r["person_id"] for r in rows}
    assert len(people) == 1  # the anonymous page view joined user-seg
    first_page = min((r for r in rows if r["type"] == "page"), key=lambda r: r["seq"])
    assert first_page["user_id"] is None and first_page["anonymous_id"]
    track = next(r for r in rows if r["name"] == "online_event")
    assert track["user_id"] == "user-seg"
    assert track["context"]["ip"] == "127.0.0.1"
    traffic.assert_clean()


def test_posthog_js_loses_nothing(
    server: LiveServer, workspace: CreatedWorkspace, site: Site, context: Any
) -> None:
    url = site.add_page("ph.html", doc_snippet("posthog-js"), workspace.write_key, server.url)
    traffic = Traffic(context, server.url, site.url)
    page = context.new_page()
    traffic.watch(page)
    page.goto(url)
    page.evaluate(
        "posthog.identify('user-ph', {email: 'ph@acme.io'}); posthog.capture('online_event')"
    )
    wait_for(server, workspace, has("online_event"))

    context.set_offline(True)
    page.evaluate("posthog.capture('offline_event')")
    time.sleep(4)  # past posthog-js's 3 s batch flush, so the send fails and is queued
    context.set_offline(False)
    wait_for(server, workspace, has("offline_event"))

    with outage(server, 6):
        page.evaluate("posthog.capture('during_503')")
    wait_for(server, workspace, has("during_503"))
    traffic.pump()
    assert any(status == 503 for status, _ in traffic.answers)

    page.evaluate("posthog.capture('closing_event')")
    page.close(run_before_unload=True)  # posthog-js sends with sendBeacon, base64 form data
    rows = wait_for(server, workspace, has("closing_event", "$pageleave"))
    time.sleep(1)
    rows = stored(server, workspace)
    assert_once(rows, "online_event", "offline_event", "during_503", "closing_event", "$pageleave")
    assert [r["name"] for r in rows if r["type"] == "page"] == ["ph.html"]  # $pageview, titled

    people = {r["person_id"] for r in rows}
    assert len(people) == 1  # the anonymous $pageview joined user-ph
    pageview = next(r for r in rows if r["type"] == "page")
    assert pageview["user_id"] is None and pageview["anonymous_id"]
    closing = next(r for r in rows if r["name"] == "closing_event")
    assert closing["user_id"] == "user-ph"
    assert closing["context"]["ip"] == "127.0.0.1"
    assert closing["context"]["library"] == {"name": "web", "version": "1.449.2"}
    assert closing["context"]["userAgent"] == USER_AGENT
    assert any("/array/" in u for _, u in traffic.answers)  # remote config answered 2xx
    traffic.assert_clean()
