"""What browser SDKs need from the tracking endpoints, over real HTTP: CORS on every answer,
posthog-js's page-exit body, its remote config and flags, the sender's address, and no 5xx
whatever a browser (or an attacker) sends."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from tests.test_browser_sdks import outage
from traction.ingest.sdk_config import posthog_flags
from traction.settings import Settings
from traction.workspaces.service import CreatedWorkspace

ORIGIN = "http://shop.example"


def events(server: LiveServer, ws: CreatedWorkspace) -> list[dict[str, Any]]:
    return server.ctx.events.recent(ws.id, limit=1000)


# -- CORS --------------------------------------------------------------------------------


def test_preflight_allows_what_the_sdks_send(server: LiveServer) -> None:
    with server.client() as c:
        for path in ("/v1/t", "/v1/batch", "/e/", "/i/v0/e/", "/flags/", "/array/k/config"):
            r = c.options(
                path,
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,authorization,x-retry-count,x-sdk-next,bad header",
                },
            )
            assert r.status_code == 204, path
            assert r.headers["access-control-allow-origin"] == ORIGIN
            allowed = {
                h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")
            }
            assert {"content-type", "authorization", "x-retry-count", "x-sdk-next"} <= allowed
            assert "bad header" not in allowed  # not a header name: not echoed


def test_every_tracking_answer_carries_cors(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    h = {"Origin": ORIGIN}
    with server.client() as c:
        answers = {
            "ok": c.post(
                "/v1/t",
                json={"userId": "u", "event": "e"},
                auth=(workspace.write_key, ""),
                headers=h,
            ),
            "bad key": c.post(
                "/v1/t", json={"userId": "u", "event": "e"}, auth=("tr_pub_nope", ""), headers=h
            ),
            "bad body": c.post("/v1/t", content=b"{", auth=(workspace.write_key, ""), headers=h),
            "no such path": c.post("/v1/nope", json={}, headers=h),
            "wrong method": c.get("/v1/batch", headers=h),
            "posthog 404": c.get(f"/array/{workspace.write_key}/nope.js", headers=h),
        }
        with outage(server, 1):
            answers["503"] = c.post(
                "/v1/t",
                json={"userId": "u", "event": "e2"},
                auth=(workspace.write_key, ""),
                headers=h,
            )
    assert {k: r.status_code for k, r in answers.items()} == {
        "ok": 200, "bad key": 401, "bad body": 400, "no such path": 404,
        "wrong method": 405, "posthog 404": 404, "503": 503,
    }  # fmt: skip
    for name, r in answers.items():
        assert r.headers.get("access-control-allow-origin") == ORIGIN, name
    assert answers["503"].headers["retry-after"] == "1"
    assert "Retry-After" in answers["503"].headers["access-control-expose-headers"]


def test_dashboard_and_admin_api_get_no_cors(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    with server.client() as c:
        for r in (
            c.get(
                "/api/v1/workspace",
                headers={"Origin": ORIGIN, "Authorization": f"Bearer {workspace.secret_key}"},
            ),
            c.get("/login", headers={"Origin": ORIGIN}),
            c.options(
                "/api/v1/keys", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
            ),
        ):
            assert "access-control-allow-origin" not in r.headers


# -- posthog-js bodies, config and flags ---------------------------------------------------


def _b64(obj: Any) -> str:
    return base64.b64encode(orjson.dumps(obj)).decode()


def test_posthog_page_exit_beacon_is_stored(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    """What posthog-js's sendBeacon posts at page exit: form data `data=<base64 JSON>`,
    URL-encoded, with `?compression=base64`."""
    batch = [
        {"event": "$pageleave", "uuid": "b-1", "properties": {"distinct_id": "anon-1", "token": workspace.write_key, "$is_identified": False, "title": "Ünïcode ✓"}},
        {"event": "closing", "uuid": "b-2", "properties": {"distinct_id": "anon-1", "token": workspace.write_key, "$is_identified": False}},
    ]  # fmt: skip
    with server.client() as c:
        r = c.post(
            "/e/?ip=0&_=1700000000000&ver=1.449.2&compression=base64",
            content=f"data={quote(_b64(batch), safe='')}",
            headers={"content-type": "application/x-www-form-urlencoded", "Origin": ORIGIN},
        )
        assert r.status_code == 200, r.text
        # the same with "+" left unencoded (a form decoder reads it as a space)
        one = {
            "event": "bare",
            "uuid": "b-3",
            "distinct_id": "u",
            "token": workspace.write_key,
            "properties": {"k": "~~~>>>???"},
        }
        encoded = _b64(one)
        assert "+" in encoded or "/" in encoded
        r = c.post(
            "/e/?compression=base64",
            content=f"data={encoded}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text
        # a bare base64 body
        r = c.post("/i/v0/e/?compression=base64", content=_b64({**one, "uuid": "b-4"}))
        assert r.status_code == 200, r.text
        bad = c.post(
            "/e/?compression=base64",
            content=b"data=%%%not-base64%%%",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert bad.status_code == 400 and "base64" in bad.json()["error"]
        assert c.post("/e/?compression=lz64", content=b"xyz").status_code == 415
    stored = {e["event_id"]: e for e in events(server, workspace)}
    assert set(stored) == {"b-1", "b-2", "b-3", "b-4"}
    assert stored["b-1"]["properties"]["title"] == "Ünïcode ✓"


def test_posthog_remote_config(server: LiveServer, workspace: CreatedWorkspace) -> None:
    key = workspace.write_key
    with server.client() as c:
        r = c.get(f"/array/{key}/config")
        assert r.status_code == 200
        config = r.json()
        assert config["token"] == key and config["sessionRecording"] is False
        assert "surveys" not in config  # posthog-js loads its surveys script even on false
        assert config["siteApps"] == [] and config["heatmaps"] is False
        js = c.get(f"/array/{key}/config.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith(
            "application/javascript"
        )
        m = re.fullmatch(
            r"\(function\(\)\{.*_POSTHOG_REMOTE_CONFIG\[(\".*?\")\]=(\{.*\});\}\)\(\);\n",
            js.text,
            re.S,
        )
        assert (
            m and orjson.loads(m.group(1)) == key and orjson.loads(m.group(2))["config"] == config
        )
        assert c.get("/array/tr_pub_nope/config").status_code == 401
        assert c.get(f"/array/{key}/array.js").status_code == 404


def test_posthog_flags_and_decide(server: LiveServer, workspace: CreatedWorkspace) -> None:
    key = workspace.write_key
    body = {"token": key, "distinct_id": "anon-1", "groups": {}, "person_properties": {}}
    with server.client() as c:
        v2 = c.post(
            "/flags/?v=2&config=true",
            content=orjson.dumps(body),
            headers={"content-type": "text/plain"},
        )
        assert v2.status_code == 200
        assert v2.json()["flags"] == {} and v2.json()["errorsWhileComputingFlags"] is False
        old = c.post(
            "/decide/?v=3",
            content=f"data={quote(_b64(body))}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert old.status_code == 200 and old.json()["featureFlags"] == {}
        assert c.post("/flags/", json={**body, "token": "tr_pub_nope"}).status_code == 401
        assert c.post("/flags/", json=[1, 2]).status_code == 400
        # a secret key is not needed, a write key is enough; no key at all is 401
        assert c.post("/flags", json={"distinct_id": "x"}).status_code == 401


def test_flags_answer_shapes() -> None:
    out = posthog_flags({"new-nav": True, "checkout": "variant-b", "off": False})
    assert out["featureFlags"] == {"new-nav": True, "checkout": "variant-b", "off": False}
    assert {k: (v["enabled"], v["variant"]) for k, v in out["flags"].items()} == {
        "new-nav": (True, None),
        "checkout": (True, "variant-b"),
        "off": (False, None),
    }


def test_segment_settings_keep_the_browser_here(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    with server.client() as c:
        s = c.get(f"/v1/projects/{workspace.write_key}/settings").json()
    assert s["metrics"]["sampleRate"] == 0
    here = f"127.0.0.1:{server.port}/v1"
    # every host the SDK may send to is this server
    assert s["integrations"]["Segment.io"]["apiHost"] == here and s["metrics"]["host"] == here
    assert s["remotePlugins"] == [] and s["legacyVideoPluginsEnabled"] is False


# -- the sender's address ------------------------------------------------------------------


@pytest.fixture
def proxied(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings.model_copy(update={"trusted_proxies": "127.0.0.1"})) as s:
        yield s


def _post_with_forwarded(server: LiveServer, key: str, uid: str) -> None:
    with server.client() as c:
        r = c.post(
            "/v1/t",
            json={"userId": uid, "event": "e"},
            auth=(key, ""),
            headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9"},
        )
        assert r.status_code == 200
        r = c.post(
            "/capture/",
            json={"event": "p", "distinct_id": uid, "api_key": key},
            headers={"X-Forwarded-For": "198.51.100.9"},
        )
        assert r.status_code == 200


def test_client_ip_from_trusted_proxy_only(
    server: LiveServer, workspace: CreatedWorkspace, proxied: LiveServer
) -> None:
    _post_with_forwarded(server, workspace.write_key, "direct")
    assert {e["context"]["ip"] for e in events(server, workspace)} == {"127.0.0.1"}
    ws = proxied.ctx.workspaces.create_workspace("Behind a proxy")
    _post_with_forwarded(proxied, ws.write_key, "proxied")
    assert {e["context"]["ip"] for e in events(proxied, ws)} == {"198.51.100.9"}


def test_bad_trusted_proxies_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.local")


# -- no 5xx, whatever arrives --------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/flags/", "/decide/", "/e/", "/i/v0/e/", "/batch/", "/v1/t", "/v1/b"]),
    compression=st.sampled_from(["", "base64", "gzip-js", "lz64", "x"]),
    content_type=st.sampled_from(
        ["text/plain", "application/json", "application/x-www-form-urlencoded"]
    ),
    shape=st.sampled_from(["json", "base64", "form", "form-base64", "raw"]),
    value=_json_values,
    raw=st.binary(max_size=64),
    with_key=st.booleans(),
)
def test_fuzz_browser_endpoints_never_5xx(
    fuzz_server: tuple[LiveServer, CreatedWorkspace], path: str, compression: str, content_type: str,
    shape: str, value: Any, raw: bytes, with_key: bool,
) -> None:  # fmt: skip
    server, ws = fuzz_server
    if with_key and isinstance(value, dict):
        value = {**value, "token": ws.write_key, "writeKey": ws.write_key}
    encoded = json.dumps(value).encode()  # (big integers too, unlike orjson)
    body = {
        "json": encoded,
        "base64": base64.b64encode(encoded),
        "form": b"data=" + quote(encoded.decode()).encode(),
        "form-base64": b"data=" + base64.b64encode(encoded),
        "raw": raw,
    }[shape]
    url = path + (f"?compression={compression}" if compression else "")
    r = httpx.post(
        server.url + url,
        content=body,
        headers={"content-type": content_type, "Origin": ORIGIN},
        timeout=30,
    )
    assert r.status_code < 500, (url, body[:200], r.text)
    assert r.headers["access-control-allow-origin"] == ORIGIN


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(token=st.text(max_size=60), file=st.text(max_size=20), requested=st.text(max_size=80))
def test_fuzz_config_and_preflight_never_5xx(
    fuzz_server: tuple[LiveServer, CreatedWorkspace], token: str, file: str, requested: str
) -> None:
    server, ws = fuzz_server
    with server.client() as c:
        r = c.get(
            f"/array/{quote(token or ws.write_key, safe='')}/{quote(file or 'config', safe='')}"
        )
        assert r.status_code < 500
        try:
            p = c.options(
                "/v1/t",
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": requested,
                },
            )
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            return  # not a header value a client can send
        assert p.status_code < 500  # (the HTTP parser itself refuses control characters: 400)
        if p.status_code == 204:
            for name in p.headers["access-control-allow-headers"].split(", "):
                assert re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, CreatedWorkspace]]:
    s = Settings(data_dir=tmp_path_factory.mktemp("fuzz") / "data", log_json=False)
    with LiveServer(s) as server:
        yield server, server.ctx.workspaces.create_workspace("Fuzz")
