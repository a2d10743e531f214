"""Journeys at speed: trigger matching in the reactor, and sending to a local SMTP server.

    .venv/bin/python bench/engage.py [--events 500000] [--journeys 100] [--emails 2000]

1. A log of --events events (20 names, 20,000 people, properties with a plan) and
   --journeys active journeys, each triggered by one of the names with a property filter
   (entries are rare, as for real triggers: matching is what is measured), with goals and
   awaited events on common names. The journey reactor reads the whole log through the real
   reactor feed; the baseline, in the same run, is the same feed with a reactor that does
   nothing (what reading the log costs on its own). Goal: >= 50,000 events/s.
2. --emails due emails sent by the real sender to a real SMTP server (aiosmtpd, in a process
   of its own) on loopback, one connection reused. Goal: >= 500 emails/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

NAMES = [f"feature_{k}_used" for k in range(17)] + [
    "session_started",
    "report_created",
    "signed_up",
]


class Nothing:
    name = "bench.nothing"
    columns = ("workspace_id", "person_id", "type", "name", "timestamp", "properties")

    def handle(self, batch: Sequence[dict[str, Any]]) -> None:
        pass


def journeys(n: int) -> dict[str, Any]:
    out = {}
    for k in range(n):
        out[f"j{k}"] = {
            "trigger": {"event": NAMES[k % len(NAMES)],
                        "filters": [{"property": "plan", "value": "enterprise"}]},
            "goal": {"event": {"event": "report_created"}, "within_days": 7},
            "steps": [{"id": "w", "type": "wait", "until_event": {"event": "session_started"}, "timeout_hours": 24},
                      {"id": "m", "type": "inapp", "inapp": {"title": "Hi"}}],
        }  # fmt: skip
    return out


def build(data: Path, events: int, n_journeys: int) -> str:
    from traction.context import Context
    from traction.settings import Settings

    ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
    ws = ctx.workspaces.create_workspace("Bench").id
    ctx.engage.apply(ws, journeys(n_journeys))
    ctx.close()
    con = duckdb.connect(str(data / "events.duckdb"))
    names = "[" + ", ".join(f"'{n}'" for n in NAMES) + "]"
    con.execute(
        "INSERT INTO events SELECT md5_number($ws || chr(0) || id), $ws, id, seq, 'track', name, ts, NULL, NULL, ts, "
        "NULL, u, u, u, NULL, props, NULL FROM (SELECT 'e' || i AS id, i + 1 AS seq, "
        f"{names}[1 + (hash(i) % {len(NAMES)})::INT] AS name, "
        "TIMESTAMP '2026-05-01' + to_microseconds(i * 1000000) AS ts, 'u' || (hash(i * 13) % 20000)::BIGINT AS u, "
        "json_object('plan', CASE WHEN hash(i * 7) % 1000 = 0 THEN 'enterprise' ELSE 'free' END, 'n', i) AS props "
        "FROM range($n) t(i))",
        {"ws": ws, "n": events},
    )  # fmt: skip
    con.execute("CHECKPOINT")
    con.close()
    return ws


def feed(data: Path, reactor: Any) -> float:
    from traction.context import Context
    from traction.settings import Settings
    from traction.worker import ReactorRunner

    # as in the server: the events the journeys write about entries go to the writer thread;
    # the time includes the writer committing them (`stop` waits for what is queued)
    ctx = Context.open(Settings(data_dir=data, log_json=False))
    try:
        r = reactor(ctx)
        runner = ReactorRunner(ctx.state, ctx.events, [r], ctx.metrics)
        t = time.perf_counter()
        runner.run_once()
        ctx.writer.stop()
        return time.perf_counter() - t
    finally:
        ctx.close()


SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
ids = set()
class H:
    async def handle_DATA(self, server, session, envelope):
        for line in envelope.content.split(b"\\r\\n"):
            if line.lower().startswith(b"message-id:"):
                ids.add(line)
                break
        return "250 OK"
c = Controller(H(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.readline()
c.stop()
print(len(ids), flush=True)
"""


def smtp_rate(emails: int) -> tuple[float, int]:
    """The SMTP server runs in a process of its own (as a real one would: not on our GIL)."""
    import subprocess

    from tests.conftest import free_port
    from traction.context import Context
    from traction.engage.models import Delivery
    from traction.settings import Settings

    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert sink.stdout is not None and sink.stdin is not None
    assert sink.stdout.readline().strip() == "ready"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Context.open(Settings(data_dir=Path(tmp), log_json=False, smtp_host="127.0.0.1",
                                        smtp_port=port), start_writer=False)  # fmt: skip
            try:
                ws = ctx.workspaces.create_workspace("Bench").id
                with ctx.state.session() as s:
                    for i in range(emails):
                        s.add(Delivery(workspace_id=ws, idem_key=f"bench:{i}", journey="bench", step="m",
                                       person_id=f"p{i}", channel="email", status="pending", target=f"p{i}@example.com",
                                       payload={"subject": "Hello", "text": "Hi there", "html": "<p>Hi <a href=\"https://x.io\">x</a></p>"},
                                       message_id="", error="", transactional=False, attempts=0))  # fmt: skip
                assert ctx.engage.sender is not None
                t = time.perf_counter()
                while ctx.engage.sender.deliver():
                    pass
                took = time.perf_counter() - t
            finally:
                ctx.close()
        sink.stdin.write("stop\n")
        sink.stdin.flush()
        received = int(sink.stdout.readline())
        return took, received
    finally:
        sink.kill()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--journeys", type=int, default=100)
    ap.add_argument("--emails", type=int, default=2000)
    a = ap.parse_args()
    from traction.engage.reactors import JourneyReactor

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        ws = build(data, a.events, a.journeys)
        base = feed(data, lambda ctx: Nothing())
        took = feed(data, lambda ctx: JourneyReactor(ctx.engage.engine))
        from traction.context import Context
        from traction.settings import Settings

        ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
        entered = sum(ctx.engage.stats(ws, f"j{k}")["entered"] for k in range(a.journeys))
        ctx.close()
    print(f"{a.events:,} events, {a.journeys} journeys, {entered:,} entries\n")
    print(f"{'':<44}{'seconds':>9}{'events/s':>12}{'ratio':>8}")
    print(
        f"{'reactor feed alone (the baseline)':<44}{base:>9.2f}{a.events / base:>12,.0f}{1:>8.2f}"
    )
    print(
        f"{'journey trigger matching':<44}{took:>9.2f}{a.events / took:>12,.0f}{base / took:>8.2f}"
    )
    took, received = smtp_rate(a.emails)
    print(f"\n{a.emails:,} emails to aiosmtpd on loopback: {took:.2f} s, {a.emails / took:,.0f} emails/s, "
          f"{received:,} distinct received")  # fmt: skip


if __name__ == "__main__":
    main()
