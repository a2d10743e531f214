"""kill -9 during sustained ingest: every acknowledged event is on disk, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from tests.conftest import free_port
from traction.context import Context
from traction.settings import Settings

pytestmark = pytest.mark.slow


def start_server(
    data_dir: Path, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "traction",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log.read_text()[-3000:])


class Load:
    """Clients sending unique 50-event batches on 4 connections; what got a 200 is kept."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.acked: list[str] = []
        self.batches: list[bytes] = []
        self.refused = 0  # 503s: nothing stored, the client retries
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(4)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", auth=(self.key, ""), timeout=5) as c:  # fmt: skip
            while not self._stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(50)]
                body = orjson.dumps(
                    {
                        "batch": [
                            {"type": "track", "userId": f"u{i % 7}", "event": "load", "messageId": mid}
                            for i, mid in enumerate(ids)
                        ]
                    }
                )  # fmt: skip
                try:
                    r = c.post("/v1/batch", content=body, headers={"content-type": "application/json"})  # fmt: skip
                except httpx.HTTPError:
                    continue  # the server died mid-request: not acknowledged, not counted
                with self._lock:
                    if r.status_code == 200:
                        self.acked.extend(ids)
                        self.batches.append(body)
                    elif r.status_code == 503:
                        self.refused += 1

    def until(self, events: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while len(self.acked) < events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acked) >= events, "the load did not get going"

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def stop_server(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 with our final log line.
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert '"traction stopped"' in log.read_text()


def assert_stored_once(data: Path, acked: list[str]) -> None:
    con = duckdb.connect(str(data / "events.duckdb"), read_only=True)
    con.execute("CREATE TEMP TABLE acked (id VARCHAR)")
    con.executemany("INSERT INTO acked VALUES (?)", [[a] for a in acked])
    missing = con.execute(
        "SELECT COUNT(*) FROM acked WHERE id NOT IN (SELECT event_id FROM events)"
    ).fetchone()
    dupes = con.execute(
        "SELECT COUNT(*) FROM (SELECT event_id FROM events GROUP BY ALL HAVING COUNT(*) > 1)"
    ).fetchone()
    con.close()
    assert missing == (0,), f"{missing[0]} acknowledged events lost"  # type: ignore[index]
    assert dupes == (0,)
    assert len(set(acked)) == len(acked)


def new_workspace(data: Path) -> str:
    ctx = Context.open(Settings(data_dir=data), start_writer=False)
    key = ctx.workspaces.create_workspace("Durable").write_key
    ctx.close()
    return key


def test_kill_9_loses_no_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = new_workspace(data)
    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(data, port, log)
    load = Load(port, key)
    load.until(5_000)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
    proc.wait()
    load.stop()

    # Restart, resend some acknowledged batches (a client retry), then stop cleanly.
    proc = start_server(data, port, log)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=5) as c:
        for body in load.batches[:20]:
            assert (
                c.post(
                    "/v1/batch", content=body, headers={"content-type": "application/json"}
                ).status_code
                == 200
            )
    stop_server(proc, log)
    assert_stored_once(data, load.acked)


def ingest_processes(server: int) -> set[int]:
    """The server's ingest processes (multiprocessing's spawned children)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server and b"spawn_main" in cmd:
            found.add(int(stat.parent.name))
    return found


def processes_ready(port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return int(float(text.split("\ntraction_ingest_processes ", 1)[1].split()[0]))


def test_kill_9_of_an_ingest_process_loses_nothing(tmp_path: Path) -> None:
    """An ingest process killed under load: the requests it held get a 503 (nothing stored),
    new processes take over, and every acknowledged event is stored once."""
    data = tmp_path / "data"
    key = new_workspace(data)
    port = free_port()
    log = tmp_path / "server.log"
    # (the reactor process is a spawned child too: off, so that the children are these two)
    env = {"TRACTION_INGEST_PROCESSES": "2", "TRACTION_REACTOR_PROCESS": "false"}
    proc = start_server(data, port, log, env)
    load = Load(port, key)
    try:
        deadline = time.monotonic() + 30
        while processes_ready(port) < 2:  # (the first batch started them)
            assert time.monotonic() < deadline, "the ingest processes did not start"
            time.sleep(0.1)
        before = ingest_processes(proc.pid)
        assert len(before) == 2
        load.until(len(load.acked) + 3_000)
        os.kill(min(before), signal.SIGKILL)
        load.until(len(load.acked) + 3_000)
        while processes_ready(port) < 2:
            assert time.monotonic() < deadline + 30, "no new ingest processes"
            time.sleep(0.1)
        load.until(len(load.acked) + 3_000)  # served by the new ones
        load.stop()
        after = ingest_processes(proc.pid)
        assert len(after) == 2 and not after & before
        assert "an ingest process died" in log.read_text()
    finally:
        load.stop()
        stop_server(proc, log)
    assert_stored_once(data, load.acked)


def held_and_acked(journal: Path, acked: list[str]) -> bool:
    """Whether the journal holds events whose requests were answered 200."""
    from traction.store.journal import Journal

    held = {i for e in Journal(journal).read() for i in e.table["event_id"].to_pylist()}
    return bool(held & set(acked))


def test_kill_9_while_the_log_checkpoints_loses_nothing(tmp_path: Path) -> None:
    """The server killed while its event log checkpoints in the background, with appends
    acknowledged from the side journal and not yet in the file: the restart moves them in,
    and every acknowledged event is stored once."""
    data = tmp_path / "data"
    key = new_workspace(data)
    port = free_port()
    log = tmp_path / "server.log"
    journal = data / "events.duckdb.journal"
    # a checkpoint every ~1 MB of WAL (a few thousand events), so that one comes soon
    proc = start_server(data, port, log, {"TRACTION_EVENT_CHECKPOINT_MB": "1"})
    load = Load(port, key)
    try:
        deadline = time.monotonic() + 60
        while not held_and_acked(journal, load.acked):
            assert time.monotonic() < deadline, "no acknowledged append was held"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)  # appends held, requests in flight
        proc.wait()
    finally:
        load.stop()
    assert held_and_acked(journal, load.acked)  # only in the journal, and acknowledged
    proc = start_server(data, port, log)
    stop_server(proc, log)
    assert journal.stat().st_size == 0  # applied at the restart, then emptied
    assert_stored_once(data, load.acked)
