"""The SDK's entitlements against a real server: cached checks, consume updating the cache,
background refresh, the staleness bound, and fail-open / fail-closed when the server is gone."""

from __future__ import annotations

import time

import httpx

from tests.conftest import LiveServer
from tests.test_billing_api import catalog
from traction.sdk import Client, Entitlements
from traction.settings import Settings


def test_cached_checks_consume_and_refresh(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("Acme")
    httpx.put(f"{server.url}/api/v1/catalog", json=catalog(), auth=(ws.secret_key, ""))
    key = server.ctx.workspaces.create_key(ws.id, "server").key
    client = Client(key, server.url, sync_mode=True)
    ents = client.entitlements
    assert ents.check("acme", "exports").granted is False  # free: no exports
    assert ents.check("acme", "max_file_size_mb").value == 10
    c = ents.check("acme", "ai_credits", requested=1)
    assert (c.granted, c.limit, c.usage) == (True, 10, 0)
    for i in range(10):
        assert ents.consume("acme", "ai_credits", 1, f"k{i}")["granted"]
    c = ents.check("acme", "ai_credits", requested=1)  # the cache learnt the usage from consume
    assert (c.granted, c.reason, c.usage) == (False, "limit_reached", 10)
    # an upgrade on the server: seen after the refresh period, without blocking the check
    httpx.post(f"{server.url}/api/v1/subscriptions", json={"account": "acme", "plan": "pro", "trial": False},
               auth=(ws.secret_key, ""))  # fmt: skip
    ents.refresh_seconds = 0.0
    assert ents.check("acme", "exports").granted is False  # stale, answered at once
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not ents.check("acme", "exports").granted:
        time.sleep(0.02)
    assert ents.check("acme", "exports").granted
    assert ents.check("acme", "nope").reason == "unknown_feature"


def test_staleness_bound_and_failure_modes(settings: Settings) -> None:
    with LiveServer(settings) as srv:
        ws = srv.ctx.workspaces.create_workspace("Acme")
        httpx.put(f"{srv.url}/api/v1/catalog", json=catalog(), auth=(ws.secret_key, ""))
        ents = Entitlements(ws.secret_key, srv.url, refresh_seconds=60, max_stale_seconds=0.3,
                            fail_open=["ai_credits"], timeout=1)  # fmt: skip
        assert ents.check("acme", "max_file_size_mb").granted
    # the server is gone; within the bound the cache answers, past it the failure mode does
    assert ents.check("acme", "max_file_size_mb").value == 10
    time.sleep(0.35)
    c = ents.check("acme", "max_file_size_mb")
    assert (c.granted, c.reason) == (False, "unavailable")  # fail closed by default
    assert ents.check("acme", "ai_credits").granted  # fail open, as configured
