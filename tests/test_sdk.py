"""The Python SDK against the real server (and a real flaky proxy in front of it for retries)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port
from traction.sdk import Client
from traction.workspaces.service import CreatedWorkspace


def stored_ids(server: LiveServer, ws: str) -> list[str]:
    return [e["event_id"] for e in server.ctx.events.recent(ws, limit=100_000)]


def test_batches_flush_and_every_call_type(server: LiveServer, workspace: CreatedWorkspace) -> None:
    client = Client(workspace.write_key, server.url, flush_at=10, flush_interval=0.2)
    ids = [client.track("u1", "clicked", {"i": i}) for i in range(45)]
    ids.append(client.identify("u1", {"email": "u1@x.io"}, anonymous_id="anon"))
    ids.append(client.group("u1", "acme", {"plan": "pro"}))
    ids.append(client.page(anonymous_id="anon", name="home"))
    ids.append(client.screen("u1", "Settings"))
    ids.append(client.alias("anon2", "u1"))
    assert client.flush(timeout=30)
    assert sorted(stored_ids(server, workspace.id)) == sorted(ids)
    assert client.stats.sent == 50 and client.stats.dropped == 0 and client.stats.failed == 0
    client.shutdown()


def test_sync_mode_stores_before_returning(server: LiveServer, workspace: CreatedWorkspace) -> None:
    client = Client(workspace.write_key, server.url, sync_mode=True)
    mid = client.track("u", "now")
    assert stored_ids(server, workspace.id) == [mid]


def test_calls_are_validated() -> None:
    client = Client("k", "http://127.0.0.1:9", sync_mode=True)
    with pytest.raises(ValueError, match="user_id or anonymous_id"):
        client.track(event="x")
    with pytest.raises(ValueError, match="event is required"):
        client.track("u")


class Flaky:
    """A real HTTP proxy: answers the first N requests with a chosen error, then forwards."""

    def __init__(self, target: str, failures: list[tuple[int, dict[str, str]]]) -> None:
        self.failures = list(failures)
        self.seen: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.seen.append(time.monotonic())
                if outer.failures:
                    status, headers = outer.failures.pop(0)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                r = httpx.post(
                    target + self.path,
                    content=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )
                self.send_response(r.status_code)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def flaky(server: LiveServer) -> Iterator[Any]:
    made: list[Flaky] = []

    def make(failures: list[tuple[int, dict[str, str]]]) -> Flaky:
        made.append(Flaky(server.url, failures))
        return made[-1]

    yield make
    for f in made:
        f.close()


def test_retries_5xx_then_delivers_once(
    server: LiveServer, workspace: CreatedWorkspace, flaky: Any
) -> None:
    proxy = flaky([(503, {}), (502, {})])
    client = Client(workspace.write_key, proxy.url, flush_at=5, backoff_base=0.01)
    ids = [client.track("u", "x") for _ in range(5)]
    assert client.flush(timeout=30)
    assert client.stats.retries == 2 and client.stats.sent == 5
    assert sorted(stored_ids(server, workspace.id)) == sorted(ids)
    client.shutdown()


def test_429_honours_retry_after(
    server: LiveServer, workspace: CreatedWorkspace, flaky: Any
) -> None:
    proxy = flaky([(429, {"Retry-After": "1"})])
    client = Client(workspace.write_key, proxy.url, flush_at=1, backoff_base=0.001)
    client.track("u", "x")
    assert client.flush(timeout=30)
    assert proxy.seen[1] - proxy.seen[0] >= 0.95
    assert client.stats.sent == 1
    client.shutdown()


def test_4xx_is_not_retried_and_is_reported(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[Any] = []
    client = Client(
        "tr_pub_not-a-key", server.url, flush_at=1, on_error=lambda e, b: errors.append((e, len(b)))
    )
    client.track("u", "x")
    assert client.flush(timeout=30)
    assert client.stats.retries == 0 and client.stats.failed == 1
    assert "HTTP 401" in str(errors[0][0]) and errors[0][1] == 1
    refused = [r for r in caplog.records if r.name.startswith("traction.sdk")]
    assert [r.levelname for r in refused] == ["ERROR"]
    assert (
        "HTTP 401" in refused[0].getMessage() and "check the write key" in refused[0].getMessage()
    )
    client.shutdown()


def test_network_errors_retry_with_backoff_then_give_up() -> None:
    client = Client(
        "k", f"http://127.0.0.1:{free_port()}", flush_at=1, max_retries=3, backoff_base=0.01
    )
    client.track("u", "x")
    assert client.flush(timeout=30)
    assert client.stats.retries == 3 and client.stats.failed == 1
    client.shutdown()


def test_full_queue_drops_and_counts() -> None:
    client = Client(
        "k",
        f"http://127.0.0.1:{free_port()}",
        flush_at=1,
        max_queue_size=5,
        max_retries=50,
        backoff_base=0.2,
    )
    for _ in range(12):
        client.track("u", "x")
    # the sender holds at most one message; the queue five: the rest are dropped
    assert 6 <= client.stats.dropped <= 7
    assert client.stats.queued + client.stats.dropped == 12
    client._stop.set()


def test_oversized_message_is_dropped_not_sent() -> None:
    client = Client("k", "http://127.0.0.1:9", sync_mode=True)
    client.track("u", "x", {"blob": "x" * 40_000})
    assert client.stats.dropped == 1


def test_atexit_flushes_what_is_queued(server: LiveServer, workspace: CreatedWorkspace) -> None:
    script = f"""
from traction.sdk import Client
c = Client({workspace.write_key!r}, {server.url!r}, flush_at=100, flush_interval=60)
for i in range(20):
    c.track("exiting", "x", message_id=f"atexit-{{i}}")
"""  # flush_interval=60: nothing is sent before exit unless atexit flushes
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert sorted(stored_ids(server, workspace.id)) == sorted(f"atexit-{i}" for i in range(20))
