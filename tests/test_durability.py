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


def start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
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


def test_kill_9_loses_no_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ctx = Context.open(Settings(data_dir=data), start_writer=False)
    key = ctx.workspaces.create_workspace("Durable").write_key
    ctx.close()

    port = free_port()
    log = tmp_path / "server.log"
    proc = start_server(data, port, log)
    acked: list[str] = []
    acked_lock = threading.Lock()
    stop = threading.Event()
    sent_batches: list[bytes] = []

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=5) as c:
            while not stop.is_set():
                ids = [str(uuid.uuid4()) for _ in range(50)]
                body = orjson.dumps(
                    {
                        "batch": [
                            {
                                "type": "track",
                                "userId": f"u{i % 7}",
                                "event": "load",
                                "messageId": mid,
                            }
                            for i, mid in enumerate(ids)
                        ]
                    }
                )
                try:
                    r = c.post(
                        "/v1/batch", content=body, headers={"content-type": "application/json"}
                    )
                except httpx.HTTPError:
                    continue  # the server died mid-request: not acknowledged, not counted
                if r.status_code == 200:
                    with acked_lock:
                        acked.extend(ids)
                        sent_batches.append(body)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 5_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 5_000, "the load did not get going"

    # Restart, resend some acknowledged batches (a client retry), then stop cleanly.
    proc = start_server(data, port, log)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=5) as c:
        for body in sent_batches[:20]:
            assert (
                c.post(
                    "/v1/batch", content=body, headers={"content-type": "application/json"}
                ).status_code
                == 200
            )
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises SIGTERM: -15 with our final log line.
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert '"traction stopped"' in log.read_text()

    con = duckdb.connect(str(data / "events.duckdb"), read_only=True)
    con.execute("CREATE TEMP TABLE acked (id VARCHAR)")
    con.executemany("INSERT INTO acked VALUES (?)", [[a] for a in acked])
    missing = con.execute(
        "SELECT COUNT(*) FROM acked WHERE id NOT IN (SELECT event_id FROM events)"
    ).fetchone()
    dupes = con.execute(
        "SELECT COUNT(*) FROM (SELECT event_id FROM events GROUP BY ALL HAVING COUNT(*) > 1)"
    ).fetchone()
    assert missing == (0,), f"{missing[0]} acknowledged events lost"  # type: ignore[index]
    assert dupes == (0,)
    assert len(set(acked)) == len(acked)
