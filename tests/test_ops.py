"""Health, readiness, Prometheus metrics and structured logs."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from tests.conftest import LiveServer
from traction.ops.logging import JsonFormatter
from traction.workspaces.service import CreatedWorkspace


def test_health_ready_and_metrics(server: LiveServer, workspace: CreatedWorkspace) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "state_store": "ok",
            "event_store": "ok",
            "writer": "ok",
        }
        c.post(
            "/v1/batch",
            json={
                "batch": [
                    {"type": "track", "userId": "u", "event": "x", "messageId": "1"},
                    {"type": "track", "userId": "u", "event": "x", "messageId": "1"},
                    {"type": "track", "event": "x"},
                ]
            },
            auth=(workspace.write_key, ""),
        )
        text = c.get("/metrics").text
    assert 'traction_ingest_events_total{outcome="stored"} 1.0' in text
    assert 'traction_ingest_events_total{outcome="duplicate"} 1.0' in text
    assert 'traction_ingest_events_total{outcome="rejected"} 1.0' in text
    assert 'traction_ingest_requests_total{api="segment",status="400"} 1.0' in text
    assert "traction_ingest_commit_seconds_bucket" in text


def test_readyz_fails_when_the_writer_is_down(server: LiveServer) -> None:
    server.ctx.writer.stop()
    with server.client() as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["writer"].startswith("error")


def test_json_logs_carry_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "t",
            "levelname": "WARNING",
            "msg": "merge refused %s",
            "args": ("x",),
            "workspace_id": "ws_1",
        }
    )
    line = orjson.loads(JsonFormatter().format(record))
    assert (
        line["msg"] == "merge refused x"
        and line["workspace_id"] == "ws_1"
        and line["level"] == "warning"
    )


def test_events_per_minute_series_is_zero_filled(
    server: LiveServer, workspace: CreatedWorkspace
) -> None:
    server.ctx.workspaces.create_user("ops@x.io", "long enough", [workspace.id])
    with server.client() as c:
        c.post("/login", data={"email": "ops@x.io", "password": "long enough"})
        for _ in range(3):
            c.post("/v1/track", json={"userId": "u", "event": "x"}, auth=(workspace.write_key, ""))
        data = c.get(f"/w/{workspace.id}/events/per-minute.json?minutes=10").json()
    assert len(data["x"]) == len(data["y"]) == 10
    assert sum(data["y"]) == 3 and data["y"][-1] in (0, 3)


def test_fewer_collections_still_collects_young_cycles_and_restores_the_thresholds() -> None:
    import gc
    import weakref

    from traction.ops.memory import fewer_collections

    class Node:
        other: Node | None = None

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections(gen0=5_000):
        assert gc.get_threshold() == (5_000, 20, 100)
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        gone = weakref.ref(a)
        del a, b
        keep = [[] for _ in range(20_000)]  # enough new containers for a young collection
        assert gone() is None
        del keep
        raise RuntimeError("the thresholds are restored on the way out")
    assert gc.get_threshold() == before


def test_a_server_freezes_what_it_built_and_collects_less_often() -> None:
    import gc

    from traction.ops.memory import THRESHOLDS, for_a_server

    before = gc.get_threshold()
    built = [{"app": i} for i in range(1_000)]  # made before the server starts serving
    try:
        for_a_server()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() >= len(built)  # out of every later collection
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_command_without_a_server_runs_one_analytics_query_per_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server keeps a core for ingestion (half the cores for analytics); a command that opens
    the data dir itself has nothing to keep it for. A setting the user gave is kept."""
    import traction.settings
    from traction.cli_access import Local, events_access
    from traction.settings import Settings

    monkeypatch.setattr(traction.settings, "_cores", lambda: 8)
    served = Settings(data_dir=tmp_path / "d")
    # four in all, and four more lent while no events arrive (one workspace may use all 8)
    assert served.resolved_query_concurrency == (4, 8) and served.lent_query_slots == 4
    assert served.without_a_server().resolved_query_concurrency == (8, 8)
    chosen = Settings(data_dir=tmp_path / "d", query_concurrency=1)
    assert chosen.without_a_server().resolved_query_concurrency == (1, 1)
    with events_access(tmp_path / "d", "Mine", create_workspace=True) as access:
        assert isinstance(access, Local)
        assert access.ctx.analytics._per_workspace == 8
