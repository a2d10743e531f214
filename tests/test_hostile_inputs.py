"""The 5xx causes a hostile-input pass found (issue 11, item 6), each reproduced as reported:
now a 4xx that says what is wrong. And a bug still gets an answer with an error id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, web_client
from traction.workspaces.service import CreatedWorkspace

R = {"date_from": "2026-03-01", "date_to": "2026-03-31"}


@pytest.fixture
def api(server: LiveServer) -> tuple[LiveServer, CreatedWorkspace]:
    return server, server.ctx.workspaces.create_workspace("Hostile")


def post(
    api: tuple[LiveServer, CreatedWorkspace], path: str, body: Any, raw: bool = False
) -> httpx.Response:
    server, ws = api
    kw: dict[str, Any] = {"content": body} if raw else {"json": body}
    return httpx.post(server.url + path, auth=(ws.secret_key, ""), timeout=30,
                      headers={"Content-Type": "application/json"}, **kw)  # fmt: skip


def funnel_with(flt: dict[str, Any]) -> dict[str, Any]:
    return {"steps": [{"event": "a", "filters": [flt]}, {"event": "b"}], "range": R}


@pytest.mark.parametrize(
    ("flt", "says"),
    [
        ({"property": "p", "operator": "regex", "value": "(?=a)"}, "RE2"),
        ({"property": "p", "operator": "regex", "value": "(a)\\1"}, "RE2"),
        ({"property": "p", "operator": "after", "value": "2024-01-01x"}, "ISO date"),
        ({"property": "p", "operator": "before", "value": "2024-13-01"}, "ISO date"),
    ],
)
def test_filters_the_engine_would_choke_on(api, flt: dict[str, Any], says: str) -> None:  # type: ignore[no-untyped-def]
    r = post(api, "/api/v1/insights/funnel", funnel_with(flt))
    assert r.status_code == 422 and says in r.json()["error"], r.text


def test_huge_numbers_and_dates_out_of_range(api) -> None:  # type: ignore[no-untyped-def]
    huge = (
        '{"steps": [{"event": "a", "filters": [{"property": "n", "operator": "gt", "value": 1%s}]}, {"event": "b"}], "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"}}'
        % ("0" * 400)
    )
    r = post(api, "/api/v1/insights/funnel", huge, raw=True)
    assert r.status_code == 422 and "too large" in r.json()["error"], r.text
    r = post(
        api,
        "/api/v1/insights/funnel",
        {
            **funnel_with({"property": "p"}),
            "range": {"date_from": "2026-03-01", "date_to": "9999-12-31"},
        },
    )
    assert r.status_code == 422 and "dates must lie between" in r.json()["error"]
    trend = {
        "series": [{"event": {"event": "a"}}],
        "range": {"date_from": "0001-01-01", "date_to": "0001-01-05"},
        "compare_previous": True,
    }
    assert post(api, "/api/v1/insights/trend", trend).status_code == 422
    server, ws = api
    r = httpx.get(
        server.url + "/api/v1/insights/scorecard",
        params={"date_from": "0001-01-01", "date_to": "0001-01-05"},
        auth=(ws.secret_key, ""),
    )
    assert r.status_code == 422 and "dates must lie between" in r.json()["error"]


@pytest.mark.parametrize("zone", ["posixrules", "localtime", "right/UTC"])
def test_time_zones_the_engine_does_not_know(api, zone: str) -> None:  # type: ignore[no-untyped-def]
    server, ws = api
    r = httpx.patch(
        server.url + "/api/v1/workspace", json={"timezone": zone}, auth=(ws.secret_key, "")
    )
    assert r.status_code == 422 and "unknown time zone" in r.json()["error"]
    assert server.ctx.workspaces.get_workspace(ws.id).timezone == "UTC"  # type: ignore[union-attr]
    assert (
        httpx.patch(
            server.url + "/api/v1/workspace",
            json={"timezone": "Europe/Berlin"},
            auth=(ws.secret_key, ""),
        ).status_code
        == 200
    )


def test_json_nested_too_deep(api) -> None:  # type: ignore[no-untyped-def]
    deep = "[" * 100_000 + "]" * 100_000
    r = post(api, "/api/v1/insights/funnel", deep, raw=True)
    assert 400 <= r.status_code < 500, r.text
    server, ws = api
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    with web_client(server, "pat@acme.io") as web:
        r = web.post(f"/w/{ws.id}/insights/run", data={"kind": "funnel", "spec": deep})
        assert r.status_code == 200 and "not valid JSON" in r.text
        for dates in (
            {"date_from": "2026-03-31", "date_to": "2026-03-01"},
            {"date_from": "0001-01-01", "date_to": "0001-01-31"},
        ):
            assert (
                web.get(f"/w/{ws.id}/scorecard/spark/activation_rate", params=dates).status_code
                == 422
            )


def test_a_bug_still_gets_an_answer_with_an_error_id(server: LiveServer) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    server.app.add_api_route("/api/v1/boom-for-test", boom)
    r = httpx.get(server.url + "/api/v1/boom-for-test")
    assert r.status_code == 500 and r.json()["error"].startswith("internal error ")
    assert httpx.get(server.url + "/healthz").status_code == 200  # the server goes on


def test_api_bodies_are_refused_before_any_work(api) -> None:  # type: ignore[no-untyped-def]
    """No key, a bad key, or a body over the cap: answered at once, the body never parsed."""
    server, ws = api
    big = b"[" + b"1," * 3_000_000 + b"1]"  # ~6 MB of valid JSON
    url = server.url + "/api/v1/insights/funnel"
    r = httpx.post(url, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    r = httpx.post(
        url,
        content=big,
        auth=("tr_sec_not-a-key", ""),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 401
    r = httpx.post(
        url, content=big, auth=(ws.secret_key, ""), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "larger than 1024 KB" in r.json()["error"]

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(30):
            yield b" " * 65536  # no Content-Length: counted as it arrives

    r = httpx.post(
        url,
        content=chunks(),
        auth=(ws.secret_key, ""),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    # a normal request still goes through, and a write key still gets its 403 from the route
    ok = httpx.post(
        url, json={"steps": [{"event": "a"}, {"event": "b"}], "range": R}, auth=(ws.secret_key, "")
    )
    assert ok.status_code == 200
    assert httpx.post(url, json={}, auth=(ws.write_key, "")).status_code == 403


def test_what_one_workspace_may_create_is_capped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from traction.settings import Settings

    settings = Settings(
        data_dir=tmp_path, max_api_keys=3, max_saved_insights=2, max_dashboards=1, log_json=False
    )
    with LiveServer(settings) as server:
        ws = server.ctx.workspaces.create_workspace("Capped")  # 2 keys: write and secret
        c = httpx.Client(base_url=server.url + "/api/v1", auth=(ws.secret_key, ""))
        assert c.post("/keys", json={"scope": "write"}).status_code == 201
        r = c.post("/keys", json={"scope": "write"})
        assert r.status_code == 422 and "3 active keys, the most allowed" in r.json()["error"]
        spec = {"steps": [{"event": "a"}, {"event": "b"}], "range": R}
        for i in range(2):
            assert (
                c.post(
                    "/saved-insights", json={"name": f"i{i}", "kind": "funnel", "spec": spec}
                ).status_code
                == 201
            )
        r = c.post("/saved-insights", json={"name": "one more", "kind": "funnel", "spec": spec})
        assert r.status_code == 422 and "2 saved insights" in r.json()["error"]
        assert c.post("/dashboards", json={"name": "d"}).status_code == 201
        assert c.post("/dashboards", json={"name": "e"}).status_code == 422


def test_docs_and_metrics_can_require_a_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from traction.settings import Settings

    with LiveServer(
        Settings(data_dir=tmp_path, protect_meta_endpoints=True, log_json=False)
    ) as server:
        ws = server.ctx.workspaces.create_workspace("Private")
        server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert httpx.get(server.url + path).status_code == 401
            assert httpx.get(server.url + path, auth=(ws.secret_key, "")).status_code == 200
        with web_client(server, "pat@acme.io") as web:  # a signed-in person may read them too
            assert web.get("/openapi.json").status_code == 200
        assert httpx.get(server.url + "/healthz").status_code == 200  # probes stay open
