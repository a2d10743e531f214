"""Every insight spec error is a 422 in our words, never a 500: the cross-field checks the
independent check found answering 500, hand-picked, then hypothesis over every spec kind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LiveServer
from traction.settings import Settings
from traction.workspaces.service import CreatedWorkspace

RANGE = {"date_from": "2026-09-01", "date_to": "2026-09-30"}
STEPS = [{"event": "a"}, {"event": "b"}]

# A valid spec per kind: the fuzzer mutates these, so the cross-field checks are reached.
EXAMPLES: dict[str, dict[str, Any]] = {
    "funnel": {"steps": STEPS, "range": RANGE, "exclusions": [{"event": {"event": "x"}, "from_step": 0, "to_step": 1}]},
    "trend": {"series": [{"event": {"event": "a"}, "math": "total"}], "range": RANGE, "interval": "day"},
    "retention": {"range": RANGE, "start_event": {"event": "a"}, "periods": 4},
    "activation": {"start_event": {"event": "a"}, "criteria": {"event": {"event": "b"}}, "range": RANGE},
    "sessions": {"range": RANGE},
    "active-users": {"range": RANGE},
    "lifecycle": {"range": RANGE},
    "feature-adoption": {"range": RANGE, "features": [{"event": "a"}]},
}  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, CreatedWorkspace]]:
    s = Settings(data_dir=tmp_path_factory.mktemp("specs") / "data", log_json=False)
    with LiveServer(s) as server:
        yield server, server.ctx.workspaces.create_workspace("Specs")


def post(api: tuple[LiveServer, CreatedWorkspace], kind: str, body: Any) -> httpx.Response:
    server, ws = api
    return httpx.post(
        f"{server.url}/api/v1/insights/{kind}",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {ws.secret_key}", "content-type": "application/json"},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("kind", "spec", "says"),
    [
        ("funnel", {"steps": STEPS, "range": {"date_from": "2026-09-30", "date_to": "2026-09-01"}}, "range: date_to must not be before date_from"),
        ("funnel", {"steps": STEPS, "range": {"date_from": "2020-01-01", "date_to": "2026-01-01"}}, "at most 1830 days"),
        ("funnel", {"steps": [{"event": "a", "filters": [{"property": "n", "operator": "gt", "value": "x"}]}, {"event": "b"}], "range": RANGE}, "operator 'gt' needs a number"),
        ("funnel", {"steps": [{"event": "a", "filters": [{"property": "n", "operator": "regex", "value": "("}]}, {"event": "b"}], "range": RANGE}, "invalid regex"),
        ("trend", {"series": [{"event": {"event": "a"}}], "range": {"date_from": "2026-01-01", "date_to": "2026-03-01"}, "interval": "hour"}, "hourly trends may span at most 31 days"),
        ("funnel", {"steps": STEPS, "range": RANGE, "exclusions": [{"event": {"event": "x"}, "from_step": 0, "to_step": 5}]}, "exclusions[0]: need from_step < to_step < 2"),
        ("funnel", {"steps": STEPS, "range": RANGE, "windw_days": 3}, "unknown field 'windw_days'; allowed: kind, steps, range, window_days"),
    ],
)  # fmt: skip
def test_cross_field_errors_are_422_in_plain_words(
    api: tuple[LiveServer, CreatedWorkspace], kind: str, spec: dict[str, Any], says: str
) -> None:
    r = post(api, kind, spec)
    assert r.status_code == 422, r.text
    body = r.json()
    assert says in body["error"]
    assert "Value error" not in body["error"] and "Extra inputs" not in body["error"]
    assert all(set(d) == {"loc", "msg", "type"} for d in body["detail"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
_dates = st.dates().map(str) | st.text(max_size=12)


def _mutations(spec: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    keys = [*spec, "window_days", "interval", "breakdown", "breakdown_attribution", "breakdown_step", "mode", "aggregate_by", "cohort_by", "retention_type", "activation_criteria", "math_property", "periods", "unknown"]  # fmt: skip
    return st.one_of(
        st.builds(lambda k, v: {**spec, k: v}, st.sampled_from(keys), _json),
        st.builds(lambda k: {x: y for x, y in spec.items() if x != k}, st.sampled_from(list(spec))),
        st.builds(lambda a, b: {**spec, "range": {"date_from": a, "date_to": b}}, _dates, _dates),
        st.builds(
            lambda k, v: {**spec, k: v},
            st.sampled_from(keys),
            st.sampled_from(
                [
                    "step",
                    "hour",
                    "account",
                    "activation",
                    "recurring",
                    "unordered",
                    "p90",
                    -1,
                    0,
                    26,
                    10**9,
                ]
            ),
        ),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_every_spec_kind_never_5xx(
    api: tuple[LiveServer, CreatedWorkspace], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(sorted(EXAMPLES)))
    body = data.draw(st.one_of(_mutations(EXAMPLES[kind]), _json))
    r = post(api, kind, body)
    assert r.status_code in (200, 422), (kind, body, r.text)
    if r.status_code == 422:
        assert r.json()["error"]
