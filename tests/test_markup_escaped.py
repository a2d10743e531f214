"""Markup sent through every dashboard page parameter and form field comes back escaped (or
not at all), and never as a 5xx. The routes are read from the app itself, so a new page is
covered the day it is added."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.conftest import LiveServer, web_client

MARKUP = "<script>alert(1)</script>"


@pytest.fixture
def signed_in(server: LiveServer) -> Iterator[tuple[httpx.Client, str]]:
    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    with web_client(server, "pat@acme.io") as client:
        yield client, ws.id


def all_routes(routes: list[Any]) -> list[Any]:
    """The app's routes, including those of included routers (wrapped by FastAPI)."""
    out = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        out += all_routes(inner.routes) if inner is not None else [r]
    return out


def dashboard_routes(server: LiveServer) -> list[tuple[str, str, APIRoute]]:
    out = []
    for route in all_routes(server.app.routes):
        if not isinstance(route, APIRoute) or route.include_in_schema or route.path == "/logout":
            continue  # the JSON API is fuzzed elsewhere; these are the HTML pages and fragments
        for method in route.methods or ():
            if method in ("GET", "POST"):
                out.append((method, route.path, route))
    return out


def test_markup_in_every_page_parameter_and_form_field_is_escaped(
    server: LiveServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, ws = signed_in
    checked = 0
    for method, path, route in dashboard_routes(server):
        for target in [p.name for p in route.dependant.path_params if p.name != "ws_id"] + [None]:
            url = path.replace("{ws_id}", ws)
            for p in route.dependant.path_params:
                if p.name != "ws_id":
                    url = url.replace("{" + p.name + "}", MARKUP if p.name == target else "x")
            params: dict[str, Any] = {q.name: MARKUP for q in route.dependant.query_params}
            form = {f.name: MARKUP for f in route.dependant.body_params}
            if method == "GET":
                r = client.get(url, params=params)
            else:
                r = client.post(url, params=params, data=form)
            checked += 1
            assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
            assert MARKUP not in r.text, (method, url, r.text[:500])
    assert checked > 40
    # the reflected XSS of the issue, exactly
    r = client.get(f"/w/{ws}/insights", params={"kind": MARKUP})
    assert r.status_code == 404 and "&lt;script&gt;" in r.text and MARKUP not in r.text


def test_security_headers(server: LiveServer, signed_in: tuple[httpx.Client, str]) -> None:
    client, ws = signed_in
    page = client.get(f"/w/{ws}/scorecard")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in csp and "frame-ancestors 'none'" in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'"inlineScriptNonce": "{nonce}"' in page.text  # htmx runs fragments' scripts with it
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    again = client.get(f"/w/{ws}/scorecard").headers["content-security-policy"]
    assert again != csp  # a fresh nonce per response
    api = httpx.get(server.url + "/healthz")
    assert api.headers["x-content-type-options"] == "nosniff"


def test_posts_without_the_sessions_csrf_token_are_refused(
    server: LiveServer, signed_in: tuple[httpx.Client, str]
) -> None:
    client, ws = signed_in
    good = client.headers.pop("X-CSRF-Token")
    create = {"scope": "write", "name": "forged"}
    assert client.post(f"/w/{ws}/keys", data=create).status_code == 403  # no token
    assert (
        client.post(f"/w/{ws}/keys", data=create, headers={"X-CSRF-Token": "0" * 40}).status_code
        == 403
    )
    assert (
        client.post(f"/w/{ws}/keys", data={**create, "csrf_token": good}).status_code == 200
    )  # form field
    assert (
        client.post(f"/w/{ws}/keys", data=create, headers={"X-CSRF-Token": good}).status_code == 200
    )  # htmx header
    names = [k.name for k in server.ctx.workspaces.list_keys(ws)]
    assert names.count("forged") == 2
    # the page gives the browser the token: a meta tag for forms, hx-headers for htmx
    page = client.get(f"/w/{ws}/keys").text
    assert (
        f'<meta name="csrf-token" content="{good}">' in page and f'"X-CSRF-Token": "{good}"' in page
    )
    # logging in again with a stale cookie needs no token
    assert (
        client.post("/login", data={"email": "pat@acme.io", "password": "s3cret-pass"}).status_code
        == 303
    )


def test_sessions_end_when_idle_and_cookies_are_secure_over_https(tmp_path: Any) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from tests.conftest import LiveServer as Live
    from traction.settings import Settings
    from traction.store.state import utcnow
    from traction.web.session import COOKIE
    from traction.workspaces.models import UserSession

    settings = Settings(
        data_dir=tmp_path, trusted_proxies="127.0.0.1", session_idle_minutes=30, log_json=False
    )
    with Live(settings) as server:
        ws = server.ctx.workspaces.create_workspace("Acme")
        server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
        login = {"email": "pat@acme.io", "password": "s3cret-pass"}
        with httpx.Client(base_url=server.url) as plain:
            r = plain.post("/login", data=login)
            assert (
                "secure" not in r.headers["set-cookie"].lower()
            )  # plain HTTP: a Secure cookie would be dropped
            assert plain.get(f"/w/{ws.id}/scorecard").status_code == 200
            with server.ctx.state.session() as s:  # 31 minutes without a request
                s.execute(update(UserSession).values(last_used_at=utcnow() - timedelta(minutes=31)))
            r = plain.get(f"/w/{ws.id}/scorecard")
            assert r.status_code == 303 and r.headers["location"] == "/login"
            assert (
                server.ctx.workspaces.session_user(plain.cookies[COOKIE]) is None
            )  # gone for good
        with httpx.Client(base_url=server.url) as proxied:  # a trusted TLS proxy in front
            r = proxied.post("/login", data=login, headers={"X-Forwarded-Proto": "https"})
            assert "secure" in r.headers["set-cookie"].lower()
