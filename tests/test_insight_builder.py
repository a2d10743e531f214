"""The visual insight builder in real Chromium: a 3-step funnel with a filter and a breakdown,
built by clicking only; the JSON follows the form and the form follows the JSON."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.test_dashboard import login, page  # noqa: F401  (shared fixture)
from traction.analytics.domain.specs import TODAY, resolve_relative
from traction.ingest.domain import normalize_segment

pytestmark = pytest.mark.browser


@pytest.fixture
def shop(server: LiveServer):  # type: ignore[no-untyped-def]
    ws = server.ctx.workspaces.create_workspace("Shop")
    server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    start = datetime.now(UTC) - timedelta(days=2)
    msgs: list[dict[str, Any]] = []

    def add(user: str, event: str, hours: float, **props: str) -> None:
        msgs.append({"type": "track", "userId": user, "event": event, "properties": props,
                     "timestamp": (start + timedelta(hours=hours)).isoformat(), "messageId": f"{user}-{event}"})  # fmt: skip

    for user, plan, source, steps in [
        ("u1", "pro", "ads", ["trial_started", "teammate_invited"]),
        ("u2", "pro", "organic", ["trial_started"]),
        ("u3", "free", "ads", ["trial_started", "teammate_invited"]),
        ("u4", "pro", "ads", []),
    ]:
        add(user, "signed_up", 0, plan=plan, source=source)
        for i, e in enumerate(steps, 1):
            add(user, e, i)
    assert not server.ctx.ingest.ingest_sync(ws.id, msgs, normalize_segment).rejected
    for _ in range(100):  # the catalog is kept by a reactor: wait for it to see the events
        if {e["name"] for e in server.ctx.catalog.events(ws.id)} >= {
            "signed_up",
            "teammate_invited",
        }:
            break
        time.sleep(0.1)
    return ws


def pick(pg, testid: str, option: str) -> None:  # type: ignore[no-untyped-def]
    """Open a picker and click one of its options: no typing."""
    pg.get_by_test_id(testid).click()
    pg.locator(f".picker-list:visible li[data-value='{option}']").first.click()


def test_build_a_funnel_with_a_filter_and_a_breakdown_by_clicking(
    page,  # noqa: F811
    server: LiveServer,
    shop,
) -> None:  # type: ignore[no-untyped-def]
    violations: list[str] = []
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.get_by_role("link", name="Insights").click()
    builder = page.get_by_test_id("builder")
    expect(builder.get_by_test_id("step-2-event")).to_have_value("teammate_invited")  # the example
    pick(page, "step-1-event", "trial_started")  # the catalog lists what arrived, with volumes
    page.get_by_test_id("step-0-add-filter").click()
    pick(page, "step-0-filter-0-property", "plan")
    pick(page, "step-0-filter-0-value", "pro")
    pick(page, "breakdown", "source")
    page.get_by_role("button", name="Run").click()
    table = page.get_by_test_id("funnel-table")
    table.wait_for()
    entered = [r.split("\t")[1] for r in table.locator("tbody tr").all_inner_texts()]
    assert entered == ["3", "2", "1"]  # u1, u2, u4 are pro; u1 and u2 trial; u1 invites
    rows = page.get_by_test_id("funnel-breakdown").locator("tbody tr")
    by_value = {
        rows.nth(i).get_attribute("data-value"): rows.nth(i).inner_text().split("\t")
        for i in range(rows.count())
    }
    assert by_value["ads"][1:4] == ["2", "1 50%", "1 100%"] and by_value["organic"][1:3] == [
        "1",
        "1 100%",
    ]
    expect(page.locator("#chart .trace.bars")).to_have_count(2)  # grouped by source

    # the JSON says what the form built; edit the JSON and the form follows
    page.get_by_test_id("toggle-json").click()
    spec = json.loads(page.get_by_test_id("spec-editor").input_value())
    assert spec["steps"][0] == {
        "event": "signed_up",
        "filters": [{"property": "plan", "operator": "equals", "value": "pro"}],
    }
    assert spec["breakdown"] == "source" and spec["range"] == {"relative": "last_30_days"}
    spec["window_days"] = 3
    page.get_by_test_id("spec-editor").fill(json.dumps(spec))
    expect(builder.locator("[data-field=window_days]")).to_have_value("3")
    assert violations == []  # every script on the way ran under the page's CSP


def test_a_never_seen_event_warns(page, server: LiveServer, shop) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{shop.id}/insights?kind=feature_adoption")
    page.get_by_role("button", name="Run").click()
    page.get_by_test_id("adoption-table").wait_for()
    warnings = " ".join(page.get_by_test_id("insight-warning").all_inner_texts())
    assert "'report_created' has never been received" in warnings  # the example's events
    assert "'teammate_invited'" not in warnings  # that one arrived


@pytest.mark.parametrize(
    ("kind", "marker"),
    [
        ("sessions", "sessions-stats"),
        ("active_users", "active-users-chart"),
        ("lifecycle", "lifecycle-chart"),
    ],
)
def test_every_kind_has_a_form_and_a_result(
    page,  # noqa: F811
    server: LiveServer,
    shop,
    kind: str,
    marker: str,
) -> None:  # type: ignore[no-untyped-def]
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{shop.id}/insights?kind={kind}")
    assert page.get_by_test_id("builder").locator("select[aria-label='date range']").count() == 1
    page.get_by_role("button", name="Run").click()
    page.get_by_test_id(marker).wait_for()


def test_relative_ranges_resolve_on_the_day_they_are_read() -> None:
    from datetime import date

    from traction.analytics.domain.specs import DateRange

    assert resolve_relative("last_7_days", date(2026, 3, 15)) == (
        date(2026, 3, 9),
        date(2026, 3, 15),
    )
    assert resolve_relative("last_month", date(2026, 3, 15)) == (
        date(2026, 2, 1),
        date(2026, 2, 28),
    )
    assert resolve_relative("this_week", date(2026, 3, 15)) == (date(2026, 3, 9), date(2026, 3, 15))
    assert resolve_relative("this_year", date(2026, 3, 15)) == (date(2026, 1, 1), date(2026, 3, 15))
    assert resolve_relative("since:2026-02-10", date(2026, 3, 15)) == (
        date(2026, 2, 10),
        date(2026, 3, 15),
    )
    token = TODAY.set(date(2026, 4, 2))
    try:
        r = DateRange.model_validate(
            {"relative": "last_30_days", "date_from": "2020-01-01", "date_to": "2020-01-02"}
        )
        assert (r.date_from, r.date_to) == (date(2026, 3, 4), date(2026, 4, 2))  # the rule wins
    finally:
        TODAY.reset(token)
    with pytest.raises(ValueError, match="unknown relative range 'last_week'"):
        DateRange.model_validate({"relative": "last_week"})


def test_clicking_a_trend_point_lists_its_people(page, server: LiveServer, shop) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(page, server)
    page.wait_for_url("**/scorecard")
    page.goto(f"{server.url}/w/{shop.id}/insights?kind=trend")
    pick(page, "series-0-event", "signed_up")
    page.get_by_test_id("builder").get_by_role("button", name="clear").click()  # no breakdown
    page.get_by_role("button", name="Run").click()
    page.get_by_test_id("trend-chart").wait_for()
    page.locator("#chart .scatterlayer .point").first.wait_for()
    points = page.locator("#chart .scatterlayer .point")
    # the busiest point: the day the four signed up
    heights = [points.nth(i).bounding_box() for i in range(points.count())]
    top = min(range(len(heights)), key=lambda i: heights[i]["y"])  # type: ignore[index]
    box = heights[top]
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    people = page.get_by_test_id("point-people").locator("a")
    expect(people).to_have_count(4)
    assert sorted(people.all_inner_texts()) == ["u1", "u2", "u3", "u4"]
