"""The catalog, last-seen and meter reactors in a process of their own (`reactor_process`):
what they keep equals what they keep in one process, an erasure reaches their catalog, the
meters' events reach the log, and `kill -9` of that process loses and doubles nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import LiveServer
from tests.test_privacy_erasure import eve, keeper
from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.reactor_process import MOVED, ReactorProcess
from traction.settings import Settings
from traction.store.events import EVENT_COLUMNS, EventKinds, rows_of
from traction.store.models import ReactorCursor


@pytest.fixture
def live(settings: Settings, state_url: str) -> Iterator[LiveServer]:
    s = settings.model_copy(update={"state_url": state_url, "reactor_process": True})
    with LiveServer(s) as server:
        yield server


def child(server: LiveServer) -> ReactorProcess:
    process = server.app.state.reactor_process
    assert isinstance(process, ReactorProcess)
    return process


def caught_up(ctx: Context, seconds: float = 60) -> None:
    """Until every moved reactor's cursor is at the head of the log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        head = ctx.events.max_seq()
        with ctx.state.session() as s:
            at = {n: (r.position if (r := s.get(ReactorCursor, n)) else 0) for n in MOVED}
        if all(p >= head for p in at.values()):
            return
        time.sleep(0.05)
    raise AssertionError(f"the reactor process did not catch up: {at} against {head}")


def test_the_log_as_arrow_gives_the_same_rows(sqlite_ctx: Context) -> None:
    ctx = sqlite_ctx
    ws = ctx.workspaces.create_workspace("A").id
    assert not ctx.ingest.ingest_sync(ws, eve("mk1") + keeper(), normalize_segment).rejected
    for columns in (None, ["person_id", "timestamp"], ["name", "properties", "context"]):
        for only in (None, EventKinds(frozenset({"clicked"}), frozenset({"identify"}))):
            for seq, upto in ((0, None), (3, 9)):
                rows = ctx.events.events_after(seq, 7, columns, upto=upto, only=only)
                table = ctx.events.events_after_arrow(seq, 7, columns, upto=upto, only=only)
                assert rows and rows_of(table) == rows, (columns, only, seq)
    assert set(rows_of(ctx.events.events_after_arrow(0, 1))[0]) == {*EVENT_COLUMNS}


def test_catalog_seen_and_erasure_through_the_process(live: LiveServer) -> None:
    ctx = live.ctx
    process = child(live)
    assert process.pid is not None and process.pid != os.getpid()
    assert [r.name for r in live.app.state.reactors.reactors] == ["engage.journeys"]
    ws = ctx.workspaces.create_workspace("Acme").id
    assert not ctx.ingest.ingest_sync(ws, eve("mk2") + keeper(), normalize_segment).rejected
    caught_up(ctx)
    volumes = {e["name"]: e["volume"] for e in ctx.catalog.events(ws)}
    assert (volumes["clicked"], volumes["signed_up"], volumes["$page"]) == (8, 2, 1)
    kim = ctx.persons.by_distinct_id(ws, "u-kim")
    assert kim is not None
    assert (kim.first_seen_at, kim.last_seen_at) == (
        datetime(2026, 3, 1, 8, 0), datetime(2026, 3, 3, 10, 2))  # fmt: skip

    ctx.privacy.delete_person(ws, "u-eve")  # the catalog's part is done over there
    assert process.erasures == 1
    plans = {
        v["value"]: v["count"]
        for v in ctx.catalog.values(ws, "plan", source="event", event="clicked")
    }
    assert plans == {"pro": 3}
    volumes = {e["name"]: e["volume"] for e in ctx.catalog.events(ws)}
    assert (volumes["clicked"], volumes["signed_up"], volumes["$page"]) == (3, 1, 0)
    emails = {v["value"] for v in ctx.catalog.values(ws, "email", source="person")}
    assert emails == {"kim@example.com"}
    # the reactor lag reaches /metrics from there
    text = live.client().get("/metrics").text
    assert 'traction_reactor_lag_events{reactor="catalog"} 0.0' in text


def test_the_meters_events_reach_the_log(settings: Settings) -> None:
    """Free allows 3 projects: the third fires `$limit_reached`, emitted by the meters in
    the reactor process and committed by the server's writer."""
    example = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"
    with LiveServer(settings.model_copy(update={"reactor_process": True})) as live:
        ctx = live.ctx
        ws = ctx.workspaces.create_workspace("Live").id
        ctx.billing.apply_catalog(ws, yaml.safe_load(example.read_text()))
        now = datetime.now(UTC).replace(tzinfo=None)
        projects = [
            {"type": "track", "userId": "u-acme", "event": "project_created",
             "messageId": f"p{i}", "timestamp": (now - timedelta(hours=3 - i)).isoformat() + "Z",
             "context": {"groupId": "acme"}} for i in range(3)
        ]  # fmt: skip
        assert not ctx.ingest.ingest_sync(ws, projects, normalize_segment).rejected
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ctx.events.count(ws) < 4:
            time.sleep(0.05)
        triggers = [e for e in ctx.events.recent(ws, limit=10) if e["name"].startswith("$limit")]
        assert [(e["name"], e["properties"]["usage"]) for e in triggers] == [
            ("$limit_reached", 3)]  # fmt: skip


