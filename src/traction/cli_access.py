"""How a CLI command reaches the events: directly, or through the server that holds them.

DuckDB lets one process write a file, so while `traction serve` runs, commands that read or
write events go through its HTTP API instead of refusing. `serve` leaves `server.json` in the
data dir (its URL and pid); the command makes a temporary admin key for the workspace in the
StateStore (which several processes may share), uses it, and deletes it. Whoever can read the
data dir can read the events anyway, so this grants nothing new. `--url` with `--key` reaches
any server, this machine's or not.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traction.cli_common import fail, pick_workspace, settings_for, state_only
from traction.settings import Settings

if TYPE_CHECKING:
    import httpx

    from traction.context import Context

SERVER_FILE = "server.json"
# accepted events, and (index in the batch, why) for each refused one
Sink = Callable[[list[object]], tuple[int, list[tuple[int, str]]]]


@contextlib.contextmanager
def announce(settings: Settings, host: str, port: int) -> Iterator[None]:
    """While `serve` runs: tell CLI commands on this data dir where the server is."""
    import signal

    path = settings.data_dir / SERVER_FILE
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    path.write_text(json.dumps({"url": f"http://{shown}:{port}", "pid": os.getpid()}))

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # it found: make that a clean exit (status 0: the shutdown went well) that runs this
    # `finally`, rather than an abrupt death that leaves the file behind.
    def leave(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(FileNotFoundError):
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()


def running_server(settings: Settings) -> str | None:
    """The URL of the server announced in the data dir, if its process is alive."""
    try:
        info = json.loads((settings.data_dir / SERVER_FILE).read_text())
        os.kill(int(info["pid"]), 0)
        return str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Local:
    ctx: Context
    workspace_id: str

    def sink(self) -> Sink:
        from traction.ingest.domain import normalize_segment

        def send(messages: list[object]) -> tuple[int, list[tuple[int, str]]]:
            result = self.ctx.ingest.ingest_sync(self.workspace_id, messages, normalize_segment)
            return result.accepted, [(r["index"], r["error"]) for r in result.rejected]

        return send


@dataclass
class Remote:
    url: str
    key: str
    workspace_id: str
    client: httpx.Client

    def get(self, path: str, **params: Any) -> Any:
        return self._answer(self.client.get(path, params=params))

    def post(self, path: str, body: Any) -> Any:
        return self._answer(self.client.post(path, json=body))

    def _answer(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                why = r.json().get("error") or r.json().get("detail") or r.text
            except ValueError:
                why = r.text
            raise fail(f"the server at {self.url} answered HTTP {r.status_code}: {why}")
        return r.json()

    def sink(self) -> Sink:
        return http_sink(self.url, self.key)


def connect(url: str, key: str) -> httpx.Client:
    import httpx

    return httpx.Client(base_url=url.rstrip("/"), auth=(key, ""), timeout=120)


@contextlib.contextmanager
def events_access(
    data_dir: Path | None,
    workspace: str | None,
    url: str | None = None,
    key: str | None = None,
    *,
    create_workspace: bool = False,
) -> Iterator[Local | Remote]:
    """The events of one workspace: the data dir opened here, or the server that holds it.
    `create_workspace`: a workspace named `workspace` is made if there is none (simulate)."""
    import httpx

    from traction.context import Context
    from traction.store.events import EventStoreLocked

    if url:
        if not key:
            raise fail("--url needs --key (the workspace's tr_sec_… key; tr_pub_… to import)")
        client = connect(url, key)
        if key.startswith("tr_pub_"):  # a write key can only send events (import)
            try:
                yield Remote(url, key, "", client)
            finally:
                client.close()
            return
        try:
            try:
                ws = client.get("/api/v1/workspace")
            except httpx.HTTPError as e:
                raise fail(f"cannot reach {url}: {e}") from None
            if ws.status_code != 200:
                raise fail(f"{url} refused the key: HTTP {ws.status_code} {ws.text[:200]}")
            yield Remote(url, key, ws.json()["id"], client)
        finally:
            client.close()
        return
    settings = settings_for(data_dir)
    try:
        ctx = Context.open(settings.without_a_server(), start_writer=False)
    except EventStoreLocked as e:
        server = running_server(settings)
        if server is None:
            raise fail(
                f"{e} (no server announced in {settings.data_dir}: pass --url and --key)"
            ) from None
        ctx = None
    if ctx is not None:
        try:
            yield Local(ctx, _workspace(ctx.workspaces, workspace, create_workspace))
        finally:
            ctx.close()
        return
    assert server is not None
    from traction.workspaces.service import WorkspaceService

    with state_only(data_dir) as state:
        spaces = WorkspaceService(state)
        ws_id = _workspace(spaces, workspace, create_workspace)
        temporary = spaces.create_key(
            ws_id, "admin", name="traction CLI (temporary)", audited=False
        )
        client = connect(server, temporary.key)
        try:
            yield Remote(server, temporary.key, ws_id, client)
        finally:
            client.close()
            spaces.delete_key(ws_id, temporary.id)


def _workspace(spaces: Any, ref: str | None, create: bool) -> str:
    if create and ref and spaces.find_workspace(ref) is None:
        return str(spaces.create_workspace(ref).id)
    return pick_workspace(spaces.list_workspaces(), ref)


def http_sink(url: str, key: str) -> Sink:
    """POST /v1/batch in bodies under 500 KB; per-event rejections come back by index."""
    import time

    import httpx
    import orjson

    client = connect(url, key)
    limit = 480 * 1024

    def post(messages: list[object], offset: int) -> tuple[int, list[tuple[int, str]]]:
        body = orjson.dumps({"batch": messages})
        if len(body) > limit and len(messages) > 1:
            half = len(messages) // 2
            a, ra = post(messages[:half], offset)
            b, rb = post(messages[half:], offset + half)
            return a + b, ra + rb
        problem = ""
        for attempt in range(5):
            try:
                r = client.post(
                    "/v1/batch", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as e:
                problem = f"cannot reach {url}: {e}"
            else:
                if r.status_code == 200:
                    return len(messages), []
                if r.status_code == 400 and "rejected" in r.json():
                    out = r.json()
                    return out["accepted"], [
                        (offset + x["index"], x["error"]) for x in out["rejected"]
                    ]
                if r.status_code < 500 and r.status_code != 429:
                    raise fail(
                        f"the server refused the batch: HTTP {r.status_code}: {r.json().get('error', r.text)}"
                    )
                problem = f"HTTP {r.status_code}"
            time.sleep(min(10.0, 0.5 * 2**attempt))
        raise fail(f"giving up after 5 tries: {problem}")

    return lambda messages: post(messages, 0)


def read_or_call(
    data_dir: Path | None,
    workspace: str | None,
    path: str,
    local: Callable[[Any, str], Any],
    errors: tuple[type[Exception], ...],
    *,
    post: dict[str, Any] | None = None,
) -> Any:
    """One answer, from the data dir (`local(ctx, workspace_id)`) or through the server that
    holds it (`GET path`, or `POST path` with `post`): a 404/422 or one of `errors` exits 2
    with its message, as bad input does everywhere in the CLI."""
    from traction.billing.cli import bad_input

    with events_access(data_dir, workspace, None, None) as access:
        if not isinstance(access, Local):
            r = access.client.post(path, json=post) if post is not None else access.client.get(path)
            if r.status_code in (404, 422):
                raise bad_input(r.json()["error"])
            r.raise_for_status()
            return r.json()
        try:
            return local(access.ctx, access.workspace_id)
        except errors as e:
            raise bad_input(str(e)) from None
