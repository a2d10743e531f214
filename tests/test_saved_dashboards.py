"""Saved insights and user-arranged dashboards: service (SQLite and PostgreSQL), API, browser."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from tests.conftest import LiveServer, show_json, web_client
from tests.test_dashboard import login, page  # noqa: F401  (shared fixtures)
from tests.test_kpis import msgs
from traction.analytics.saved import NotFound
from traction.context import Context
from traction.ingest.domain import normalize_segment

FUNNEL = {
    "steps": [{"event": "signed_up"}, {"event": "trial_started"}],
    "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"},
}
TREND = {
    "series": [{"event": {"event": "signed_up"}}],
    "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"},
}


def test_save_arrange_and_isolate(ctx: Context) -> None:
    a = ctx.workspaces.create_workspace("A").id
    b = ctx.workspaces.create_workspace("B").id
    saved = ctx.saved
    f = saved.save(a, "Trial funnel", "funnel", FUNNEL)
    t = saved.save(a, "Sign-ups", "trend", TREND)
    assert f.spec["window_days"] == 14.0  # stored normalised, defaults filled in
    with pytest.raises(ValidationError, match="window_days"):
        saved.save(a, "bad", "funnel", {**FUNNEL, "window_days": 0})
    with pytest.raises(ValueError, match="kind must be one of"):
        saved.save(a, "bad", "pie", {})
    with pytest.raises(ValueError, match="name"):
        saved.save(a, "  ", "funnel", FUNNEL)

    d = saved.create_dashboard(a, "Growth")
    t1 = saved.add_tile(a, d.id, f.id)
    t2 = saved.add_tile(a, d.id, t.id)
    assert [x.insight.name for x in saved.tiles(a, d.id)] == ["Trial funnel", "Sign-ups"]
    saved.move_tile(a, d.id, t2, -1)
    assert [x.id for x in saved.tiles(a, d.id)] == [t2, t1]
    saved.move_tile(a, d.id, t2, -1)  # already first: nothing happens
    assert [x.id for x in saved.tiles(a, d.id)] == [t2, t1]
    saved.remove_tile(a, d.id, t2)
    assert [x.id for x in saved.tiles(a, d.id)] == [t1]

    # another workspace sees none of it and cannot use it
    assert saved.dashboards(b) == [] and saved.list_insights(b) == []
    with pytest.raises(NotFound):
        saved.tiles(b, d.id)
    db = saved.create_dashboard(b, "Theirs")
    with pytest.raises(NotFound):
        saved.add_tile(b, db.id, f.id)
    # deleting an insight removes its tiles
    saved.delete(a, f.id)
    assert saved.tiles(a, d.id) == []


def test_dashboards_over_http(server: LiveServer) -> None:
    ws = server.ctx.workspaces.create_workspace("H")
    other = server.ctx.workspaces.create_workspace("O")
    auth = {"Authorization": f"Bearer {ws.secret_key}"}
    with server.client() as c:
        bad = c.post(
            "/api/v1/saved-insights",
            json={"name": "x", "kind": "funnel", "spec": {**FUNNEL, "window_days": -1}},
            headers=auth,
        )
        assert bad.status_code == 422 and "window_days" in bad.json()["error"]
        ins = c.post(
            "/api/v1/saved-insights",
            json={"name": "Trial funnel", "kind": "funnel", "spec": FUNNEL},
            headers=auth,
        ).json()
        d = c.post("/api/v1/dashboards", json={"name": "Growth"}, headers=auth).json()
        tile = c.post(
            f"/api/v1/dashboards/{d['id']}/tiles", json={"insight_id": ins["id"]}, headers=auth
        ).json()
        got = c.get(f"/api/v1/dashboards/{d['id']}", headers=auth).json()
        assert [x["insight"]["name"] for x in got["tiles"]] == ["Trial funnel"] and got["tiles"][0][
            "id"
        ] == tile["id"]
        assert (
            c.post(
                f"/api/v1/dashboards/{d['id']}/tiles/{tile['id']}/move",
                json={"offset": 2},
                headers=auth,
            ).status_code
            == 422
        )
        theirs = {"Authorization": f"Bearer {other.secret_key}"}
        assert c.get(f"/api/v1/dashboards/{d['id']}", headers=theirs).status_code == 404
        assert c.delete(f"/api/v1/saved-insights/{ins['id']}", headers=theirs).status_code == 404


@pytest.mark.browser
def test_build_a_dashboard_in_the_browser(page, server: LiveServer) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    server.ctx.ingest.ingest_sync(ws.id, msgs(), normalize_segment)
    login(page, server)
    page.wait_for_url("**/scorecard")
    import json

    for kind, name, spec in [("funnel", "Trial funnel", FUNNEL), ("trend", "Sign-ups", TREND)]:
        page.goto(f"{server.url}/w/{ws.id}/insights?kind={kind}")
        show_json(page)
        page.get_by_test_id("spec-editor").fill(json.dumps(spec))
        page.get_by_test_id("insight-name").fill(name)
        page.get_by_role("button", name="Save insight").click()
        page.get_by_test_id("saved").wait_for()
    page.goto(f"{server.url}/w/{ws.id}/dashboards")
    page.fill("input[name=name]", "Growth")
    page.get_by_role("button", name="Create dashboard").click()
    page.wait_for_url(re.compile(r"/dashboards/dash_"))
    for name in ("Trial funnel", "Sign-ups"):
        page.select_option(
            "select[name=insight_id]",
            label=f"{name} ({'funnel' if 'funnel' in name.lower() else 'trend'})",
        )
        page.get_by_role("button", name="Add tile").click()
        page.wait_for_load_state()
    tiles = page.get_by_test_id("tile")
    assert [tiles.nth(i).get_attribute("data-insight") for i in range(tiles.count())] == [
        "Trial funnel",
        "Sign-ups",
    ]
    tiles.nth(0).get_by_test_id("funnel-table").wait_for()  # the tile rendered its insight
    tiles.nth(1).get_by_role("button", name="Move up").click()
    page.wait_for_load_state()
    tiles = page.get_by_test_id("tile")
    assert [tiles.nth(i).get_attribute("data-insight") for i in range(tiles.count())] == [
        "Sign-ups",
        "Trial funnel",
    ]
    tiles.nth(0).get_by_role("button", name="Remove").click()
    page.wait_for_load_state()
    assert [
        page.get_by_test_id("tile").nth(i).get_attribute("data-insight")
        for i in range(page.get_by_test_id("tile").count())
    ] == ["Trial funnel"]
    page.reload()  # persisted
    assert page.get_by_test_id("tile").count() == 1

    # the dashboard's own dates: every tile follows them
    def first_entered() -> str:
        tile = page.get_by_test_id("tile").first.get_by_test_id("funnel-table")
        return tile.locator("tbody tr").first.locator("td").nth(1).inner_text()  # type: ignore[no-any-return]

    assert first_entered() == "3"  # the saved March range: 3 sign-ups
    page.get_by_label("Dashboard dates").select_option("last_7_days")
    page.wait_for_url(re.compile(r"relative=last_7_days"))
    assert first_entered() == "0"  # nothing in the last 7 days
    page.get_by_test_id("dashboard-range").get_by_label("from").fill("2026-03-06")
    page.get_by_test_id("dashboard-range").get_by_label("to").fill("2026-03-31")
    page.get_by_test_id("dashboard-range").get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"date_from=2026-03-06"))
    assert first_entered() == "2"  # u3 and u4 signed up from Mar 6
    # a tile opens in the builder
    page.get_by_test_id("tile").first.get_by_test_id("open-tile").click()
    page.wait_for_url(re.compile(r"/insights\?insight=ins_"))
    assert page.get_by_test_id("step-1-event").input_value() == "trial_started"


def test_fragments_escape_what_users_typed(server: LiveServer) -> None:

    ws = server.ctx.workspaces.create_workspace("Acme")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    with web_client(server, "pat@acme.io") as web:
        evil = "<img src=x onerror=alert(1)>"
        import json

        r = web.post(
            f"/w/{ws.id}/insights/save",
            data={"kind": "funnel", "spec": json.dumps(FUNNEL), "name": evil},
        )
        assert evil not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text
        bad = {**FUNNEL, "steps": [{"event": evil}]}  # one step: a validation error naming it
        r = web.post(f"/w/{ws.id}/insights/dropoffs?step=0", data={"spec": json.dumps(bad)})
        assert 'role="alert"' in r.text and "<img" not in r.text
