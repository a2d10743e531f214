"""kill -9 of the journey worker in the middle of 1,000 due emails, then a restart: the SMTP
server (aiosmtpd, in this process) received every one of the 1,000 distinct Message-IDs, and
a repeat can only be a message in flight at the kill, one per SMTP connection (reported; the
goal is none)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMTPSink
from traction.context import Context
from traction.engage.reactors import JourneyReactor
from traction.ingest.domain import normalize_segment
from traction.settings import Settings
from traction.worker import ReactorRunner

pytestmark = pytest.mark.slow
N = 1000


def worker(data: Path, smtp: SMTPSink, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRACTION_SMTP_HOST": "127.0.0.1", "TRACTION_SMTP_PORT": str(smtp.port),
           "TRACTION_ENGAGE_LEASE_SECONDS": "2", "TRACTION_LOG_JSON": "false"}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "traction", "journeys", "work", "--data-dir", str(data),
                             "--every", "0.1"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip


def wait(cond: object, seconds: float, what: str, log: Path) -> None:
    end = time.monotonic() + seconds
    while not cond():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def test_kill_9_sends_every_email_once(tmp_path: Path, smtp: SMTPSink) -> None:
    data = tmp_path / "data"
    ctx = Context.open(Settings(data_dir=data, log_json=False))
    ws = ctx.workspaces.create_workspace("Acme").id
    ctx.engage.put(ws, "welcome", {"trigger": {"event": "signed_up"}, "steps": [
        {"id": "hi", "type": "email", "email": {"subject": "Welcome {{ person.id }}", "text": "Hello"}}]})  # fmt: skip
    msgs = []
    for i in range(N):
        msgs += [{"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@example.com"}, "messageId": f"i{i}"},
                 {"type": "track", "userId": f"u{i}", "event": "signed_up", "messageId": f"s{i}"}]  # fmt: skip
    assert not ctx.ingest.ingest_sync(ws, msgs, normalize_segment).rejected
    ReactorRunner(
        ctx.state, ctx.events, [JourneyReactor(ctx.engage.engine)], ctx.metrics
    ).run_once()
    ctx.close()
    log = tmp_path / "worker.log"
    proc = worker(data, smtp, log)
    wait(lambda: len(smtp.messages) >= 300, 60, "300 emails", log)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: a message per connection may be in flight
    proc.wait()
    at_kill = len(smtp.messages)
    assert at_kill < N, "the worker finished before the kill: the test proves nothing"
    proc = worker(data, smtp, log)
    try:
        wait(lambda: len(set(smtp.ids())) >= N, 90, f"{N} distinct emails", log)
        time.sleep(1.0)  # anything sent twice would arrive now
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    ids = smtp.ids()
    repeats = len(ids) - len(set(ids))
    print(
        f"kill -9 after {at_kill} of {N} emails: {len(set(ids))} distinct received, {repeats} repeated"
    )
    assert len(set(ids)) == N
    # only those in flight can repeat (same Message-ID), one per connection; goal 0
    assert repeats <= Settings().smtp_connections
    ctx = Context.open(Settings(data_dir=data, log_json=False))
    try:
        statuses = {d["status"] for d in ctx.engage.deliveries(ws, limit=N)}
        assert statuses == {"sent"}
    finally:
        ctx.close()
