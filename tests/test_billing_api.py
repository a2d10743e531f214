"""Billing over HTTP on real stores: the catalog applied all-or-nothing with versions, the
server key scope, atomic consumes under concurrency (SQLite and PostgreSQL), idempotency,
upgrade triggers in the event log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import LiveServer
from traction.settings import Settings

EXAMPLE = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"


def catalog() -> dict[str, Any]:
    """The example catalog plus a feature used through consume: 10 exports a day on free."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["features"].append({"key": "ai_credits", "type": "metered", "reset": "month"})
    doc["plans"][0]["features"]["ai_credits"] = {"limit": 10}
    doc["plans"][1]["features"]["ai_credits"] = {"limit": 1000}
    return doc


@pytest.fixture
def billing(settings: Settings, state_url: str) -> Iterator[tuple[LiveServer, Any, str]]:
    """A server on SQLite or PostgreSQL, a workspace with the catalog, and a server key."""
    with LiveServer(settings.model_copy(update={"state_url": state_url})) as srv:
        ws = srv.ctx.workspaces.create_workspace("Acme")
        r = httpx.put(f"{srv.url}/api/v1/catalog", json=catalog(), auth=(ws.secret_key, ""))
        assert r.status_code == 200, r.text
        server_key = srv.ctx.workspaces.create_key(ws.id, "server", "backend").key
        yield srv, ws, server_key


def test_fifty_concurrent_consumes_against_a_hard_limit_of_ten(billing) -> None:  # type: ignore[no-untyped-def]
    srv, _ws, key = billing

    def consume(i: int) -> dict[str, Any]:
        r = httpx.post(f"{srv.url}/api/v1/usage", auth=(key, ""), timeout=60, json={
            "account": "acme", "feature": "ai_credits", "quantity": 1, "idempotency_key": f"k{i}"})  # fmt: skip
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(consume, range(50)))
    assert sum(a["granted"] for a in answers) == 10
    assert all(a["usage"] <= 10 for a in answers)
    assert sorted(a["usage"] for a in answers if a["granted"]) == list(range(1, 11))
    denied = [a for a in answers if not a["granted"]]
    assert all(a["reason"] == "limit_reached" and a["remaining"] == 0 for a in denied)
    check = httpx.post(f"{srv.url}/api/v1/entitlements/check", auth=(key, ""),
                       json={"account": "acme", "feature": "ai_credits"}).json()  # fmt: skip
    assert (check["granted"], check["usage"], check["limit"]) == (False, 10, 10)
    assert [o["plan"] for o in check["upgrade_options"]] == ["pro"]
    # replays change nothing and answer the same
    again = [consume(i) for i in range(50)]
    assert again == answers
    assert httpx.post(f"{srv.url}/api/v1/usage", auth=(key, ""), json={
        "account": "acme", "feature": "ai_credits", "quantity": 2, "idempotency_key": "k1"}).status_code == 422  # fmt: skip


