"""Flags over HTTP on a real server: the admin API with validation and history, GrowthBook's
SDK endpoints (payload, encryption, remote evaluation with plan targeting, SSE), and the
`growthbook` package itself pointed at Traction."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import LiveServer

ONBOARDING = {
    "value_type": "string",
    "default_value": "classic",
    "description": "the onboarding checklist's variant",
    "tags": ["onboarding"],
    "environments": {
        "production": {"enabled": True, "rules": [
            {"id": "staff", "condition": {"email": {"$regex": "@acme\\.com$"}}, "force": "guided"},
            {"key": "onboarding-v2", "variations": ["classic", "guided"], "weights": [0.5, 0.5],
             "hashAttribute": "id", "hashVersion": 2, "seed": "onboarding-v2",
             "meta": [{"key": "control"}, {"key": "guided"}]},
        ]},
        "development": {"enabled": True, "rules": [{"force": "guided"}]},
    },
}  # fmt: skip
SSO_GATE = {
    "value_type": "boolean",
    "environments": {"production": {"rules": [
        {"condition": {"plan": "business"}, "force": True},
        {"condition": {"features.projects": True, "plan": {"$ne": "free"}}, "force": True},
    ]}},
}  # fmt: skip


def admin(srv: LiveServer, ws: Any) -> httpx.Client:
    return httpx.Client(base_url=srv.url, auth=(ws.secret_key, ""), timeout=10)


def test_flags_crud_validation_and_history(server: LiveServer, workspace: Any) -> None:
    c = admin(server, workspace)
    r = c.put("/api/v1/flags/onboarding", json=ONBOARDING)
    assert r.status_code == 200 and r.json()["created"] is True
    rules = r.json()["environments"]["production"]["rules"]
    assert [x["id"] for x in rules] == ["staff", "production-2"]  # ids given where missing
    changed = json.loads(json.dumps(ONBOARDING))
    changed["environments"]["production"]["rules"][1]["weights"] = [0.2, 0.8]
    assert c.put("/api/v1/flags/onboarding", json=changed).json()["version"] == 2
    # bad input: 422 naming the place, and nothing changes
    for body, where in [
        ({**ONBOARDING, "environments": {"production": {"rules": [{"variations": ["a", "b"], "weights": [0.5, 0.6]}]}}},
         "environments.production.rules[0]: weights: must sum to 1 (they sum to 1.1)"),
        ({**ONBOARDING, "environments": {"production": {"rules": [{"force": "x", "condition": {"a": {"$regex": "(["}}}]}}},
         "environments.production.rules[0].condition.a.$regex: not a valid regular expression"),
        ({**ONBOARDING, "environments": {"production": {"rules": [{"force": "x", "condition": {"a": {"$bogus": 1}}}]}}},
         "environments.production.rules[0].condition.a.$bogus: unknown operator"),
        ({**ONBOARDING, "default_value": 3}, "default_value: must be a string"),
        ({**ONBOARDING, "environments": {"production": {"rules": [{"force": 1}]}}},
         "environments.production.rules[0].force: 1 is not a string"),
        ({**ONBOARDING, "environments": {"production": {"rules": [{"coverage": 0.5}]}}},
         "a rule has either `force`"),
        ({**ONBOARDING, "environments": {"production": {"rules": [{"force": "x", "parentConditions": [{"id": "nope"}]}]}}},
         "parentConditions: no flag 'nope'"),
    ]:  # fmt: skip
        r = c.put("/api/v1/flags/onboarding", json=body)
        assert r.status_code == 422 and where in r.json()["error"], (r.status_code, r.text)
    assert c.get("/api/v1/flags/onboarding").json()["version"] == 2
    history = c.get("/api/v1/flags/onboarding/history").json()["history"]
    assert [h["change"] for h in history] == ["updated", "created"]
    assert history[0]["actor"].startswith("key:")
    assert history[0]["diff"] == [{"path": "environments.production.rules[1].weights[0]", "before": 0.5, "after": 0.2},
                                  {"path": "environments.production.rules[1].weights[1]", "before": 0.5, "after": 0.8}]  # fmt: skip
    assert c.get("/api/v1/flags/missing").status_code == 404
    # the kill switch, then delete
    off = c.post(
        "/api/v1/flags/onboarding/toggle", json={"environment": "production", "enabled": False}
    )
    assert off.json()["environments"]["production"]["enabled"] is False
    assert c.delete("/api/v1/flags/onboarding").json() == {"deleted": "onboarding"}
    assert c.get("/api/v1/flags").json() == {"flags": []}
    newest = c.get("/api/v1/flags/onboarding/history").json()["history"][0]
    assert newest["change"] == "deleted"
    # a write key cannot configure flags
    assert (
        httpx.get(f"{server.url}/api/v1/flags", auth=(workspace.write_key, "")).status_code == 403
    )


def _sdk_key(c: httpx.Client, env: str) -> str:
    keys = c.get("/api/v1/sdk-keys").json()["sdk_keys"]
    assert {k["environment"] for k in keys} >= {"development", "production"}
    return next(k["key"] for k in keys if k["environment"] == env)


def test_growthbook_endpoints_and_sdk(server: LiveServer, workspace: Any) -> None:
    c = admin(server, workspace)
    assert c.put("/api/v1/saved-groups/beta", json={"values": ["u7", "u9"]}).status_code == 200
    c.put("/api/v1/flags/onboarding", json=ONBOARDING)
    c.put("/api/v1/flags/beta-banner", json={"value_type": "boolean", "environments": {
        "production": {"rules": [{"condition": {"id": {"$inGroup": "beta"}}, "force": True}]}}})  # fmt: skip
    key = _sdk_key(c, "production")
    body = httpx.get(f"{server.url}/api/features/{key}", headers={"Origin": "https://app.example"})
    assert (
        body.status_code == 200
        and body.headers["access-control-allow-origin"] == "https://app.example"
    )
    payload = body.json()
    assert set(payload["features"]) == {"onboarding", "beta-banner"}
    assert payload["savedGroups"] == {"beta": ["u7", "u9"]} and payload["dateUpdated"].endswith("Z")
    assert httpx.get(f"{server.url}/api/features/tr_sdk_unknown1").status_code == 404

    # the reference SDK, pointed at Traction, evaluates as we do
    from growthbook import GrowthBook

    from traction.flags.domain.evaluate import Context, Evaluator

    ours = Evaluator(payload)
    for i in range(40):
        attrs = {"id": f"u{i}", "email": f"u{i}@{'acme.com' if i % 7 == 0 else 'x.org'}"}
        gb = GrowthBook(api_host=server.url, client_key=key, attributes=attrs)
        gb.load_features()
        for flag in ("onboarding", "beta-banner"):
            assert (
                gb.eval_feature(flag).value == ours.evaluate(flag, Context(attributes=attrs)).value
            )
        gb.destroy()

    # remote evaluation: values only, experiments with their tracks
    r = httpx.post(
        f"{server.url}/api/eval/{key}", json={"attributes": {"id": "u7", "email": "u7@x.org"}}
    )
    feats = r.json()["features"]
    assert feats["beta-banner"] == {"defaultValue": True}
    exp = feats["onboarding"]["rules"][0]["tracks"][0]
    assert exp["experiment"]["key"] == "onboarding-v2" and exp["result"]["inExperiment"] is True
    assert feats["onboarding"]["defaultValue"] == exp["result"]["value"]
    assert "rules" not in json.dumps(feats["beta-banner"])  # no rules reach the browser

    # development has its own rules; an encrypted key hides them
    dev = _sdk_key(c, "development")
    assert httpx.post(f"{server.url}/api/eval/{dev}", json={"attributes": {"id": "x"}}).json()[
        "features"]["onboarding"] == {"defaultValue": "guided"}  # fmt: skip
    enc = c.post("/api/v1/sdk-keys", json={"environment": "production", "encrypt": True}).json()
    secret = httpx.get(f"{server.url}/api/features/{enc['key']}").json()
    assert secret["features"] == {} and "onboarding" not in json.dumps(secret)
    from traction.flags.domain.crypto import decrypt

    assert (
        json.loads(decrypt(secret["encryptedFeatures"], enc["decryption_key"]))
        == payload["features"]
    )
    gb = GrowthBook(api_host=server.url, client_key=enc["key"], decryption_key=enc["decryption_key"],
                    attributes={"id": "u9"})  # fmt: skip
    gb.load_features()
    assert gb.eval_feature("beta-banner").value is True
    gb.destroy()


def test_plan_targeting_from_billing(server: LiveServer, workspace: Any) -> None:
    """An `account` attribute brings its plan and entitlements: "only business plans"."""
    example = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"
    server.ctx.billing.apply_catalog(workspace.id, yaml.safe_load(example.read_text()))
    server.ctx.billing.subscribe(workspace.id, "big", "business", trial=False)
    server.ctx.billing.subscribe(workspace.id, "mid", "pro", trial=False)
    c = admin(server, workspace)
    assert c.put("/api/v1/flags/sso-beta", json=SSO_GATE).status_code == 200
    key = _sdk_key(c, "production")

    def value(account: str) -> Any:
        r = httpx.post(
            f"{server.url}/api/eval/{key}", json={"attributes": {"id": "u1", "account": account}}
        )
        return r.json()["features"]["sso-beta"]["defaultValue"]

    assert (value("big"), value("mid"), value("tiny")) == (True, True, False)


@pytest.mark.timeout(30)
def test_server_sent_events_announce_changes(server: LiveServer, workspace: Any) -> None:
    c = admin(server, workspace)
    c.put("/api/v1/flags/onboarding", json=ONBOARDING)
    key = _sdk_key(c, "production")
    events: list[dict[str, Any]] = []
    done = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{server.url}/sub/{key}", timeout=20) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        done.set()
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events and set(events[0]["features"]) == {"onboarding"}
    c.post("/api/v1/flags/onboarding/toggle", json={"environment": "production", "enabled": False})
    assert done.wait(10)
    assert events[1]["features"] == {}  # switched off: gone from the payload


def test_cli_apply_toggle_history_and_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from traction.cli import app

    run = CliRunner()
    d = ["--data-dir", str(tmp_path / "data")]
    assert run.invoke(app, ["workspace", "create", "Acme", "--json", *d]).exit_code == 0
    good = tmp_path / "flag.yaml"
    good.write_text(yaml.safe_dump(SSO_GATE))
    assert run.invoke(app, ["flags", "apply", "sso-beta", str(good), *d]).exit_code == 0
    assert (
        run.invoke(app, ["flags", "toggle", "sso-beta", "production", "--off", *d]).exit_code == 0
    )
    listed = json.loads(run.invoke(app, ["flags", "list", "--json", *d]).stdout)
    assert listed[0]["environments"]["production"]["enabled"] is False
    hist = json.loads(run.invoke(app, ["flags", "history", "sso-beta", "--json", *d]).stdout)
    assert [h["change"] for h in hist] == ["updated", "created"] and hist[0]["actor"].startswith(
        "cli:"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SSO_GATE, "value_type": "number", "default_value": 0}))
    r = run.invoke(app, ["flags", "apply", "sso-beta", str(bad), *d])
    assert r.exit_code == 2 and "force: True is not a number" in r.output
    assert run.invoke(app, ["flags", "show", "nope", *d]).exit_code == 2


def test_fuzzed_flags_and_evaluations_never_answer_5xx(tmp_path: Path) -> None:
    """Random flag documents (near-valid rules, wrong types, junk) and random evaluation
    bodies against a real client key: always a 2xx or a 4xx with an error, never a 5xx."""
    import warnings

    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.test_flags_conformance import CONDITIONS, RULES
    from traction.server import create_app
    from traction.settings import Settings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    app = create_app(Settings(data_dir=tmp_path, log_json=False, api_rate_limit="100000/second"),
                     run_worker=False)  # fmt: skip
    ws = app.state.ctx.workspaces.create_workspace("Fuzz")
    key = next(
        k["key"] for k in app.state.ctx.flags.sdk_keys(ws.id) if k["environment"] == "production"
    )
    junk = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
                        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                        max_leaves=8)  # fmt: skip
    rule = st.one_of(
        RULES,
        junk,
        st.fixed_dictionaries({"force": junk, "condition": st.one_of(CONDITIONS, junk)}),
    )
    docs = st.one_of(
        junk,
        st.fixed_dictionaries({"value_type": st.sampled_from(["boolean", "string", "number", "json", "x"]),
                               "default_value": junk,
                               "environments": st.dictionaries(st.sampled_from(["production", "dev", "Bad Env"]),
                                                               st.fixed_dictionaries({"rules": st.lists(rule, max_size=3)}),
                                                               max_size=2)}),
    )  # fmt: skip

    with TestClient(app) as c:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(docs, junk)
        def run(doc: Any, attrs: Any) -> None:
            r = c.put("/api/v1/flags/fuzzed", json=doc, auth=(ws.secret_key, ""))
            assert r.status_code in (200, 422), (r.status_code, r.text)
            if r.status_code == 422:
                assert r.json()["error"]
            r = c.post(f"/api/eval/{key}", json={"attributes": attrs}, auth=None)
            assert r.status_code in (200, 422), (r.status_code, r.text)
            r = c.post(
                f"/api/eval/{key}",
                content=b'{"attributes": [1',
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 422

        run()


def test_scheduled_changes_apply_themselves(server: LiveServer, workspace: Any) -> None:
    """A launch at a set time: due entries apply (in order) and leave the schedule; the others
    wait; each application is a change in the history, by `system`."""
    from datetime import UTC, datetime, timedelta

    c = admin(server, workspace)
    now = datetime.now(UTC).replace(microsecond=0)
    past, later = (now - timedelta(minutes=5)).isoformat(), (now + timedelta(days=1)).isoformat()
    body = {**SSO_GATE, "schedule": [
        {"at": past, "environment": "production", "enabled": False},
        {"at": later, "environment": "production", "enabled": True}]}  # fmt: skip
    assert c.put("/api/v1/flags/launch", json=body).status_code == 200
    bad = {
        **SSO_GATE,
        "schedule": [{"at": "tomorrow", "environment": "production", "enabled": True}],
    }
    assert c.put("/api/v1/flags/launch", json=bad).status_code == 422
    assert server.ctx.flags.apply_schedules() == 1
    flag = c.get("/api/v1/flags/launch").json()
    assert flag["environments"]["production"]["enabled"] is False
    assert [e["enabled"] for e in flag["schedule"]] == [True]
    assert c.get("/api/v1/flags/launch/history").json()["history"][0]["actor"] == "system"
    assert server.ctx.flags.apply_schedules() == 0  # nothing more is due
    assert server.ctx.flags.apply_schedules(datetime.now() + timedelta(days=2)) == 1
    assert c.get("/api/v1/flags/launch").json()["environments"]["production"]["enabled"] is True
