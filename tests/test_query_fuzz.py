"""Fuzz the list and drill-down endpoints added with the builder (persons search, accounts,
a trend point's people, paged drop-offs, the scorecard's optional dates): whatever the query
string or body, a 200 or a 4xx that says why, never a 5xx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from traction.ingest.domain import normalize_segment
from traction.workspaces.service import CreatedWorkspace

TREND = {"series": [{"event": {"event": "buy"}}], "range": {"date_from": "2026-03-01", "date_to": "2026-03-03"}}  # fmt: skip
FUNNEL = {"steps": [{"event": "buy"}, {"event": "pay"}], "range": TREND["range"]}

text = st.text(max_size=40)  # unicode, quotes, %, _, NUL-free by default in httpx params
numbers = st.one_of(st.integers(-5, 10**12).map(str), text)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)


@pytest.fixture
def api(server: LiveServer) -> tuple[LiveServer, CreatedWorkspace]:
    ws = server.ctx.workspaces.create_workspace("Fuzz")
    msgs: list[dict[str, Any]] = [
        {"type": "track", "userId": f"u{i}", "event": "buy", "timestamp": f"2026-03-02T1{i}:00:00Z",
         "properties": {"plan": "pro" if i % 2 else "free"}, "messageId": f"m{i}"}
        for i in range(5)
    ]  # fmt: skip
    msgs.append(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme"},
            "messageId": "g",
        }
    )
    server.ctx.ingest.ingest_sync(ws.id, msgs, normalize_segment)
    return server, ws


def call(
    api: tuple[LiveServer, CreatedWorkspace], method: str, path: str, **kw: Any
) -> httpx.Response:
    server, ws = api
    return httpx.request(method, server.url + path, auth=(ws.secret_key, ""), timeout=30, **kw)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_lists_and_drilldowns_never_5xx(
    api: tuple[LiveServer, CreatedWorkspace], data: st.DataObject
) -> None:
    which = data.draw(
        st.sampled_from(["persons", "accounts", "trend_people", "dropoffs", "scorecard", "events"])
    )
    if which == "persons":
        params = data.draw(
            st.fixed_dictionaries({}, optional={"q": text, "offset": numbers, "limit": numbers})
        )
        r = call(api, "GET", "/api/v1/persons/search", params=params)
    elif which == "accounts":
        params = data.draw(st.fixed_dictionaries({}, optional={
            "q": text, "offset": numbers, "limit": numbers,
            "sort": st.one_of(st.sampled_from(["last_seen", "events_30d", "members", "since", "key"]), text)}))  # fmt: skip
        r = call(api, "GET", "/api/v1/accounts", params=params)
    elif which == "trend_people":
        params = data.draw(st.fixed_dictionaries({"bucket": st.one_of(st.just("2026-03-02T00:00:00"), text)}, optional={
            "series": numbers, "breakdown": text, "limit": numbers, "offset": numbers}))  # fmt: skip
        body = data.draw(
            st.one_of(
                st.just(TREND),
                st.just({**TREND, "breakdown": "plan", "breakdown_limit": 1}),
                json_values,
            )
        )
        r = call(api, "POST", "/api/v1/insights/trend/people", params=params, json=body)
    elif which == "dropoffs":
        params = data.draw(
            st.fixed_dictionaries(
                {}, optional={"step": numbers, "limit": numbers, "offset": numbers}
            )
        )
        body = data.draw(st.one_of(st.just(FUNNEL), json_values))
        r = call(api, "POST", "/api/v1/insights/funnel/dropoffs", params=params, json=body)
    elif which == "scorecard":
        params = data.draw(st.fixed_dictionaries({}, optional={"date_from": text, "date_to": text}))
        r = call(api, "GET", "/api/v1/insights/scorecard", params=params)
    else:
        params = data.draw(
            st.fixed_dictionaries({}, optional={"limit": numbers, "offset": numbers})
        )
        person = data.draw(st.one_of(st.just("u1"), text))
        found = call(api, "GET", "/api/v1/persons", params={"distinct_id": "u1"}).json()["id"]
        pid = found if person == "u1" else quote(person or "x", safe="")
        r = call(api, "GET", f"/api/v1/persons/{pid}/events", params=params)
    assert r.status_code < 500, (which, r.status_code, r.text)
    if r.status_code >= 400:
        body = r.json()
        assert body.get("error") or body.get("detail"), body
