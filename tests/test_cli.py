"""The `traction` command: workspace creation and imports with line-numbered errors."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from traction.cli import app
from traction.context import Context
from traction.settings import Settings

runner = CliRunner()


def make_ws(data: Path) -> dict[str, str]:
    r = runner.invoke(app, ["workspace", "create", "Acme", "--data-dir", str(data), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def stored(data: Path, ws: str) -> dict[str, dict[str, object]]:
    ctx = Context.open(Settings(data_dir=data), start_writer=False)
    try:
        return {e["event_id"]: e for e in ctx.events.recent(ws, limit=1000)}
    finally:
        ctx.close()


def test_workspace_create_prints_working_keys(tmp_path: Path) -> None:
    info = make_ws(tmp_path)
    assert (
        info["id"].startswith("ws_")
        and info["write_key"].startswith("tr_pub_")
        and info["secret_key"].startswith("tr_sec_")
    )
    ctx = Context.open(Settings(data_dir=tmp_path), start_writer=False)
    try:
        assert (
            ctx.workspaces.authenticate_key(info["secret_key"], "admin").workspace_id == info["id"]
        )
        # one public SDK client key per environment, which resolves to this workspace
        assert set(info["sdk_keys"]) == {"development", "production"}
        assert ctx.flags.resolve_key(info["sdk_keys"]["production"])[:2] == (
            info["id"],
            "production",
        )
    finally:
        ctx.close()


def test_import_ndjson_keeps_good_rows_and_names_bad_lines(tmp_path: Path) -> None:
    info = make_ws(tmp_path)
    f = tmp_path / "events.ndjson"
    f.write_bytes(
        b"\n".join(
            [
                orjson.dumps({"type": "track", "userId": "u", "event": "a", "messageId": "1"}),
                b"{broken",
                orjson.dumps({"type": "track", "userId": "u", "messageId": "2"}),
                b"",
                orjson.dumps(
                    {"type": "identify", "userId": "u", "traits": {"x": 1}, "messageId": "3"}
                ),
            ]
        )
    )
    r = runner.invoke(app, ["import", str(f), "--data-dir", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "2 events imported" in r.stdout and "2 rejected" in r.stdout
    assert "line 2: not valid JSON" in r.stderr and "line 3: event is required" in r.stderr
    assert set(stored(tmp_path, info["id"])) == {"1", "3"}


def test_import_csv_with_nested_columns(tmp_path: Path) -> None:
    info = make_ws(tmp_path)
    f = tmp_path / "events.csv"
    f.write_text(
        "type,userId,event,messageId,timestamp,properties.plan,context\n"
        'track,u1,upgraded,c1,2026-01-02T03:04:05Z,pro,"{""ip"": ""1.2.3.4""}"\n'
        "track,u2,,c2,2026-01-02T03:04:05Z,free,\n"
    )
    r = runner.invoke(app, ["import", str(f), "--data-dir", str(tmp_path), "--workspace", "Acme"])
    assert r.exit_code == 2 and "line 3: event is required" in r.stderr
    rows = stored(tmp_path, info["id"])
    assert set(rows) == {"c1"}
    assert rows["c1"]["properties"] == {"plan": "pro"} and rows["c1"]["context"] == {
        "ip": "1.2.3.4"
    }
    assert str(rows["c1"]["timestamp"]) == "2026-01-02 03:04:05"


def test_import_parquet(tmp_path: Path) -> None:
    info = make_ws(tmp_path)
    f = tmp_path / "events.parquet"
    pq.write_table(
        pa.table(
            {
                "type": ["track", "page"],
                "anonymousId": ["a", "a"],
                "event": ["x", None],
                "name": [None, "home"],
                "messageId": ["p1", "p2"],
                "properties": ['{"k": 1}', None],
            }
        ),
        f,
    )
    r = runner.invoke(app, ["import", str(f), "--data-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert stored(tmp_path, info["id"])["p1"]["properties"] == {"k": 1}


def test_import_refuses_unknown_workspace_and_file_type(tmp_path: Path) -> None:
    make_ws(tmp_path)
    f = tmp_path / "x.ndjson"
    f.write_text("{}\n")
    r = runner.invoke(app, ["import", str(f), "--data-dir", str(tmp_path), "--workspace", "nope"])
    assert r.exit_code == 1 and "no workspace 'nope'" in r.stderr
    g = tmp_path / "x.xml"
    g.write_text("<a/>")
    r = runner.invoke(app, ["import", str(g), "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and "unsupported file type" in r.stderr


def test_settings_from_toml_and_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "traction.toml").write_text('data_dir = "from-toml"\nport = 9123\n')
    s = Settings()
    assert s.data_dir == Path("from-toml") and s.port == 9123
    monkeypatch.setenv("TRACTION_PORT", "9999")
    assert Settings().port == 9999  # the environment wins over the file
    assert Settings(port=1).port == 1  # and explicit arguments over both


def test_demo_builds_a_small_workspace_once(tmp_path: Path) -> None:
    args = ["demo", "--data-dir", str(tmp_path), "--no-serve", "--people", "150", "--days", "15"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "demo@traction.local" in first.stdout and "traction-demo" in first.stdout
    ctx = Context.open(Settings(data_dir=tmp_path), start_writer=False)
    try:
        (ws,) = ctx.workspaces.list_workspaces()
        n = ctx.events.count(ws.id)
        assert n > 1000
        assert ctx.workspaces.verify_password("demo@traction.local", "traction-demo") is not None
        segments = {s["key"]: s for s in ctx.segments.segments(ws.id)}
        assert set(segments) == {"power-users", "drifting"}
        assert (
            all(s["refreshed_at"] for s in segments.values())
            and segments["power-users"]["size"] > 0
        )
    finally:
        ctx.close()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "reusing" in again.stderr
    assert f"{n:,} events" in again.stdout
    # a build that stopped half-way (its mark left behind) is not taken for a demo
    (tmp_path / "demo-building").touch()
    stopped = runner.invoke(app, args)
    assert stopped.exit_code == 1 and "interrupted" in stopped.stderr, stopped.output
    assert "delete that directory" in stopped.stderr and "Traceback" not in stopped.output


def test_import_through_a_running_server(tmp_path: Path, server, workspace) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "events.ndjson"
    lines = [
        orjson.dumps(
            {
                "type": "track",
                "userId": "u",
                "event": "e",
                "messageId": f"h{i}",
                "properties": {"pad": "x" * 2000},
            }
        )
        for i in range(400)
    ]
    lines.insert(
        7, orjson.dumps({"type": "track", "userId": "u", "messageId": "no-event"})
    )  # line 8
    f.write_bytes(b"\n".join(lines))
    r = runner.invoke(
        app,
        [
            "import",
            str(f),
            "--url",
            server.url,
            "--write-key",
            workspace.write_key,
            "--chunk",
            "1000",
        ],
    )
    assert r.exit_code == 2, r.output  # one rejected
    assert "400 events imported" in r.stdout and "1 rejected" in r.stdout
    assert "line 8: event is required" in r.stderr
    assert (
        server.ctx.events.count(workspace.id) == 400
    )  # ~800 KB: sent as several batches under 500 KB
    r = runner.invoke(app, ["import", str(f), "--url", server.url, "--write-key", "tr_pub_wrong"])
    assert r.exit_code == 1 and "HTTP 401" in r.stderr
    r = runner.invoke(app, ["import", str(f), "--url", server.url])
    assert r.exit_code == 1 and "--key" in r.stderr


@pytest.mark.parametrize("stop", ["ctrl-c", "kill -9 of the simulating process"])
def test_a_demo_build_stopped_half_way_stops_cleanly(tmp_path: Path, stop: str) -> None:
    """Ctrl+C reaches the whole process group, the process simulating the first days too;
    that process may also die alone. The build stops with no traceback (a message when the
    process died) and no process left behind, and is not taken for a demo afterwards."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "traction", "demo", "--no-serve", "--data-dir", str(tmp_path),
           "--people", "6000", "--days", "120"]  # fmt: skip
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)  # fmt: skip

    def simulating_child() -> int | None:
        for pid in os.listdir("/proc"):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            if int(stat[1]) == p.pid and b"multiprocessing.spawn" in cmdline:
                return int(pid)
        return None

    deadline = time.monotonic() + 30
    while (child := simulating_child()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert child is not None and p.poll() is None, "the build did not start its process"
    time.sleep(1)
    if stop == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(child, signal.SIGKILL)
    out, _ = p.communicate(timeout=30)
    assert "Traceback" not in out, out
    if stop == "ctrl-c":
        assert p.returncode == 130
    else:
        assert p.returncode == 1 and "the simulation process ended without its world" in out
    assert not Path(f"/proc/{child}").exists()
    again = runner.invoke(app, ["demo", "--no-serve", "--data-dir", str(tmp_path)])
    assert again.exit_code == 1 and "interrupted" in again.stderr
