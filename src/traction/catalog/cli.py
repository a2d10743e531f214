"""`traction catalog`: the events and properties a workspace has received. Reads the
StateStore only, so it works while a server runs."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from traction.catalog.service import CatalogService
from traction.cli_common import DataDir, WorkspaceRef, console, fail, pick_workspace, state_only
from traction.workspaces.service import WorkspaceService

app = typer.Typer(help="The event and property catalog.", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="JSON, for scripts.")]


@app.command("events")
def events(
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    search: Annotated[str | None, typer.Option("--search", help="Part of the name.")] = None,
    as_json: AsJson = False,
) -> None:
    """Every event name received, by volume."""
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        rows = CatalogService(state).events(ws, q=search)
    if as_json:
        print(json.dumps(rows))
        return
    t = Table("event", "volume", "first seen", "last seen", "verified", "description")
    for r in rows:
        t.add_row(
            r["name"] + (" [dim](hidden)[/]" if r["hidden"] else ""),
            f"{r['volume']:,}",
            (r["first_seen_at"] or "")[:16].replace("T", " "),
            (r["last_seen_at"] or "")[:16].replace("T", " "),
            "✓" if r["verified"] else "",
            r["description"],
        )
    console.print(t if rows else "No events yet.")


@app.command("properties")
def properties(
    event: Annotated[str | None, typer.Option(help="One event's properties.")] = None,
    source: Annotated[str, typer.Option(help="event, person or account.")] = "event",
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    as_json: AsJson = False,
) -> None:
    """Properties of events (all, or one event's), or person or account traits, with their
    types and most frequent values."""
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        catalog = CatalogService(state)
        try:
            rows = catalog.properties(ws, source=source, event=event)
        except ValueError as e:
            raise fail(str(e)) from None
        for r in rows:
            r["values"] = catalog.values(ws, r["name"], source=source, event=event, limit=5)
    if as_json:
        print(json.dumps(rows))
        return
    t = Table("property", "type", "seen", "top values")
    for r in rows:
        top = ", ".join(f"{v['value']} ({v['count']:,})" for v in r["values"])
        t.add_row(r["name"], r["type"], f"{r['count']:,}", top)
    console.print(t if rows else "No properties yet.")


@app.command("describe")
def describe_event(
    event: Annotated[str, typer.Argument(help="The event name.")],
    description: Annotated[str | None, typer.Option(help="What it means.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeat for several).")] = None,
    verified: Annotated[bool | None, typer.Option("--verified/--unverified")] = None,
    hidden: Annotated[bool | None, typer.Option("--hidden/--shown")] = None,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Annotate an event: description, tags, verified, hidden."""
    from traction.catalog.service import UnknownEntry

    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        try:
            row = CatalogService(state).update_event(
                ws, event, description=description, tags=tag, verified=verified, hidden=hidden
            )
        except UnknownEntry as e:
            raise fail(f"{e}; see `traction catalog events`") from None
    console.print(f"[green]Saved[/] {row['name']}: {row['description'] or '(no description)'}")
