"""The tracking APIs over real HTTP: what is stored, what is refused, and that the server keeps serving."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from traction.workspaces.service import CreatedWorkspace


def batch(*messages: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"batch": list(messages), **extra})


def post(
    server: LiveServer, path: str, body: bytes, key: str | None, **headers: str
) -> httpx.Response:
    with server.client() as c:
        return c.post(
            path,
            content=body,
            auth=(key, "") if key else None,
            headers={"content-type": "application/json", **headers},
        )


def stored(server: LiveServer, ws: str) -> list[dict[str, Any]]:
    return server.ctx.events.recent(ws, limit=10_000)


def test_batch_is_stored_and_answer_is_segment_shaped(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    r = post(
        server,
        "/v1/batch",
        batch(
            {
                "type": "track",
                "userId": "u1",
                "event": "signed_up",
                "messageId": "m1",
                "properties": {"plan": "pro"},
            },
            {"type": "page", "anonymousId": "a1", "name": "home", "messageId": "m2"},
        ),
        workspace.write_key,
    )
    assert r.status_code == 200 and r.json()["success"] is True
    rows = {e["event_id"]: e for e in stored(server, workspace.id)}
    assert set(rows) == {"m1", "m2"}
    assert rows["m1"]["name"] == "signed_up" and rows["m1"]["properties"] == {"plan": "pro"}


def test_same_batch_twice_is_stored_once(server: LiveServer, workspace: CreatedWorkspace) -> None:
    body = batch(
        *[{"type": "track", "userId": "u", "event": "e", "messageId": f"m{i}"} for i in range(50)]
    )
    for _ in range(2):
        assert post(server, "/v1/batch", body, workspace.write_key).status_code == 200
    assert len(stored(server, workspace.id)) == 50
    # and a duplicate inside one batch
    post(
        server,
        "/v1/batch",
        batch(
            {"type": "track", "userId": "u", "event": "e", "messageId": "z"},
            {"type": "track", "userId": "u", "event": "e", "messageId": "z"},
        ),
        workspace.write_key,
    )
    assert len(stored(server, workspace.id)) == 51


def test_single_endpoints_and_write_key_in_body(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    for path, msg in [
        ("/v1/track", {"userId": "u", "event": "x"}),
        ("/v1/identify", {"userId": "u", "traits": {"a": 1}}),
        ("/v1/page", {"anonymousId": "a", "name": "home"}),
        ("/v1/screen", {"anonymousId": "a", "name": "Home"}),
        ("/v1/group", {"userId": "u", "groupId": "acme"}),
        ("/v1/alias", {"userId": "u", "previousId": "a"}),
    ]:
        r = post(server, path, orjson.dumps({**msg, "writeKey": workspace.write_key}), None)
        assert r.status_code == 200, (path, r.text)
    assert {e["type"] for e in stored(server, workspace.id)} == {
        "track",
        "identify",
        "page",
        "screen",
        "group",
        "alias",
    }


def test_gzip_body(server: LiveServer, workspace: CreatedWorkspace) -> None:
    body = gzip.compress(
        batch({"type": "track", "userId": "u", "event": "zipped", "messageId": "g"})
    )
    r = post(server, "/v1/batch", body, workspace.write_key, **{"content-encoding": "gzip"})
    assert r.status_code == 200
    assert stored(server, workspace.id)[0]["name"] == "zipped"


def test_bad_events_are_listed_and_good_ones_kept(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    r = post(
        server,
        "/v1/batch",
        batch(
            {"type": "track", "userId": "u", "event": "ok", "messageId": "good"},
            {"type": "track", "userId": "u", "messageId": "no-name"},
            {
                "type": "track",
                "userId": "u",
                "event": "x",
                "properties": "nope",
                "messageId": "bad-props",
            },
        ),
        workspace.write_key,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["messageId"]) for x in body["rejected"]] == [
        (1, "no-name"),
        (2, "bad-props"),
    ]
    assert "event is required" in body["rejected"][0]["error"]
    assert "properties must be an object" in body["rejected"][1]["error"]
    assert [e["event_id"] for e in stored(server, workspace.id)] == ["good"]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b"", {}, 400, "empty"),
        (
            b'{"batch": [{"type": "track", "userId": "\xff\xfe", "event": "x"}]}',
            {},
            400,
            "not valid JSON",
        ),
        (b'{"batch": "all of them"}', {}, 400, "batch must be a list"),
        (b"[1, 2]", {}, 400, "must be an object"),
        (b'{"batch": [], "colour": 1}', {}, 400, "unknown field 'colour'"),
        (b'{"batch": [], "sentAt": 5}', {}, 400, "sentAt must be an ISO-8601 string"),
        (b"x" * (501 * 1024), {}, 413, "larger than 500 KB"),
        (
            gzip.compress(b"[" * 10 + b" " * (20 * 1024 * 1024)),
            {"content-encoding": "gzip"},
            413,
            "decompressed body is larger",
        ),
        (b"\x1f\x8bnot-gzip-really", {"content-encoding": "gzip"}, 400, "not valid gzip"),
        (b"{}", {"content-encoding": "br"}, 415, "unsupported Content-Encoding"),
        # nesting deeper than any parser should follow
        (b'{"batch": [' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"]}", {}, 400, "not valid JSON"),
    ],
)
def test_malformed_input_gets_a_clear_4xx(
    server: LiveServer,
    workspace: CreatedWorkspace,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    r = post(server, "/v1/batch", body, workspace.write_key, **headers)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert stored(server, workspace.id) == []
    with server.client() as c:
        assert c.get("/healthz").status_code == 200  # still serving


def test_event_over_32kb_is_rejected_alone(server: LiveServer, workspace: CreatedWorkspace) -> None:
    big = {
        "type": "track",
        "userId": "u",
        "event": "big",
        "messageId": "big",
        "properties": {"blob": "x" * 33_000},
    }
    r = post(
        server,
        "/v1/batch",
        batch(big, {"type": "track", "userId": "u", "event": "small", "messageId": "s"}),
        workspace.write_key,
    )
    assert r.status_code == 400 and r.json()["rejected"][0]["error"] == "event is larger than 32 KB"
    assert [e["event_id"] for e in stored(server, workspace.id)] == ["s"]
    r = post(server, "/v1/track", orjson.dumps(big), workspace.write_key)
    assert r.status_code == 413


def test_deep_but_legal_nesting_is_stored(server: LiveServer, workspace: CreatedWorkspace) -> None:
    r = post(
        server,
        "/v1/track",
        orjson.dumps({"userId": "u", "event": "deep", "properties": nested(100)}),
        workspace.write_key,
    )
    assert r.status_code == 200


@pytest.mark.parametrize("key", [None, "tr_pub_wrong", "garbage"])
def test_wrong_or_missing_key_is_401(
    server: LiveServer, workspace: CreatedWorkspace, key: str | None
) -> None:
    r = post(server, "/v1/batch", batch({"type": "track", "userId": "u", "event": "x"}), key)
    assert r.status_code == 401 and "key" in r.json()["error"]
    assert stored(server, workspace.id) == []


def test_revoked_key_stops_working(server: LiveServer, workspace: CreatedWorkspace) -> None:
    ws = server.ctx.workspaces
    key = ws.create_key(workspace.id, "write", "temp")
    assert (
        post(server, "/v1/track", orjson.dumps({"userId": "u", "event": "x"}), key.key).status_code
        == 200
    )
    ws.revoke_key(workspace.id, key.id)
    assert (
        post(server, "/v1/track", orjson.dumps({"userId": "u", "event": "x"}), key.key).status_code
        == 401
    )


def test_write_key_cannot_call_admin_endpoints(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    with server.client() as c:
        for method, path in [
            ("GET", "/api/v1/events"),
            ("GET", "/api/v1/keys"),
            ("POST", "/api/v1/keys"),
            ("GET", "/api/v1/workspace"),
            ("GET", "/api/v1/persons?distinct_id=u"),
        ]:
            r = c.request(
                method,
                path,
                headers={"Authorization": f"Bearer {workspace.write_key}"},
                json={"scope": "admin"},
            )
            assert r.status_code == 403, (path, r.text)
            assert "needs 'admin'" in r.json()["error"]
        assert c.get("/api/v1/events").status_code == 401
        assert (
            c.get(
                "/api/v1/events", headers={"Authorization": f"Bearer {workspace.secret_key}"}
            ).status_code
            == 200
        )


def test_admin_key_also_ingests(server: LiveServer, workspace: CreatedWorkspace) -> None:
    assert (
        post(
            server, "/v1/track", orjson.dumps({"userId": "u", "event": "x"}), workspace.secret_key
        ).status_code
        == 200
    )


def test_workspace_isolation(server: LiveServer, workspace: CreatedWorkspace) -> None:
    other = server.ctx.workspaces.create_workspace("Other")
    post(
        server,
        "/v1/batch",
        batch(
            {"type": "identify", "userId": "shared-id", "traits": {"owner": "A"}, "messageId": "m"}
        ),
        workspace.write_key,
    )
    post(
        server,
        "/v1/batch",
        batch(
            {"type": "identify", "userId": "shared-id", "traits": {"owner": "B"}, "messageId": "m"}
        ),
        other.write_key,
    )
    with server.client() as c:
        a = c.get(
            "/api/v1/events", headers={"Authorization": f"Bearer {workspace.secret_key}"}
        ).json()
        b = c.get("/api/v1/events", headers={"Authorization": f"Bearer {other.secret_key}"}).json()
        assert [e["workspace_id"] for e in a] == [workspace.id] and [
            e["workspace_id"] for e in b
        ] == [other.id]
        pa = c.get(
            "/api/v1/persons?distinct_id=shared-id",
            headers={"Authorization": f"Bearer {workspace.secret_key}"},
        ).json()
        assert pa["traits"] == {"owner": "A"}
        # B's key cannot read A's person by id
        r = c.get(
            f"/api/v1/persons/{pa['id']}", headers={"Authorization": f"Bearer {other.secret_key}"}
        )
        assert r.status_code == 404
        # B's admin key creates keys only for B
        new = c.post(
            "/api/v1/keys",
            json={"scope": "write"},
            headers={"Authorization": f"Bearer {other.secret_key}"},
        ).json()
    assert (
        post(
            server,
            "/v1/track",
            orjson.dumps({"userId": "n", "event": "x", "messageId": "nk"}),
            new["key"],
        ).status_code
        == 200
    )
    assert "nk" in {e["event_id"] for e in stored(server, other.id)}
    assert "nk" not in {e["event_id"] for e in stored(server, workspace.id)}


def test_admin_api_validates_input(server: LiveServer, workspace: CreatedWorkspace) -> None:
    auth = {"Authorization": f"Bearer {workspace.secret_key}"}
    with server.client() as c:
        r = c.post("/api/v1/keys", json={"scope": "root"}, headers=auth)
        assert r.status_code == 422 and "scope" in r.json()["error"]
        r = c.get("/api/v1/events?limit=0", headers=auth)
        assert r.status_code == 422 and "limit" in r.json()["error"]
        assert c.delete("/api/v1/keys/key_nope", headers=auth).status_code == 404


def test_cors_preflight_and_headers(server: LiveServer, workspace: CreatedWorkspace) -> None:
    with server.client() as c:
        r = c.options(
            "/v1/batch",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert (
            r.status_code == 204
            and r.headers["access-control-allow-origin"] == "https://app.example"
        )
    r = post(
        server,
        "/v1/track",
        orjson.dumps({"userId": "u", "event": "x"}),
        workspace.write_key,
        origin="https://app.example",
    )
    assert r.headers["access-control-allow-origin"] == "https://app.example"


# -- PostHog capture ---------------------------------------------------------------------


def test_posthog_batch_and_capture(server: LiveServer, workspace: CreatedWorkspace) -> None:
    key = workspace.write_key
    r = post(
        server,
        "/batch/",
        orjson.dumps(
            {
                "api_key": key,
                "batch": [
                    {
                        "event": "$pageview",
                        "distinct_id": "anon-x",
                        "uuid": "e1",
                        "properties": {
                            "$is_identified": False,
                            "$current_url": "https://x.io/pricing",
                        },
                    },
                    {
                        "event": "$identify",
                        "distinct_id": "user-x",
                        "uuid": "e2",
                        "properties": {"$anon_distinct_id": "anon-x"},
                        "$set": {"email": "x@x.io"},
                    },
                ],
            }
        ),
        None,
    )
    assert r.status_code == 200 and r.json()["status"] == 1
    r = post(
        server,
        "/capture/",
        orjson.dumps(
            {"api_key": key, "event": "report_created", "distinct_id": "user-x", "uuid": "e3"}
        ),
        None,
    )
    assert r.status_code == 200
    r = post(
        server,
        "/e/",
        gzip.compress(
            orjson.dumps(
                [
                    {
                        "event": "clicked",
                        "distinct_id": "user-x",
                        "uuid": "e4",
                        "properties": {"token": key},
                    }
                ]
            )
        ),
        None,
        **{"content-encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    form = (
        "data="
        + base64.b64encode(
            orjson.dumps(
                {
                    "event": "form_ev",
                    "distinct_id": "user-x",
                    "uuid": "e5",
                    "properties": {"token": key},
                }
            )
        ).decode()
    )
    with server.client() as c:
        r = c.post(
            "/i/v0/e/", content=form, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert r.status_code == 200, r.text
    rows = {e["event_id"]: e for e in stored(server, workspace.id)}
    assert set(rows) == {"e1", "e2", "e3", "e4", "e5"}
    assert (
        len({e["person_id"] for e in rows.values()}) == 1
    )  # anonymous pageview merged by $identify
    assert "token" not in rows["e4"]["properties"]
    assert rows["e1"]["type"] == "page"


def test_posthog_errors(server: LiveServer, workspace: CreatedWorkspace) -> None:
    r = post(server, "/batch/", orjson.dumps({"api_key": "nope", "batch": []}), None)
    assert r.status_code == 401
    r = post(
        server,
        "/capture/",
        orjson.dumps({"api_key": workspace.write_key, "distinct_id": "u"}),
        None,
    )
    assert r.status_code == 400 and "event is required" in r.json()["rejected"][0]["error"]
    r = post(server, "/e/?compression=lz64", b"abc", workspace.write_key)
    assert r.status_code == 415


def test_analytics_js_wire_format(server: LiveServer, workspace: CreatedWorkspace) -> None:
    """What @segment/analytics-next sends: short paths, text/plain, writeKey and _metadata in the body."""
    page = {
        "type": "page", "name": "Pricing", "properties": {"path": "/pricing", "url": "https://x.io/pricing"},
        "userId": None, "anonymousId": "c0ffee-anon", "messageId": "ajs-next-1",
        "timestamp": "2026-03-01T10:00:00.000Z", "sentAt": "2026-03-01T10:00:00.050Z",
        "integrations": {}, "writeKey": workspace.write_key,
        "context": {"page": {"path": "/pricing", "search": "?utm_source=hn"}, "campaign": {"source": "hn"},
                    "userAgent": "Mozilla/5.0", "locale": "en-US", "library": {"name": "analytics.js", "version": "next-1.70.0"}},
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
    }  # fmt: skip
    track = {**page, "type": "track", "event": "Signup Clicked", "messageId": "ajs-next-2"}
    del track["name"]
    with server.client() as c:
        for path, body in (("/v1/p", page), ("/v1/t", track)):
            r = c.post(path, content=orjson.dumps(body), headers={"content-type": "text/plain"})
            assert r.status_code == 200, r.text
    rows = {e["event_id"]: e for e in stored(server, workspace.id)}
    assert rows["ajs-next-1"]["type"] == "page" and rows["ajs-next-1"]["name"] == "Pricing"
    assert rows["ajs-next-2"]["name"] == "Signup Clicked" and rows["ajs-next-2"]["context"][
        "campaign"
    ] == {"source": "hn"}


def test_clock_skew_corrected_end_to_end(server: LiveServer, workspace: CreatedWorkspace) -> None:
    """A device clock 3 days slow: the stored time is server time minus the send delay."""
    from datetime import datetime, timedelta

    before = datetime.now(UTC).replace(tzinfo=None)
    r = post(server, "/v1/batch", batch(
        {"type": "track", "userId": "u", "event": "skewed", "messageId": "sk", "timestamp": "2020-01-01T00:00:00Z"},
        sentAt="2020-01-01T00:00:42Z",
    ), workspace.write_key)  # fmt: skip
    after = datetime.now(UTC).replace(tzinfo=None)
    row = stored(server, workspace.id)[0]
    assert before - timedelta(seconds=42) <= row["timestamp"] <= after - timedelta(seconds=42)
    assert row["original_timestamp"] == datetime(2020, 1, 1) and r.status_code == 200


def test_analytics_js_settings_endpoint(server: LiveServer, workspace: CreatedWorkspace) -> None:
    with server.client() as c:
        r = c.get(f"/v1/projects/{workspace.write_key}/settings")
        assert r.status_code == 200
        seg = r.json()["integrations"]["Segment.io"]
        assert seg == {
            "apiKey": workspace.write_key,
            "apiHost": f"127.0.0.1:{server.port}/v1",
            "protocol": "http",
        }
        assert c.get("/v1/projects/tr_pub_nope/settings").status_code == 401
