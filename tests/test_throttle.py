"""Rate limits and login lockouts: in process, and shared by two server processes through a
real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import parse

from tests.conftest import LiveServer, free_port, wait_healthy
from traction.settings import Settings
from traction.store.state import StateStore
from traction.throttle import LocalLimiter, Throttle
from traction.workspaces.service import WorkspaceService

LOGIN = {"email": "pat@acme.io", "password": "s3cret-pass"}
WRONG = {"email": "pat@acme.io", "password": "not-it-at-all"}


def test_lockout_per_account_and_per_address() -> None:
    t = Throttle(login_per_account="3/minute", login_per_address="5/minute")
    for _ in range(3):
        assert t.login_wait("Pat@Acme.io", "10.0.0.1") is None
        t.login_failed("pat@acme.io", "10.0.0.1")
    wait = t.login_wait("pat@acme.io", "10.0.0.9")  # another address: the account is locked
    assert wait is not None and 1 <= wait <= 60
    t.login_succeeded("pat@acme.io")  # e.g. an admin reset: the account count is cleared
    assert t.login_wait("pat@acme.io", "10.0.0.9") is None
    for i in range(2):  # the address limit holds across accounts
        t.login_failed(f"other{i}@acme.io", "10.0.0.1")
    assert t.login_wait("new@acme.io", "10.0.0.1") is not None


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(1, 5),
    seconds=st.integers(1, 10),
    gaps=st.lists(st.floats(0, 4, allow_nan=False), min_size=1, max_size=60),
)
def test_local_moving_window_matches_its_definition(
    amount: int, seconds: int, gaps: list[float]
) -> None:
    """A hit is allowed when fewer than `amount` allowed hits fall in the last `seconds`
    (the moving window); checked against that definition, computed from the hits kept."""
    now = [1_000.0]
    limiter = LocalLimiter(clock=lambda: now[0])
    item = parse(f"{amount}/{seconds}second")
    allowed: list[float] = []
    for gap in gaps:
        now[0] += gap
        in_window = [t for t in allowed if t > now[0] - seconds]
        assert limiter.test(item, "k") == (len(in_window) < amount)
        expect = len(in_window) < amount
        assert limiter.hit(item, "k") == expect
        if expect:
            allowed.append(now[0])
        else:  # refused: the window frees a slot when the amount-th newest hit leaves it
            reset = limiter.get_window_stats(item, "k").reset_time
            assert reset == sorted(in_window)[-amount] + seconds
    assert limiter.hit(item, "other")  # keys are separate


def test_login_lockout_and_key_limits_over_http(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_json=False, login_limit_per_account="3/15minutes",
                        api_rate_limit="3/minute", ingest_rate_limit="3/minute")  # fmt: skip
    with LiveServer(settings) as server:
        ws = server.ctx.workspaces.create_workspace("Acme")
        server.ctx.workspaces.create_user("pat@acme.io", "s3cret-pass", [ws.id])
        with httpx.Client(base_url=server.url) as c:
            for _ in range(3):
                assert c.post("/login", data=WRONG).status_code == 401
            r = c.post("/login", data=LOGIN)  # right password, but locked: not even checked
            assert r.status_code == 429 and "Too many failed attempts" in r.text
            assert 60 <= int(r.headers["retry-after"]) <= 15 * 60
        api = httpx.Client(base_url=server.url, auth=(ws.secret_key, ""))
        assert [api.get("/api/v1/workspace").status_code for _ in range(4)] == [200, 200, 200, 429]
        r = api.get("/api/v1/workspace")
        assert (
            r.status_code == 429
            and int(r.headers["retry-after"]) >= 1
            and "too many" in r.json()["error"]
        )
        track = httpx.Client(base_url=server.url, auth=(ws.write_key, ""))
        codes = [
            track.post("/v1/track", json={"userId": "u", "event": "x"}).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        assert "retry-after" in track.post("/v1/track", json={"userId": "u", "event": "x"}).headers


@pytest.fixture
def two_servers(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, str, str]]:
    """Two `traction serve` processes: one StateStore, their own event files, one Redis."""
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(state_url)
    store.migrate()
    svc = WorkspaceService(store)
    ws = svc.create_workspace("Shared")
    svc.create_user("pat@acme.io", "s3cret-pass", [ws.id])
    store.dispose()
    procs, urls = [], []
    for name in ("a", "b"):
        port = free_port()
        env = {**os.environ, "TRACTION_STATE_URL": state_url, "TRACTION_REDIS_URL": redis_url + "",
               "TRACTION_EVENTS_PATH": str(tmp_path / f"{name}.duckdb"), "TRACTION_RUN_WORKER": "false",
               "TRACTION_LOGIN_LIMIT_PER_ACCOUNT": "5/15minutes", "TRACTION_API_RATE_LIMIT": "5/minute"}  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "traction.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / name), "--quiet"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            wait_healthy(url)
        yield urls[0], urls[1], ws.secret_key
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)


def test_limits_hold_across_two_processes_sharing_redis(two_servers: tuple[str, str, str]) -> None:
    a, b, secret = two_servers
    for url in (a, b, a, b, a):  # five wrong passwords, spread over both servers
        assert httpx.post(url + "/login", data=WRONG).status_code == 401
    assert httpx.post(b + "/login", data=LOGIN).status_code == 429  # locked on both
    assert httpx.post(a + "/login", data=LOGIN).status_code == 429
    codes = [
        httpx.get(url + "/api/v1/workspace", auth=(secret, "")).status_code
        for url in (a, b, a, b, a, b)
    ]
    assert codes == [200, 200, 200, 200, 200, 429]  # one budget of 5 a minute for the key
