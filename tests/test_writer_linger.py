"""The writer's group commit waits briefly for requests being validated, never for nobody."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.ingest.service import now_utc


def _items(ws: str, *ids: str) -> list[tuple[str, Any]]:
    now = now_utc()
    return [
        (ws, normalize_segment({"type": "track", "event": "x", "messageId": m, "userId": "u"}, now))
        for m in ids
    ]


def _commits(ctx: Context) -> float:
    return ctx.writer.metrics.registry.get_sample_value("traction_ingest_commit_events_count") or 0


def test_a_group_waits_for_a_request_being_validated(sqlite_ctx: Context) -> None:
    ctx, writer = sqlite_ctx, sqlite_ctx.writer
    ws = ctx.workspaces.create_workspace("A").id
    writer.submit(_items(ws, "warm")).result(timeout=10)  # the writer is up and idle
    writer.linger_seconds = 5.0  # long: the test does not depend on timing
    before = _commits(ctx)
    writer.arriving += 1  # as the request loop does while it validates a request

    second: list[Any] = []

    def second_request() -> None:
        time.sleep(0.2)
        second.append(writer.submit(_items(ws, "b1", "b2")))
        writer.arriving -= 1

    t = threading.Thread(target=second_request)
    t.start()
    first = writer.submit(_items(ws, "a1"))
    assert first.result(timeout=10) == 1
    t.join()
    assert second[0].result(timeout=10) == 2
    assert _commits(ctx) - before == 1  # one group: both requests
    assert sorted(e["event_id"] for e in ctx.events.recent(ws)) == ["a1", "b1", "b2", "warm"]


def test_nobody_validating_means_no_wait(sqlite_ctx: Context) -> None:
    ctx, writer = sqlite_ctx, sqlite_ctx.writer
    ws = ctx.workspaces.create_workspace("A").id
    writer.linger_seconds = 5.0
    started = time.monotonic()
    assert writer.submit(_items(ws, "a1")).result(timeout=10) == 1
    assert time.monotonic() - started < 2.5  # not the 5 s linger


def test_the_wait_is_bounded_when_the_request_never_comes(sqlite_ctx: Context) -> None:
    """A request may be refused after counting itself (a 400): the group goes anyway."""
    ctx, writer = sqlite_ctx, sqlite_ctx.writer
    ws = ctx.workspaces.create_workspace("A").id
    writer.linger_seconds = 0.3
    writer.arriving += 1
    try:
        started = time.monotonic()
        assert writer.submit(_items(ws, "a1")).result(timeout=10) == 1
        assert 0.25 <= time.monotonic() - started < 5
    finally:
        writer.arriving -= 1


def test_a_refused_request_stops_counting(sqlite_ctx: Context) -> None:
    """The service counts a request only while it validates: a failure or bad input leaves
    no count behind (else every later group would wait its full linger)."""

    def broken(raw: Any, received_at: Any) -> Any:
        raise RuntimeError("boom")

    svc = sqlite_ctx.ingest
    ws = sqlite_ctx.workspaces.create_workspace("A").id
    with pytest.raises(RuntimeError):
        asyncio.run(svc.ingest(ws, [{"type": "track"}], broken))
    assert sqlite_ctx.writer.arriving == 0
    result = asyncio.run(svc.ingest(ws, [{"nonsense": True}], normalize_segment))
    assert result.rejected and sqlite_ctx.writer.arriving == 0
