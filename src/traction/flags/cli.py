"""`traction flags list|show|apply|delete|toggle|history|keys`. Flags live in the StateStore,
so these work while a server runs (its SDK payloads change at once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from traction.billing.cli import AsJson, bad_input, read_document
from traction.cli_common import DataDir, WorkspaceRef, console, err, pick_workspace, state_only
from traction.flags.domain.flags import FlagError
from traction.flags.service import FlagService, NotFound
from traction.workspaces.service import WorkspaceService

flags_app = typer.Typer(
    help="Feature flags: rules per environment, SDK keys.", no_args_is_help=True
)
Key = Annotated[str, typer.Argument(help="The flag's key.")]


def _ws(state: Any, workspace: str | None) -> str:
    return pick_workspace(WorkspaceService(state).list_workspaces(), workspace)


@flags_app.command("list")
def list_flags(
    data_dir: DataDir = None, workspace: WorkspaceRef = None, as_json: AsJson = False
) -> None:
    """Every flag: type, default, and per environment on/off and its number of rules."""
    with state_only(data_dir) as state:
        flags = FlagService(state).flags(_ws(state, workspace))
    if as_json:
        print(json.dumps(flags))
        return
    t = Table("flag", "type", "default", "environments", "version", "updated")
    for f in flags:
        envs = ", ".join(f"{n} {'on' if e['enabled'] else 'OFF'} ({len(e['rules'])} rules)"
                         for n, e in f["environments"].items())  # fmt: skip
        t.add_row(f["key"], f["value_type"], json.dumps(f["default_value"]), envs or "—",
                  str(f["version"]), f["updated_at"][:19])  # fmt: skip
    console.print(t if flags else "No flags yet: `traction flags apply KEY FILE`.")


@flags_app.command("show")
def show(key: Key, data_dir: DataDir = None, workspace: WorkspaceRef = None) -> None:
    """The flag as stored (JSON)."""
    with state_only(data_dir) as state:
        try:
            print(json.dumps(FlagService(state).get(_ws(state, workspace), key), indent=2))
        except NotFound as e:
            raise bad_input(str(e)) from None


@flags_app.command("apply")
def apply(
    key: Key,
    file: Annotated[
        Path, typer.Argument(help="The flag: YAML or JSON, as `PUT /api/v1/flags/KEY` takes.")
    ],
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Create or replace a flag, all or nothing (exit 2 naming the problem)."""
    document = read_document(file)
    with state_only(data_dir) as state:
        try:
            flag, created = FlagService(state).put(_ws(state, workspace), key, document)
        except FlagError as e:
            raise bad_input(f"{file}: {e}") from None
    err.print(
        f"[green]{key}[/] {'created' if created else 'now at version ' + str(flag['version'])}."
    )


@flags_app.command("toggle")
def toggle(
    key: Key,
    environment: Annotated[str, typer.Argument(help="development, production, ...")],
    on: Annotated[bool, typer.Option("--on/--off", help="The kill switch.")] = True,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Switch a flag on or off in one environment (its rules kept)."""
    with state_only(data_dir) as state:
        try:
            FlagService(state).set_enabled(_ws(state, workspace), key, environment, on)
        except (NotFound, FlagError) as e:
            raise bad_input(str(e)) from None
    err.print(f"[green]{key}[/] is {'on' if on else 'off'} in {environment}.")


@flags_app.command("delete")
def delete(key: Key, data_dir: DataDir = None, workspace: WorkspaceRef = None) -> None:
    with state_only(data_dir) as state:
        try:
            FlagService(state).delete(_ws(state, workspace), key)
        except NotFound as e:
            raise bad_input(str(e)) from None
    err.print(f"[green]{key}[/] deleted (its history is kept).")


@flags_app.command("history")
def history(
    key: Key, data_dir: DataDir = None, workspace: WorkspaceRef = None, as_json: AsJson = False
) -> None:
    """Every change: who, when, what (newest first)."""
    with state_only(data_dir) as state:
        rows = FlagService(state).history(_ws(state, workspace), key)
    if as_json:
        print(json.dumps(rows))
        return
    t = Table("version", "when", "who", "change", "what")
    for h in rows:
        what = "; ".join(f"{d['path']}: {json.dumps(d.get('before'))} → {json.dumps(d.get('after'))}"
                         for d in h["diff"][:6]) if h["change"] == "updated" else ""  # fmt: skip
        t.add_row(str(h["version"]), h["at"][:19], h["actor"] or "—", h["change"], what)
    console.print(t if rows else f"No history for {key!r}.")


@flags_app.command("keys")
def keys(data_dir: DataDir = None, workspace: WorkspaceRef = None, as_json: AsJson = False) -> None:
    """The public SDK client keys, one per environment (for GrowthBook SDKs' `clientKey`)."""
    with state_only(data_dir) as state:
        rows = FlagService(state).sdk_keys(_ws(state, workspace))
    if as_json:
        print(json.dumps(rows))
        return
    t = Table("environment", "client key", "encrypted")
    for k in rows:
        t.add_row(k["environment"], k["key"], "yes" if k["encrypted"] else "no")
    console.print(t)
