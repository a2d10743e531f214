"""Every command the README and docs show runs the same with a server up on the data dir
(a real `traction serve` in another process) and with none: configuration commands share the
StateStore; commands that read or write events go through the server's API."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tests.conftest import free_port, wait_healthy
from traction.analytics.domain.kpis import CATALOG
from traction.cli import app
from traction.cli_access import SERVER_FILE

runner = CliRunner()
FUNNEL = {"steps": [{"event": "signed_up"}, {"event": "project_created"}], "range": {"date_from": "2026-03-01", "date_to": "2026-03-31"}}  # fmt: skip


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, f"{args}: {r.output}"
    return r.stdout


def seed(data: Path) -> str:
    """A workspace with a few events, made with no server running."""
    info = json.loads(cli("workspace", "create", "Acme", "--data-dir", str(data), "--json"))
    events = data / "events.ndjson"
    events.write_bytes(b"\n".join(orjson.dumps(m) for m in [
        {"type": "track", "userId": "u1", "event": "signed_up", "timestamp": "2026-03-02T10:00:00Z", "messageId": "s1"},
        {"type": "track", "userId": "u1", "event": "project_created", "timestamp": "2026-03-02T11:00:00Z", "messageId": "s2"},
        {"type": "track", "userId": "u2", "event": "signed_up", "timestamp": "2026-03-03T10:00:00Z", "messageId": "s3"},
    ]))  # fmt: skip
    cli("import", str(events), "--data-dir", str(data))
    return str(info["id"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str, str]]:
    data = tmp_path / "data"
    ws = seed(data)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "traction.cli", "serve", "--port", str(port), "--data-dir", str(data), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        assert json.loads((data / SERVER_FILE).read_text())["url"] == url
        yield data, ws, url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not (data / SERVER_FILE).exists()  # it cleans up after itself


def run_the_documented_commands(data: Path, ws: str) -> None:
    d = ("--data-dir", str(data))
    # configuration: the StateStore only
    cli("workspace", "create", "Beta", "--owner", "pat@acme.io", "--password", "s3cret-pass", *d)
    cli("user", "add", "sam@acme.io", "--workspace", "Acme", "--role", "member", "--password", "s3cret-pass", *d)  # fmt: skip
    cli(
        "user", "create", "pat@acme.io", "--workspace", "Acme", *d
    )  # an existing user: access added
    listed = cli("workspace", "list", *d)
    assert "pat@acme.io (admin)" in listed and "sam@acme.io (member)" in listed
    assert "Beta (admin)" in cli("user", "list", *d)
    cli("workspace", "configure", "--workspace", "Acme", "--timezone", "UTC", *d)
    cli("catalog", "events", "--workspace", "Acme", *d)
    cli("catalog", "properties", "--workspace", "Acme", *d)
    # events: here or through the server
    more = data / "more.ndjson"
    more.write_bytes(orjson.dumps({"type": "track", "userId": "u2", "event": "project_created",
                                   "timestamp": "2026-03-03T12:00:00Z", "messageId": "m1"}))  # fmt: skip
    assert "1 events imported" in cli("import", str(more), "--workspace", "Acme", *d)
    funnel = json.loads(
        cli("insight", "funnel", "--spec", json.dumps(FUNNEL), "--workspace", "Acme", "--json", *d)
    )
    assert [s["entered"] for s in funnel["steps"]] == [2, 2]
    report = json.loads(
        cli(
            "report",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-31",
            "--workspace",
            "Acme",
            "--json",
            *d,
        )
    )
    assert len(report["kpis"]) == len(CATALOG) and report["from"] == "2026-03-01"
    rates = {k["key"]: k["value"] for k in report["kpis"]}
    assert rates["trial_signup_rate"] == 0.0  # two sign-ups, no trial
    default = json.loads(cli("report", "--workspace", "Acme", "--json", *d))
    assert default["to"] == "2026-03-03"  # the latest event's day, as on the dashboard
    exported = [
        json.loads(line)
        for line in cli("person", "export", "u1", "--workspace", "Acme", *d).splitlines()
    ]
    assert exported[0]["type"] == "person" and [e["name"] for e in exported[1:]] == [
        "signed_up",
        "project_created",
    ]
    # segments: definitions in the StateStore, members from the events (through the server)
    seg = data / "signed-up.yaml"
    seg.write_text('{"performed": [{"event": {"event": "signed_up"}, "within_days": 1830}]}')
    cli("segments", "apply", str(seg), "--workspace", "Acme", *d)
    assert "2 members (2 entered, 0 left)" in cli(
        "segments", "refresh", "signed-up", "--workspace", "Acme", *d
    )
    members = json.loads(
        cli("segments", "members", "signed-up", "--json", "--workspace", "Acme", *d)
    )
    assert sorted(m["id"] for m in members["members"]) == ["u1", "u2"]
    assert json.loads(cli("segments", "list", "--json", "--workspace", "Acme", *d))[0]["size"] == 2
    # billing, privacy and the audit log
    catalog = Path(__file__).parent.parent / "src/traction/billing/example_catalog.yaml"
    cli("plans", "apply", str(catalog), "--yes", "--workspace", "Acme", *d)
    assert json.loads(cli("plans", "show", "--json", "--workspace", "Acme", *d))[0]["key"] == "free"
    cli("subscriptions", "start", "acme", "pro", "--no-trial", "--workspace", "Acme", *d)
    assert json.loads(cli("usage", "acme", "--json", "--workspace", "Acme", *d))["plan"] == "pro"
    cli("person", "delete", "u2", "--yes", "--workspace", "Acme", *d)
    cli("privacy", "show", "--workspace", "Acme", *d)
    cli("privacy", "purge", "--workspace", "Acme", *d)
    actions = [
        json.loads(x)["action"]
        for x in cli("audit", "--ndjson", "--workspace", "Acme", *d).splitlines()
    ]
    assert "person.deleted" in actions and "catalog.applied" in actions
    assert "events" in cli("simulate", "--people", "30", "--days", "3", "--workspace", "Sim", *d)
    assert "Sim" in cli("workspace", "list", *d)


def test_every_documented_command_runs_with_a_server_up(served: tuple[Path, str, str]) -> None:
    data, ws, url = served
    run_the_documented_commands(data, ws)
    # the CLI's temporary keys are gone again
    from traction.store.state import StateStore
    from traction.workspaces.service import WorkspaceService

    state = StateStore(f"sqlite:///{data / 'state.db'}")
    try:
        names = [k.name for k in WorkspaceService(state).list_keys(ws)]
    finally:
        state.dispose()
    assert not any("temporary" in n for n in names)
    # demo refuses clearly rather than fighting the server for the file
    r = runner.invoke(app, ["demo", "--no-serve", "--data-dir", str(data)])
    assert r.exit_code == 1 and "already runs" in r.stderr and url in r.stderr


def test_every_documented_command_runs_with_no_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ws = seed(data)
    run_the_documented_commands(data, ws)


def test_clean_errors_instead_of_tracebacks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed(data)
    r = runner.invoke(
        app, ["insight", "funnel", "--spec", "@missing.json", "--data-dir", str(data)]
    )
    assert r.exit_code == 1 and "cannot read the spec file missing.json" in r.stderr
    r = runner.invoke(app, ["report", "--from", "2026-13-01", "--data-dir", str(data)])
    assert r.exit_code == 1 and "bad dates" in r.stderr
    r = runner.invoke(
        app, ["user", "add", "x@acme.io", "--workspace", "Nope", "--data-dir", str(data)]
    )
    assert r.exit_code == 1 and "no workspace 'Nope'" in r.stderr
    r = runner.invoke(
        app,
        [
            "user",
            "add",
            "x@acme.io",
            "--workspace",
            "Acme",
            "--role",
            "owner",
            "--data-dir",
            str(data),
        ],
    )
    assert r.exit_code == 1 and "--role must be one of admin, member" in r.stderr


SPECS = {
    "funnel": (FUNNEL, "Funnel"),
    "trend": ({"series": [{"event": {"event": "signed_up"}}], "range": FUNNEL["range"]}, "Trend"),
    "retention": ({"range": FUNNEL["range"], "periods": 2}, "Retention by week"),
    "activation": ({"start_event": {"event": "signed_up"}, "criteria": {"all": [{"event": {"event": "project_created"}}]}, "range": FUNNEL["range"]}, "TTFV median 1.0 h"),
    "sessions": ({"range": FUNNEL["range"]}, "Sessions: 3 begun"),
    "active-users": ({"range": FUNNEL["range"]}, "stickiness"),
    "lifecycle": ({"range": FUNNEL["range"]}, "Lifecycle"),
    "feature-adoption": ({"range": FUNNEL["range"], "features": [{"event": "project_created"}]}, "2 active, 50.0% used any"),
}  # fmt: skip


def test_every_insight_kind_prints_a_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed(data)
    for kind, (spec, title) in SPECS.items():
        out = runner.invoke(
            app,
            ["insight", kind, "--spec", json.dumps(spec), "--data-dir", str(data)],
            terminal_width=200,
        )
        assert out.exit_code == 0 and title in out.stdout, (kind, out.output)
