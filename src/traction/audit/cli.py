"""`traction audit`: the workspace's audit log, as a table or NDJSON."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.table import Table

from traction.cli_access import Local, events_access
from traction.cli_common import DataDir, WorkspaceRef, console

app = typer.Typer(help="Who changed what, and when.", invoke_without_command=True)


@app.callback()
def audit(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest entries to show.")] = 50,
    action: Annotated[
        str | None, typer.Option(help="Only actions starting with this, e.g. key.")
    ] = None,
    ndjson: Annotated[
        bool, typer.Option("--ndjson", help="The whole log, oldest first, as NDJSON.")
    ] = False,
    workspace: WorkspaceRef = None,
    data_dir: DataDir = None,
    url: Annotated[str | None, typer.Option(help="A server's URL (with --key).")] = None,
    key: Annotated[str | None, typer.Option(help="A secret key, with --url.")] = None,
) -> None:
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            log = access.ctx.audit
            if ndjson:
                for e in log.export(access.workspace_id):
                    typer.echo(orjson.dumps(e).decode())
                return
            entries = log.entries(access.workspace_id, limit=limit, action=action)
        else:
            if ndjson:
                with access.client.stream("GET", "/api/v1/audit/export") as r:
                    r.raise_for_status()
                    for line in r.iter_lines():
                        typer.echo(line)
                return
            params: dict[str, str | int] = {"limit": limit}
            if action:
                params["action"] = action
            entries = (
                access.client.get("/api/v1/audit", params=params)
                .raise_for_status()
                .json()["entries"]
            )
    table = Table("When (UTC)", "Who", "What", "On", "Details")
    for e in entries:
        table.add_row(e["at"][:19].replace("T", " "), e["actor"], e["action"], e["target"],
                      orjson.dumps(e["details"]).decode()[:80])  # fmt: skip
    console.print(table)
