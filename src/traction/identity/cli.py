"""`traction person …`: one person's data, for access and portability requests. Works with
or without a server on the data dir (see `cli_access`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from traction.cli_access import Local, events_access
from traction.cli_common import DataDir, WorkspaceRef, err, fail

app = typer.Typer(help="People: export what is stored about someone.", no_args_is_help=True)


@app.command("export")
def export(
    who: Annotated[str, typer.Argument(help="Their user id, an anonymous id, or a person id.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    workspace: WorkspaceRef = None,
    data_dir: DataDir = None,
    url: Annotated[str | None, typer.Option(help="A server's URL (with --key).")] = None,
    key: Annotated[str | None, typer.Option(help="A secret key, with --url.")] = None,
) -> None:
    """Everything stored about a person as NDJSON: the person, then every event."""
    out = output.open("wb") if output else sys.stdout.buffer
    n = 0
    try:
        with events_access(data_dir, workspace, url, key) as access:
            if isinstance(access, Local):
                persons = access.ctx.persons
                view = persons.by_distinct_id(access.workspace_id, who) or persons.get(
                    access.workspace_id, who
                )
                lines = persons.export(access.workspace_id, view.id) if view else None
                if lines is None:
                    raise fail(f"no person known as {who!r} in this workspace")
                for line in lines:
                    out.write(line)
                    n += 1
            else:
                found = access.client.get("/api/v1/persons", params={"distinct_id": who})
                pid = found.json()["id"] if found.status_code == 200 else who
                with access.client.stream("GET", f"/api/v1/persons/{pid}/export") as r:
                    if r.status_code == 404:
                        raise fail(f"no person known as {who!r} in this workspace")
                    r.raise_for_status()
                    for text in r.iter_lines():
                        out.write(text.encode() + b"\n")
                        n += 1
    finally:
        if output:
            out.close()
    err.print(
        f"[green]{max(0, n - 1):,} events[/] and the person's profile exported"
        + (f" to {output}" if output else "")
    )
