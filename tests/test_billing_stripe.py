"""Checkout and Stripe webhooks against Stripe's documented wire format: a local HTTP
stand-in for api.stripe.com (Stripe's servers are not reachable here), and webhook payloads
signed the way Stripe signs them (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.conftest import LiveServer
from tests.test_billing_api import catalog

SECRET = "whsec_test_secret"


class FakeStripe(BaseHTTPRequestHandler):
    calls: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        FakeStripe.calls.append((self.path, dict(parse_qsl(body)), dict(self.headers)))
        out = {
            "id": "cs_test_1",
            "object": "checkout.session",
            "url": "https://checkout.stripe.test/c/cs_test_1",
        }
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_stripe() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeStripe)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    FakeStripe.calls = []
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def signed(event: dict[str, Any], secret: str = SECRET, at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    ts = at or int(time.time())
    sig = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={ts},v1={sig}"


def event(eid: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": eid, "object": "event", "type": kind, "api_version": "2025-01-27.acacia",
            "created": int(time.time()), "data": {"object": obj}}  # fmt: skip


def test_checkout_and_webhooks(server: LiveServer, fake_stripe: str) -> None:
    ctx = server.ctx
    ws = ctx.workspaces.create_workspace("Acme")
    admin = httpx.Client(base_url=server.url, auth=(ws.secret_key, ""))
    assert admin.put("/api/v1/catalog", json=catalog()).status_code == 200
    r = admin.put("/api/v1/billing/provider", json={"provider": "stripe", "stripe_api_key": "sk_test_123",
                  "stripe_webhook_secret": SECRET, "stripe_api_base": fake_stripe})  # fmt: skip
    assert r.status_code == 200 and r.json()["stripe_api_key_set"] and "sk_test" not in r.text
    srv_key = ctx.workspaces.create_key(ws.id, "server").key

    r = httpx.post(f"{server.url}/api/v1/checkout", auth=(srv_key, ""), json={
        "account": "acme", "plan": "pro", "seats": 3, "success_url": "https://app.example/ok",
        "cancel_url": "https://app.example/no"})  # fmt: skip
    assert r.status_code == 200 and r.json() == {"url": "https://checkout.stripe.test/c/cs_test_1",
                                                 "mode": "stripe", "reference": "cs_test_1"}  # fmt: skip
    (path, form, headers) = FakeStripe.calls[0]
    assert path == "/v1/checkout/sessions" and headers["Authorization"] == "Bearer sk_test_123"
    assert form["mode"] == "subscription" and form["metadata[account]"] == "acme"
    assert form["line_items[0][price_data][unit_amount]"] == "2900"  # 29 USD in cents
    assert (form["line_items[1][quantity]"], form["line_items[1][price_data][unit_amount]"]) == (
        "3",
        "1000",
    )
    assert form["line_items[0][price_data][recurring][interval]"] == "month"
    assert ctx.billing.subscription(ws.id, "acme") is None  # nothing until Stripe says so

    hook = f"{server.url}/webhooks/stripe/{ws.id}"
    completed = event("evt_1", "checkout.session.completed", {
        "id": "cs_test_1", "object": "checkout.session", "subscription": "sub_123",
        "metadata": {"account": "acme", "plan": "pro", "interval": "month", "seats": "3"}})  # fmt: skip
    body, sig = signed(completed)
    r = httpx.post(
        hook, content=body, headers={"Stripe-Signature": sig, "Content-Type": "application/json"}
    )
    assert r.status_code == 200 and r.json()["outcome"] == "subscribed acme to pro"
    sub = ctx.billing.subscription(ws.id, "acme")
    assert sub is not None and (sub.plan_key, sub.seats, sub.provider, sub.provider_ref) == (
        "pro",
        3,
        "stripe",
        "sub_123",
    )

    # a replay changes nothing; a bad signature, a stale one, or none: 400, nothing changed
    r = httpx.post(hook, content=body, headers={"Stripe-Signature": sig})
    assert r.status_code == 200 and r.json()["outcome"].startswith("duplicate")
    failed = event(
        "evt_2",
        "invoice.payment_failed",
        {"id": "in_1", "object": "invoice", "subscription": "sub_123"},
    )
    for bad in (
        signed(failed, "whsec_wrong")[1],
        signed(failed, at=int(time.time()) - 3600)[1],
        "",
    ):
        r = httpx.post(hook, content=json.dumps(failed).encode(), headers={"Stripe-Signature": bad})
        assert r.status_code == 400, r.text
    assert ctx.billing.subscription(ws.id, "acme").status == "active"  # type: ignore[union-attr]

    def deliver(ev: dict[str, Any]) -> str:
        b, s = signed(ev)
        resp = httpx.post(hook, content=b, headers={"Stripe-Signature": s})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["outcome"])

    assert deliver(failed) == "past_due"
    assert ctx.billing.subscription(ws.id, "acme").status == "past_due"  # type: ignore[union-attr]
    assert (
        deliver(event("evt_3", "invoice.paid", {"id": "in_1", "subscription": "sub_123"})) == "paid"
    )
    assert ctx.billing.subscription(ws.id, "acme").status == "active"  # type: ignore[union-attr]
    start, end = 1_780_000_000, 1_782_592_000
    deliver(event("evt_4", "customer.subscription.updated", {
        "id": "sub_123", "object": "subscription", "status": "active", "cancel_at_period_end": True,
        "items": {"data": [{"current_period_start": start, "current_period_end": end}]}}))  # fmt: skip
    sub = ctx.billing.subscription(ws.id, "acme")
    assert sub is not None and sub.cancel_at_period_end and int(sub.period_end.timestamp()) == end
    assert (
        deliver(
            event("evt_5", "customer.subscription.deleted", {"id": "sub_123", "status": "canceled"})
        )
        == "canceled"
    )
    assert ctx.billing.subscription(ws.id, "acme") is None
    assert deliver(event("evt_6", "customer.subscription.deleted", {"id": "sub_other"})).startswith(
        "ignored"
    )

    deadline = time.monotonic() + 10
    names: list[str] = []
    while time.monotonic() < deadline:
        names = [e["name"] for e in ctx.events.named_events(ws.id, ["subscription_started", "payment_failed",
                                                                       "invoice_paid", "subscription_ended"])]  # fmt: skip
        if len(names) >= 4:
            break
        time.sleep(0.02)
    assert names == ["subscription_started", "payment_failed", "invoice_paid", "subscription_ended"]
    r = httpx.post(
        f"{server.url}/webhooks/stripe/ws_nope", content=body, headers={"Stripe-Signature": sig}
    )
    assert r.status_code == 404


def test_manual_checkout_applies_at_once(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("Acme")
    httpx.put(f"{server.url}/api/v1/catalog", json=catalog(), auth=(ws.secret_key, ""))
    body = {
        "account": "acme",
        "plan": "pro",
        "success_url": "https://app.example/ok",
        "cancel_url": "https://app.example/no",
    }
    r = httpx.post(f"{server.url}/api/v1/checkout", json=body, auth=(ws.secret_key, ""))
    assert (
        r.status_code == 200
        and r.json()["url"] == "https://app.example/ok"
        and r.json()["mode"] == "manual"
    )
    assert server.ctx.billing.subscription(ws.id, "acme").plan_key == "pro"  # type: ignore[union-attr]
    r = httpx.post(
        f"{server.url}/api/v1/checkout", json={**body, "plan": "business"}, auth=(ws.secret_key, "")
    )
    assert server.ctx.billing.subscription(ws.id, "acme").plan_key == "business"  # type: ignore[union-attr]
    r = httpx.post(f"{server.url}/api/v1/checkout", json={**body, "success_url": "javascript:alert(1)"},
                   auth=(ws.secret_key, ""))  # fmt: skip
    assert r.status_code == 422
