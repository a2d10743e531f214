"""`traction workspace …` and `traction user …`: configuration only, so they open the
StateStore alone and work whether or not a server runs on the data dir."""

from __future__ import annotations

import getpass
import json
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from traction.cli_common import (
    DataDir,
    WorkspaceRef,
    console,
    err,
    fail,
    pick_workspace,
    state_only,
)
from traction.workspaces.domain import ROLES
from traction.workspaces.service import WorkspaceService

workspace_app = typer.Typer(help="Workspaces, their keys and members.", no_args_is_help=True)
user_app = typer.Typer(help="Dashboard users and their access.", no_args_is_help=True)
RoleOption = Annotated[
    str,
    typer.Option(help="admin (everything, keys included) or member (no keys, members, settings)."),
]


def _password(given: str | None, email: str) -> tuple[str, bool]:
    """The password for a new user: given, typed at a terminal, or made up and shown once."""
    if given is not None:
        return given, False
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {email} (8+ characters): "), False
    return secrets.token_urlsafe(12), True


def _grant(
    svc: WorkspaceService, email: str, workspace_ids: list[str], role: str, password: str | None
) -> str:
    """Give `email` access to the workspaces, creating the user if needed; says what it did."""
    if role not in ROLES:
        raise fail(f"--role must be one of {', '.join(ROLES)}")
    try:
        if svc.find_user(email) is not None:
            for ws in workspace_ids:
                svc.add_member(email, ws, role)  # type: ignore[arg-type]
            return f"{email} (existing user) is {role} in {len(workspace_ids)} workspace(s)."
        chosen, made_up = _password(password, email)
        svc.create_user(email, chosen, workspace_ids, role)  # type: ignore[arg-type]
    except ValueError as e:
        raise fail(str(e)) from None
    note = f" Password: [bold]{chosen}[/] (shown once; change it by logging in)." if made_up else ""
    return f"User {email} created, {role} in {len(workspace_ids)} workspace(s).{note}"


@workspace_app.command("create")
def workspace_create(
    name: str,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    owner: Annotated[
        str | None,
        typer.Option(
            help="Email of the admin to grant access (created if new; offered when omitted)."
        ),
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="The owner's password, if the owner is a new user.")
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="IANA time zone for day/week/month boundaries.")
    ] = "UTC",
) -> None:
    """Create a workspace; prints its id, public write key and secret (admin) key."""
    with state_only(data_dir) as state:
        svc = WorkspaceService(state)
        if owner is None and sys.stdin.isatty() and not as_json:
            users = svc.list_users()
            offered = users[0][0].email if users else ""
            owner = typer.prompt(
                "Who may open it in the dashboard? (email; empty: nobody yet)",
                default=offered, show_default=bool(offered),
            ).strip() or None  # fmt: skip
        try:
            created = svc.create_workspace(name, timezone)
        except ValueError as e:
            raise fail(str(e)) from None
        granted = _grant(svc, owner, [created.id], "admin", password) if owner else None
        from traction.flags.service import FlagService  # flags: one client key per environment

        sdk_keys = {k["environment"]: k["key"] for k in FlagService(state).sdk_keys(created.id)}
    if as_json:
        print(json.dumps({"id": created.id, "name": created.name, "write_key": created.write_key,
                          "secret_key": created.secret_key, "sdk_keys": sdk_keys, "owner": owner}))  # fmt: skip
        return
    t = Table(show_header=False)
    t.add_row("workspace id", created.id)
    t.add_row("write key (public: ingest only)", created.write_key)
    t.add_row("secret key (admin: keep it secret)", created.secret_key)
    for env, key in sdk_keys.items():
        t.add_row(f"SDK client key, {env} (public: reads flags)", key)
    console.print(t)
    console.print("[dim]Keys are stored hashed; they are not shown again.[/]")
    if granted:
        console.print(granted)
    else:
        err.print(
            f"Nobody can open it in the dashboard yet: `traction user add EMAIL --workspace {created.id}`."
        )


