"""The Python SDK's flags on a real server: local evaluation from the payload, background
refresh, answers that never raise, exposures logged once per person and experiment per
session (and stored), and the OpenFeature provider through OpenFeature's client API."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import LiveServer
from traction.sdk import Client, Flags

FLAG = {
    "value_type": "string",
    "default_value": "classic",
    "environments": {"production": {"rules": [
        {"id": "staff", "condition": {"email": {"$regex": "@acme\\.com$"}}, "force": "guided"},
        {"key": "onboarding-v2", "variations": ["classic", "guided"], "hashVersion": 2,
         "meta": [{"key": "control"}, {"key": "guided"}]},
    ]}},
}  # fmt: skip


def setup(srv: LiveServer, ws: Any) -> str:
    c = httpx.Client(base_url=srv.url, auth=(ws.secret_key, ""))
    assert c.put("/api/v1/flags/onboarding", json=FLAG).status_code == 200
    assert (
        c.put("/api/v1/flags/limit", json={"value_type": "number", "default_value": 10}).status_code
        == 200
    )
    keys = c.get("/api/v1/sdk-keys").json()["sdk_keys"]
    return next(k["key"] for k in keys if k["environment"] == "production")


def test_local_evaluation_refresh_and_errors(server: LiveServer, workspace: Any) -> None:
    key = setup(server, workspace)
    flags = Flags(key, server.url, background=False)
    staff = flags.evaluate("onboarding", {"id": "u1", "email": "a@acme.com"})
    assert (staff.value, staff.reason, staff.variant) == ("guided", "TARGETING_MATCH", "staff")
    split = flags.evaluate("onboarding", {"id": "u1"})
    assert split.reason == "SPLIT" and split.experiment == "onboarding-v2"
    assert split.variant in ("control", "guided") and split.value in ("classic", "guided")
    assert flags.evaluate("limit").value == 10 and flags.evaluate("limit").reason == "DEFAULT"
    missing = flags.evaluate("nope", {"id": "u1"}, default="x")
    assert (missing.value, missing.error_code) == ("x", "FLAG_NOT_FOUND")
    # a change reaches the client on its next refresh
    httpx.post(f"{server.url}/api/v1/flags/limit/toggle", auth=(workspace.secret_key, ""),
               json={"environment": "production", "enabled": False})  # fmt: skip
    assert flags.refresh() and flags.evaluate("limit", default=3).error_code == "FLAG_NOT_FOUND"
    # unreachable server: the last payload keeps serving; never ready: the default, no raise
    dead = Flags(key, "http://127.0.0.1:9", background=False, timeout=0.5)
    assert not dead.ready
    assert dead.evaluate("onboarding", {"id": "u1"}, "classic").error_code == "PROVIDER_NOT_READY"
    flags._http = httpx.Client(base_url="http://127.0.0.1:9", timeout=0.5)
    assert not flags.refresh() and flags.evaluate("onboarding", {"id": "u1"}).value == split.value


def test_exposures_once_per_person_and_experiment_per_session(
    server: LiveServer, workspace: Any
) -> None:
    key = setup(server, workspace)
    tracker = Client(workspace.write_key, server.url, sync_mode=True)
    flags = Flags(key, server.url, background=False, tracker=tracker)
    for _ in range(5):
        for user in ("u1", "u2", "u3"):
            flags.evaluate("onboarding", {"id": user})
    flags.evaluate("onboarding", {"id": "u9", "email": "x@acme.com"})  # a force rule: no exposure
    flags.session_seconds = 0  # a new session: logged again
    flags.evaluate("onboarding", {"id": "u1"})
    tracker.flush()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.ctx.events.count(workspace.id) < 4:
        time.sleep(0.05)
    seen = server.ctx.events.recent(workspace.id, name="$experiment_viewed", limit=100)
    assert sorted(e["user_id"] for e in seen) == ["u1", "u1", "u2", "u3"]
    ours = Flags(key, server.url, background=False)
    for e in seen:
        p = e["properties"]
        assert p["experiment_id"] == "onboarding-v2" and p["feature"] == "onboarding"
        assert p["variation_id"] == ours.evaluate("onboarding", {"id": e["user_id"]}).variation_id


def test_openfeature_provider(server: LiveServer, workspace: Any) -> None:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.exception import ErrorCode
    from openfeature.flag_evaluation import Reason

    from traction.sdk.openfeature import TractionProvider

    key = setup(server, workspace)
    api.set_provider(TractionProvider(client_key=key, host=server.url, background=False))
    client = api.get_client()
    staff = client.get_string_details(
        "onboarding", "classic", EvaluationContext("u1", {"email": "b@acme.com"})
    )
    assert (staff.value, staff.reason, staff.variant) == ("guided", Reason.TARGETING_MATCH, "staff")
    split = client.get_string_details("onboarding", "classic", EvaluationContext("u1"))
    assert split.reason == Reason.SPLIT and split.flag_metadata == {"experiment": "onboarding-v2"}
    assert client.get_integer_value("limit", 0) == 10
    assert client.get_float_value("limit", 0.0) == 10.0
    wrong = client.get_boolean_details("limit", False)
    assert (wrong.value, wrong.error_code) == (False, ErrorCode.TYPE_MISMATCH)
    missing = client.get_string_details("nope", "dflt")
    assert (missing.value, missing.error_code, missing.reason) == (
        "dflt",
        ErrorCode.FLAG_NOT_FOUND,
        Reason.ERROR,
    )
    api.shutdown()