def test_catalog_apply_is_all_or_nothing_with_a_diff_and_versions(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("Acme")
    api = httpx.Client(base_url=server.url, auth=(ws.secret_key, ""))
    text = EXAMPLE.read_text()
    r = api.put(
        "/api/v1/catalog?dry_run=true", content=text, headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 200 and r.json()["version"] is None
    assert {(d["kind"], d["key"]) for d in r.json()["diff"]} >= {
        ("plan", "pro"),
        ("meter", "api_calls"),
    }
    assert api.get("/api/v1/catalog").status_code == 404  # a dry run stores nothing
    r = api.put("/api/v1/catalog", content=text, headers={"content-type": "application/yaml"})
    assert r.status_code == 200 and r.json()["version"] == 1
    assert sorted(r.json()["new_plan_versions"]) == ["business@1", "free@1", "pro@1"]
    assert api.put("/api/v1/catalog", content=text, headers={"content-type": "text/yaml"}).json() == {
        "version": None, "diff": [], "new_plan_versions": []}  # unchanged: no new version  # fmt: skip

    # a subscriber on pro@1, then pro's price goes up: they keep 29 + 10/seat
    assert api.post("/api/v1/subscriptions", json={"account": "acme", "plan": "pro", "seats": 2,
                                                    "trial": False}).status_code == 201  # fmt: skip
    doc = yaml.safe_load(text)
    doc["plans"][1]["prices"][0]["flat"] = 39
    r = api.put("/api/v1/catalog", json=doc)
    assert r.json()["version"] == 2 and r.json()["new_plan_versions"] == ["pro@2"]
    assert r.json()["diff"] == [
        {"kind": "plan", "key": "pro", "change": "changed", "fields": ["prices"]}
    ]
    plans = {p["key"]: p for p in api.get("/api/v1/plans").json()}
    assert plans["pro"]["version"] == 2 and plans["pro"]["prices"][0]["flat"] == "39"
    bill = api.get("/api/v1/accounts/acme/billing").json()
    assert bill["subscription"]["plan_version"] == 1
    assert bill["invoice_preview"]["total"] == "49.00"  # 29 + 2 x 10, the version they bought

    # bad documents: a clear 4xx naming where, and nothing applied
    broken = {**doc, "plans": doc["plans"] + [{"key": "x", "prices": [{"usage": [{
        "feature": "api_calls", "model": "graduated",
        "tiers": [{"up_to": 10, "unit_price": 1}, {"from": 20, "unit_price": 1}]}]}]}]}  # fmt: skip
    r = api.put("/api/v1/catalog", json=broken)
    assert (
        r.status_code == 422
        and "gap before tier 2" in r.json()["error"]
        and "plans.3" in r.json()["error"]
    )
    r = api.put(
        "/api/v1/catalog",
        content="plans: [\n  - key: free\n  bad",
        headers={"content-type": "application/yaml"},
    )
    assert r.status_code == 400 and "line" in r.json()["error"]
    r = api.put("/api/v1/catalog", json={**doc, "currency": "EUR"})
    assert r.status_code == 422 and "currency" in r.json()["error"]
    assert api.put("/api/v1/catalog", json=[1, 2]).status_code == 422
    assert api.get("/api/v1/catalog").json()["plans"][1]["prices"][0]["flat"] == "39"
    entries = server.ctx.audit.entries(ws.id, action="catalog.")
    assert [e["target"] for e in entries] == ["v2", "v1"]


def test_scopes_and_bad_input(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("Acme")
    assert (
        httpx.put(
            f"{server.url}/api/v1/catalog", json=catalog(), auth=(ws.secret_key, "")
        ).status_code
        == 200
    )
    srv_key = server.ctx.workspaces.create_key(ws.id, "server").key
    assert srv_key.startswith("tr_srv_")
    body = {"account": "acme", "feature": "ai_credits", "quantity": 1, "idempotency_key": "a"}
    usage = f"{server.url}/api/v1/usage"
    assert (
        httpx.post(usage, json=body, auth=(ws.write_key, "")).status_code == 403
    )  # public keys cannot consume
    assert httpx.post(usage, json=body, auth=(srv_key, "")).status_code == 200
    assert (
        httpx.put(f"{server.url}/api/v1/catalog", json=catalog(), auth=(srv_key, "")).status_code
        == 403
    )
    assert httpx.get(f"{server.url}/api/v1/persons/search", auth=(srv_key, "")).status_code == 403
    # a server key ingests too (its backend's events)
    r = httpx.post(f"{server.url}/v1/batch", auth=(srv_key, ""),
                   json={"batch": [{"type": "track", "userId": "u", "event": "e"}]})  # fmt: skip
    assert r.status_code == 200
    for bad, where in [
        ({**body, "quantity": -1}, "quantity"), ({**body, "quantity": 1.5}, "quantity"),
        ({**body, "quantity": "2"}, "quantity"), ({**body, "feature": "teleport"}, "teleport"),
        ({**body, "feature": "api_calls"}, "measured from events"), ({**body, "feature": "sso"}, "not metered"),
        ({k: v for k, v in body.items() if k != "idempotency_key"}, "idempotency_key"),
    ]:  # fmt: skip
        r = httpx.post(usage, json={**bad, "idempotency_key": bad.get("idempotency_key", "x") + "-bad"}
                       if "idempotency_key" in bad else bad, auth=(srv_key, ""))  # fmt: skip
        assert r.status_code == 422 and where in r.json()["error"], (bad, r.text)
    r = httpx.post(f"{server.url}/api/v1/subscriptions", json={"account": "acme", "plan": "gold"},
                   auth=(ws.secret_key, ""))  # fmt: skip
    assert r.status_code == 422 and "no plan 'gold'" in r.json()["error"]
    other = server.ctx.workspaces.create_workspace("Other")
    r = httpx.post(f"{server.url}/api/v1/entitlements/check", auth=(other.secret_key, ""),
                   json={"account": "acme", "feature": "sso"})  # fmt: skip
    assert r.status_code == 404 and "no plan catalog" in r.json()["error"]


def test_upgrade_triggers_land_in_the_event_log(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("Acme")
    httpx.put(f"{server.url}/api/v1/catalog", json=catalog(), auth=(ws.secret_key, ""))
    key = ws.secret_key
    for i in range(
        10
    ):  # 8 of 10: approaching; 10: reached; 11th: denied, reached again (once a window)
        httpx.post(f"{server.url}/api/v1/usage", auth=(key, ""), json={
            "account": "acme", "feature": "ai_credits", "quantity": 1, "idempotency_key": f"t{i}", "user": "u1"})  # fmt: skip
    httpx.post(f"{server.url}/api/v1/usage", auth=(key, ""), json={
        "account": "acme", "feature": "ai_credits", "quantity": 1, "idempotency_key": "t10", "user": "u1"})  # fmt: skip
    for _ in range(3):  # a locked feature, checked three times within the hour: one event
        httpx.post(f"{server.url}/api/v1/entitlements/check", auth=(key, ""),
                   json={"account": "acme", "feature": "sso", "user": "u1"})  # fmt: skip
    names: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = sorted(e["name"] for e in server.ctx.events.recent(ws.id, limit=50))
        if len(names) >= 3:
            break
        time.sleep(0.05)
    assert names == ["$feature_locked", "$limit_approaching", "$limit_reached"]
    events = server.ctx.events.recent(ws.id, limit=50)
    assert all(e["account_id"] == "acme" and e["user_id"] == "u1" for e in events)
    reached = next(e for e in events if e["name"] == "$limit_reached")
    assert (
        reached["properties"].items()
        >= {"feature": "ai_credits", "usage": 10, "limit": 10, "plan": "free"}.items()
    )


def test_cli_plans_usage_and_subscriptions(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from traction.cli import app
    from traction.context import Context

    data = tmp_path / "data"
    ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
    ctx.workspaces.create_workspace("Acme")
    ctx.close()
    run, d = CliRunner().invoke, ["--data-dir", str(data)]
    r = run(app, ["plans", "apply", str(EXAMPLE), "--dry-run", *d])
    assert r.exit_code == 0 and "+ plan pro" in r.stdout
    assert "No plan catalog" not in r.stdout
    r = run(app, ["plans", "apply", str(EXAMPLE), "--yes", *d])
    assert r.exit_code == 0 and "Catalog version 1 applied" in r.stderr, r.output
    r = run(app, ["plans", "apply", str(EXAMPLE), "--yes", *d])
    assert r.exit_code == 0 and "No changes" in r.stdout
    r = run(app, ["plans", "show", "--json", *d])
    assert [p["key"] for p in json.loads(r.stdout)] == ["free", "pro", "business"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("plans:\n  - key: free\n   kind: free\n")
    r = run(app, ["plans", "apply", str(broken), "--yes", *d])
    assert r.exit_code == 2 and "line 3" in r.stderr
    broken.write_text(EXAMPLE.read_text().replace("flat: 29", "flat: -29"))
    r = run(app, ["plans", "apply", str(broken), "--yes", *d])
    assert r.exit_code == 2 and "plans.1.prices.0.flat" in r.stderr
    r = run(app, ["subscriptions", "start", "acme", "business", "--seats", "3", *d])
    assert r.exit_code == 0 and "business (active)" in r.stderr, r.output
    r = run(app, ["subscriptions", "start", "acme2", "gold", *d])
    assert r.exit_code == 2 and "no plan 'gold'" in r.stderr
    r = run(app, ["subscriptions", "cancel", "acme", *d])
    assert r.exit_code == 0 and "subscription cancel scheduled" in r.stderr, r.output
    assert run(app, ["subscriptions", "reactivate", "acme", *d]).exit_code == 0
    r = run(app, ["subscriptions", "change", "acme", "pro", *d])
    assert r.exit_code == 0 and "plan downgrade scheduled" in r.stderr, r.output
    assert run(app, ["subscriptions", "change", "nobody", "pro", *d]).exit_code == 2
    r = run(app, ["usage", "acme", "--json", *d])
    got = json.loads(r.stdout)
    assert got["plan"] == "business" and got["entitlements"]["sso"]["granted"]
    assert got["invoice_preview"]["total"] == "159.00"  # 99 + 3 seats x 20
    r = run(app, ["usage", "nobody", *d])
    assert r.exit_code == 0 and "free" in r.stdout