def test_kill_9_of_the_reactor_process_loses_and_doubles_nothing(settings: Settings) -> None:
    """Under ingest, the reactor process is killed twice; new ones read on from the
    cursors. Every count equals the log's own, and each person's span its events'."""
    with LiveServer(settings.model_copy(update={"reactor_process": True})) as live:
        ctx = live.ctx
        process = child(live)
        ws = ctx.workspaces.create_workspace("K").id
        t0 = datetime(2026, 3, 1)

        def batch(b: int) -> list[dict[str, Any]]:
            return [
                {"type": "track", "userId": f"u{(b * 7 + i) % 40}", "event": f"e{i % 3}",
                 "messageId": f"{b}-{i}", "timestamp": (t0 + timedelta(minutes=b * 50 + i)).isoformat() + "Z",
                 "properties": {"plan": ["free", "pro"][i % 2], "n": i % 5}}
                for i in range(50)
            ]  # fmt: skip

        done = threading.Event()

        def send() -> None:
            for b in range(60):
                assert not ctx.ingest.ingest_sync(ws, batch(b), normalize_segment).rejected
                time.sleep(0.01)
            done.set()

        sender = threading.Thread(target=send)
        sender.start()
        for kills in (1, 2):
            deadline = time.monotonic() + 30
            while process.pid is None or process.restarts < kills - 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)  # while it works
            pid = process.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            while process.restarts < kills or process.pid == pid:
                assert time.monotonic() < deadline, "no new reactor process"
                time.sleep(0.02)
        sender.join(60)
        assert done.is_set()
        caught_up(ctx)
        text = live.client().get("/metrics").text
        assert "traction_reactor_process_restarts_total 2.0" in text

        log = [e for e in ctx.events.events_after(0, 10**6) if e["workspace_id"] == ws]
        assert len(log) == 3000
        volumes = {e["name"]: e["volume"] for e in ctx.catalog.events(ws)}
        assert volumes == dict(Counter(e["name"] for e in log))
        for name in ("e0", "e1", "e2"):
            values = {
                v["value"]: v["count"]
                for v in ctx.catalog.values(ws, "plan", source="event", event=name)
            }
            assert values == dict(
                Counter(e["properties"]["plan"] for e in log if e["name"] == name)
            )
        spans: dict[str, tuple[datetime, datetime]] = {}
        for e in log:
            lo, hi = spans.get(e["person_id"], (e["timestamp"], e["timestamp"]))
            spans[e["person_id"]] = (min(lo, e["timestamp"]), max(hi, e["timestamp"]))
        for pid, (lo, hi) in spans.items():
            person = ctx.persons.get(ws, pid)
            assert person is not None and (person.first_seen_at, person.last_seen_at) == (lo, hi)


def test_an_erasure_while_no_process_runs_is_done_by_the_server(settings: Settings) -> None:
    """Between a killed process and its successor the server updates the catalog itself;
    the successor reads on from the cursors and counts nothing of the erased person."""
    with LiveServer(settings.model_copy(update={"reactor_process": True})) as live:
        ctx, process = live.ctx, child(live)
        ws = ctx.workspaces.create_workspace("Acme").id
        assert not ctx.ingest.ingest_sync(ws, eve("mk3") + keeper(), normalize_segment).rejected
        caught_up(ctx)
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process._control is not None:  # noticed; the next one starts in a second
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ctx.privacy.delete_person(ws, "u-eve")
        assert process.erasures == 0
        more = [{"type": "track", "userId": "u-kim", "event": "clicked", "messageId": "k9",
                 "properties": {"plan": "pro"}, "timestamp": "2026-03-04T10:00:00Z"}]  # fmt: skip
        assert ctx.ingest.ingest_sync(ws, more, normalize_segment).accepted == 1
        caught_up(ctx)
        assert process.pid not in (None, pid)
        volumes = {e["name"]: e["volume"] for e in ctx.catalog.events(ws)}
        assert (volumes["clicked"], volumes["signed_up"], volumes["$page"]) == (4, 1, 0)
        plans = {
            v["value"]: v["count"]
            for v in ctx.catalog.values(ws, "plan", source="event", event="clicked")
        }
        assert plans == {"pro": 4}


def test_ctrl_c_stops_server_and_reactor_process_quietly(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group (here: a session of its own, as a terminal's):
    the server stops the reactor process itself, and nobody prints a traceback."""
    import subprocess
    import sys

    import httpx

    from tests.conftest import free_port, wait_healthy
    from tests.test_durability import new_workspace

    data, port, log = tmp_path / "data", free_port(), tmp_path / "server.log"
    key = new_workspace(data)
    cmd = [sys.executable, "-m", "traction", "serve", "--data-dir", str(data), "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        batch = {"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": "m1"}]}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/batch", auth=(key, ""), json=batch)
        assert r.status_code == 200
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        children = [  # (not multiprocessing's resource tracker, which exits on its own)
            int(p) for p in found.stdout.split()
            if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]  # fmt: skip
        assert len(children) == 1, "no reactor process"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        for pid in children:  # gone (its parent waited for it: not even a zombie)
            assert not Path(f"/proc/{pid}").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-2000:]
