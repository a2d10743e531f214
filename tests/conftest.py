"""Shared fixtures: real SQLite/DuckDB files, a real PostgreSQL server, a real HTTP server."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from hypothesis import settings as hypothesis_settings

from traction.context import Context
from traction.ops.memory import THRESHOLDS
from traction.server import create_app
from traction.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"

# Property tests draw the same examples on every run, so a red run is reproducible and CI
# does not turn red by chance; `HYPOTHESIS_PROFILE=explore make test` searches afresh.
hypothesis_settings.register_profile("fixed", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", max_examples=500)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

# The suite builds hundreds of apps, services and data dirs in one process: with CPython's
# default thresholds the cycle collector walks the whole heap again and again (four test files
# took 87 s with them, 69 s with the server's; see `traction.ops.memory`).
gc.set_threshold(*THRESHOLDS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin() -> Path | None:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / "initdb").exists():
            return root
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL (no database): TRACTION_TEST_PG_URL, or a private cluster."""
    url = os.environ.get("TRACTION_TEST_PG_URL")
    if url:
        yield url.rstrip("/")
        return
    bindir = _pg_bin()
    if bindir is None:
        if IN_CI:
            pytest.fail("PostgreSQL is required in CI: .ci/run must install it")
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    # Not under pytest's tmp dir: that is private to root, and postgres must not run as root.
    base = Path(tempfile.mkdtemp(prefix="traction-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    port = free_port()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-o",
            f"-h 127.0.0.1 -p {port} -k {sock} -F",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


def _new_pg_database(server: str) -> str:
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every StateStore test runs twice: on a SQLite file and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return _new_pg_database(request.getfixturevalue("pg_server"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Fuzz tests send hundreds of requests a second with one key: limits are tested on their own.
    # Reactors in the server's thread: a process per test server costs a second or two to
    # start; tests/test_reactor_process.py runs them in one.
    return Settings(
        data_dir=tmp_path / "data", log_json=False, worker_poll_seconds=0.05,
        api_rate_limit="100000/second", ingest_rate_limit="100000/second",
        reactor_process=False,
    )  # fmt: skip


@pytest.fixture
def ctx(settings: Settings, state_url: str) -> Iterator[Context]:
    c = Context.open(settings.model_copy(update={"state_url": state_url}))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def sqlite_ctx(settings: Settings) -> Iterator[Context]:
    c = Context.open(settings)
    try:
        yield c
    finally:
        c.close()


class LiveServer:
    """A real uvicorn server on a loopback port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.ctx: Context = self.app.state.ctx
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            proxy_headers=False,  # as `traction serve`: addresses from trusted_proxies only
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)  # type: ignore[arg-type]


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as s:
        yield s


@pytest.fixture
def workspace(server: LiveServer):  # type: ignore[no-untyped-def]
    return server.ctx.workspaces.create_workspace("Acme")


# -- Chromium (Debian's /usr/bin/chromium, driven by Playwright) ----------------------------

CHROMIUM = os.environ.get("TRACTION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI: .ci/run must install chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait up to 15 s, like the pages' actions (5 s by default): a CI box running
    # the suite on two busy cores is several times slower than a laptop.
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


# -- The real browser SDKs, from the npm registry, cached in .build/ ------------------------

BROWSER_SDKS = {
    "analytics-next": "@segment/analytics-next@1.84.3",
    "posthog-js": "posthog-js@1.449.2",
}
SDK_CACHE = ROOT / ".build" / "browser-sdks"


def fetch_browser_sdks(cache: Path = SDK_CACHE) -> dict[str, Path]:
    """Each SDK's published package, unpacked under `cache/<name>/` once (`npm pack` asks the
    npm registry; nothing is fetched at test time once the cache exists). `.ci/run` fills
    the cache before the tests; a developer's first browser-SDK test run fills it too."""
    out = {}
    for name, spec in BROWSER_SDKS.items():
        target = cache / spec.replace("/", "__")
        if not (target / "package.json").exists():
            if shutil.which("npm") is None:
                if IN_CI:
                    pytest.fail("npm is required in CI: .ci/run must install it")
                pytest.skip("npm not installed (apt-get install npm): cannot fetch browser SDKs")
            work = Path(tempfile.mkdtemp(prefix="traction-npm-"))
            done = subprocess.run(
                ["npm", "pack", spec, "--pack-destination", str(work), "--silent"],
                capture_output=True,
                text=True,
                cwd=work,
                timeout=300,
            )
            if done.returncode != 0:
                pytest.fail(f"npm pack {spec} failed: {done.stderr[-500:]}")
            (tgz,) = work.glob("*.tgz")
            with tarfile.open(tgz) as tar:
                tar.extractall(work / "x", filter="data")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(work / "x" / "package", target)
            shutil.rmtree(work, ignore_errors=True)
        out[name] = target
    return out


def show_json(page) -> None:  # type: ignore[no-untyped-def]
    """The insight builder hides the JSON spec until asked."""
    if not page.get_by_test_id("spec-editor").is_visible():
        page.get_by_test_id("toggle-json").click()


def run_spec(page, spec: str) -> None:  # type: ignore[no-untyped-def]
    """Type a spec into the builder's JSON box and run it."""
    show_json(page)
    page.get_by_test_id("spec-editor").fill(spec)
    page.get_by_role("button", name="Run").click()


@contextmanager
def web_client(
    server: LiveServer, email: str, password: str = "s3cret-pass"
) -> Iterator[httpx.Client]:
    """A logged-in dashboard client, sending the session's CSRF token as a browser page would."""
    from traction.web.session import COOKIE, csrf_token

    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/login", data={"email": email, "password": password})
        assert r.status_code == 303, r.text
        client.headers["X-CSRF-Token"] = csrf_token(client.cookies[COOKIE])
        yield client


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on loopback (`.ci/run` installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("redis-server is required in CI: .ci/run must install it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def wait_healthy(url: str, seconds: float = 30) -> None:
    """Until a server started in another process answers /healthz."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not start within {seconds:g} s")


class SMTPSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self) -> None:
        import email
        import threading

        from aiosmtpd.controller import Controller

        self.messages: list[email.message.Message] = []
        self.refuse: dict[str, str] = {}  # address -> the RCPT reply (e.g. a 550 bounce)
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_RCPT(self, server: object, session: object, envelope: object,
                                  address: str, rcpt_options: list[str]) -> str:  # fmt: skip
                if address in sink.refuse:
                    return sink.refuse[address]
                envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
                return "250 OK"

            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
                msg = email.message_from_bytes(envelope.content)  # type: ignore[attr-defined]
                with sink._lock:
                    sink.messages.append(msg)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]) for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[SMTPSink]:
    sink = SMTPSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()
