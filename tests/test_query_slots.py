"""Analytics queries take bounded slots (in all and per workspace): the rest wait, then give
up with a 503 rather than taking every core from ingestion."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.test_engage import person
from traction.analytics import service as analytics
from traction.analytics.service import AnalyticsBusy, AnalyticsService
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.ingest.service import now_utc
from traction.settings import Settings, _cores


def holder(svc: AnalyticsService, ws: str) -> tuple[threading.Thread, threading.Event]:
    """A thread whose query holds its slot until released."""
    started, release = threading.Event(), threading.Event()
    original = svc._execute

    def slow(sql: str, params: dict[str, Any]) -> Any:
        if threading.current_thread().name == f"hold-{ws}":
            started.set()
            release.wait(10)
        return original(sql, params)

    svc._execute = slow  # type: ignore[method-assign]

    def run() -> None:
        token = analytics._WORKSPACE.set(ws)
        svc._query("SELECT 1", {})
        analytics._WORKSPACE.reset(token)

    t = threading.Thread(target=run, name=f"hold-{ws}")
    t.start()
    assert started.wait(10)
    return t, release


def in_workspace(svc: AnalyticsService, ws: str) -> Any:
    token = analytics._WORKSPACE.set(ws)
    try:
        return svc._query("SELECT 1 AS one", {})
    finally:
        analytics._WORKSPACE.reset(token)


def test_a_full_pool_makes_queries_wait_then_answer_busy(sqlite_ctx: Context) -> None:
    svc = AnalyticsService(
        sqlite_ctx.events, sqlite_ctx.workspaces, timeout_seconds=0.3, max_concurrent=1
    )
    t, release = holder(svc, "ws_a")
    with pytest.raises(AnalyticsBusy, match="every analytics slot is busy"):
        in_workspace(svc, "ws_b")
    release.set()
    t.join()
    assert in_workspace(svc, "ws_b") == (["one"], [(1,)])  # free again


def test_one_workspace_cannot_take_every_slot(sqlite_ctx: Context) -> None:
    svc = AnalyticsService(
        sqlite_ctx.events, sqlite_ctx.workspaces, timeout_seconds=0.3,
        max_concurrent=2, max_concurrent_per_workspace=1,
    )  # fmt: skip
    t, release = holder(svc, "ws_a")
    with pytest.raises(AnalyticsBusy, match="this workspace's analytics queries are all busy"):
        in_workspace(svc, "ws_a")
    assert in_workspace(svc, "ws_b") == (["one"], [(1,)])  # another tenant still gets a slot
    release.set()
    t.join()


def test_the_cores_kept_for_ingestion_are_lent_while_it_is_idle(sqlite_ctx: Context) -> None:
    """One slot, one more lent while no events arrive: a second query runs beside the first
    when ingestion is idle, and waits (then answers busy) while it is not."""
    idle = [False]
    svc = AnalyticsService(
        sqlite_ctx.events, sqlite_ctx.workspaces, timeout_seconds=0.3,
        max_concurrent=1, max_concurrent_per_workspace=2, lent=1, ingest_idle=lambda: idle[0],
    )  # fmt: skip
    t, release = holder(svc, "ws_a")
    with pytest.raises(AnalyticsBusy, match="every analytics slot is busy"):
        in_workspace(svc, "ws_a")  # events arriving: the kept core stays kept
    idle[0] = True
    assert in_workspace(svc, "ws_a") == (["one"], [(1,)])  # idle: it is lent
    release.set()
    t.join()


def test_the_server_lends_its_kept_cores_only_when_its_concurrency_is_unset() -> None:
    default = Settings()
    total, per_workspace = default.resolved_query_concurrency
    assert total + default.lent_query_slots == _cores()
    assert per_workspace == _cores()
    assert Settings(query_concurrency=1).lent_query_slots == 0
    assert Settings().without_a_server().lent_query_slots == 0  # it has all the cores already


def test_the_writer_is_idle_only_after_a_quiet_spell(sqlite_ctx: Context) -> None:
    writer = sqlite_ctx.writer
    assert writer.idle()  # nothing ever submitted
    ws = sqlite_ctx.workspaces.create_workspace("Acme").id
    items, _ = sqlite_ctx.ingest.validate(
        ws, person("ann", now_utc()), normalize_segment, now_utc()
    )
    writer.submit(items).result(timeout=10)
    assert not writer.idle()
    assert writer.idle(quiet_seconds=0.0)