@workspace_app.command("list")
def workspace_list(data_dir: DataDir = None) -> None:
    """List workspaces and who may open them."""
    with state_only(data_dir) as state:
        svc = WorkspaceService(state)
        t = Table("id", "name", "time zone", "members")
        for w in svc.list_workspaces():
            people = ", ".join(f"{u.email} ({role})" for u, role in svc.members(w.id))
            t.add_row(w.id, w.name, w.timezone, people or "[dim]none[/]")
    console.print(t)


@workspace_app.command("configure")
def workspace_configure(
    workspace: WorkspaceRef = None,
    data_dir: DataDir = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone for day/week/month boundaries.")
    ] = None,
    kpi_config: Annotated[
        str | None,
        typer.Option("--kpi-config", help="KPI event configuration as JSON or @file.json."),
    ] = None,
) -> None:
    """Set a workspace's time zone and which events its KPIs read; prints the result."""
    from pydantic import ValidationError

    from traction.analytics.domain.specs import SPEC_KINDS
    from traction.analytics.saved import SavedInsights
    from traction.validation import describe

    with state_only(data_dir) as state:
        svc = WorkspaceService(state)
        saved = SavedInsights(state, dict(SPEC_KINDS))
        ws = pick_workspace(svc.list_workspaces(), workspace)
        try:
            if timezone:
                svc.update_workspace(ws, timezone=timezone)
            if kpi_config:
                text = (
                    Path(kpi_config[1:]).read_text() if kpi_config.startswith("@") else kpi_config
                )
                saved.set_kpi_config(ws, json.loads(text))
        except ValidationError as e:
            raise fail(describe(e)) from None
        except OSError as e:
            raise fail(
                f"cannot read {kpi_config[1:] if kpi_config else ''}: {e.strerror}"
            ) from None
        except (ValueError, json.JSONDecodeError) as e:
            raise fail(str(e)) from None
        current = svc.get_workspace(ws)
        config = saved.kpi_config(ws)
    assert current is not None
    console.print(f"[bold]{current.name}[/] ({current.id}), time zone [bold]{current.timezone}[/]")
    console.print_json(data=config.model_dump(mode="json"))


@user_app.command("add")
def user_add(
    email: str,
    workspace: Annotated[list[str], typer.Option(help="Workspace id or name (repeatable).")],
    role: RoleOption = "member",
    password: Annotated[
        str | None, typer.Option(help="Password, if the user is new (prompted, or made up).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Give someone access to a workspace with a role; creates the user if they are new."""
    with state_only(data_dir) as state:
        svc = WorkspaceService(state)
        spaces = svc.list_workspaces()
        ids = [pick_workspace(spaces, ref) for ref in workspace]
        console.print(_grant(svc, email, ids, role, password))


@user_app.command("create")
def user_create(
    email: str,
    data_dir: DataDir = None,
    workspace: Annotated[
        list[str] | None,
        typer.Option(help="Workspace id or name to join (repeatable; default: all)."),
    ] = None,
    role: RoleOption = "admin",
    password: Annotated[str | None, typer.Option(help="Password (prompted if omitted).")] = None,
) -> None:
    """Create a dashboard user (argon2-hashed password); an existing user is given the access."""
    with state_only(data_dir) as state:
        svc = WorkspaceService(state)
        spaces = svc.list_workspaces()
        ids = (
            [pick_workspace(spaces, ref) for ref in workspace]
            if workspace
            else [w.id for w in spaces]
        )
        console.print(_grant(svc, email, ids, role, password))


@user_app.command("list")
def user_list(data_dir: DataDir = None) -> None:
    """Dashboard users and the workspaces each may open."""
    with state_only(data_dir) as state:
        svc = WorkspaceService(state)
        names = {w.id: w.name for w in svc.list_workspaces()}
        t = Table("email", "workspaces (role)")
        for user, access in svc.list_users():
            t.add_row(
                user.email,
                ", ".join(f"{names.get(ws, ws)} ({role})" for ws, role in access) or "[dim]none[/]",
            )
    console.print(t)
