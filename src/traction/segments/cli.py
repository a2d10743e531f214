"""`traction segments apply|list|members|refresh`. Definitions live in the StateStore, so
`apply` and `list` work while a server runs; `refresh` and `members` read the event log, so
they go through the server when one holds the data dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from traction.billing.cli import AsJson, bad_input, read_document
from traction.cli_common import (
    DataDir,
    DryRun,
    WorkspaceRef,
    apply_documents,
    console,
    keyed_documents,
    pick_workspace,
    state_only,
)
from traction.segments.domain import SegmentError
from traction.workspaces.service import WorkspaceService

segments_app = typer.Typer(help="Segments: saved audiences.", no_args_is_help=True)


def _documents(file: Path, key: str | None) -> dict[str, Any]:
    return keyed_documents(read_document(file), file, key, "segments", "traits")


@segments_app.command("apply")
def apply(
    file: Annotated[
        Path, typer.Argument(help="YAML or JSON: one segment, or several under `segments:`.")
    ],
    key: Annotated[
        str | None, typer.Option(help="The segment's key (default: the file's name).")
    ] = None,
    dry_run: DryRun = False,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Create or replace segments: the diff is shown, then all are saved or none (exit 2
    naming the problem and where it is). Members follow at the next refresh."""
    from traction.segments.service import SegmentService

    bodies = _documents(file, key)
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        apply_documents(SegmentService(state, None, None), ws, bodies, dry_run=dry_run, invalid=SegmentError, file=file,
                        noun="segment")  # fmt: skip


@segments_app.command("list")
def list_segments(
    data_dir: DataDir = None, workspace: WorkspaceRef = None, as_json: AsJson = False
) -> None:
    """Every segment with its size at the last refresh."""
    from traction.segments.service import SegmentService

    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        rows = SegmentService(state, None, None).segments(ws)
    if as_json:
        print(json.dumps(rows))
        return
    t = Table("segment", "name", "members", "refreshed")
    for s in rows:
        t.add_row(
            s["key"], s.get("name", ""), f"{s['size']:,}", (s["refreshed_at"] or "not yet")[:16]
        )
    console.print(t if rows else "No segments yet: `traction segments apply FILE`.")


@segments_app.command("refresh")
def refresh(
    key: Annotated[str, typer.Argument(help="The segment's key.")],
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    as_json: AsJson = False,
) -> None:
    """Recompute the members now; who entered and who left become events."""
    from traction.cli_access import read_or_call
    from traction.segments.service import NotFound

    r = read_or_call(data_dir, workspace, f"/api/v1/segments/{key}/refresh",
                     lambda ctx, ws: ctx.segments.refresh(ws, key), (NotFound, SegmentError), post={})  # fmt: skip
    if as_json:
        print(json.dumps(r))
        return
    console.print(
        f"[bold]{key}[/]: {r['size']:,} members ({r['entered']:,} entered, {r['left']:,} left)"
    )


@segments_app.command("members")
def members(
    key: Annotated[str, typer.Argument(help="The segment's key.")],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    as_json: AsJson = False,
) -> None:
    """The members as of the last refresh, newest first."""
    from traction.segments.service import NotFound, SegmentService

    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        try:
            r = SegmentService(state, None, None).members(ws, key, limit=limit, offset=offset)
        except NotFound as e:
            raise bad_input(str(e)) from None
    if as_json:
        print(json.dumps(r))
        return
    t = Table("person", "member since", title=f"{key}: {r['total']:,} members")
    for m in r["members"]:
        t.add_row(m["id"], m["entered_at"][:16])
    console.print(t)
