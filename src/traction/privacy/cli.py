"""`traction person export|delete` (access, portability and erasure requests), `traction
privacy show|set|purge` and `traction audit`. Each works with or without a server on the
data dir (see `cli_access`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer
from pydantic import ValidationError

from traction.cli_access import Local, events_access
from traction.cli_common import DataDir, WorkspaceRef, console, err, fail
from traction.privacy.domain import PrivacyPolicy
from traction.privacy.service import NoSuchPerson
from traction.validation import describe

app = typer.Typer(
    help="People: export or erase what is stored about someone.", no_args_is_help=True
)
privacy_app = typer.Typer(
    help="The workspace's privacy policy, and purging deleted data.", no_args_is_help=True
)
Url = Annotated[str | None, typer.Option(help="A server's URL (with --key).")]
Key = Annotated[str | None, typer.Option(help="A secret key, with --url.")]


@app.command("export")
def export(
    who: Annotated[str, typer.Argument(help="Their user id, an anonymous id, or a person id.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    workspace: WorkspaceRef = None,
    data_dir: DataDir = None,
    url: Url = None,
    key: Key = None,
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
                privacy = access.ctx.privacy
                lines = privacy.export_person(access.workspace_id, view.id) if view else None
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


@app.command("delete")
def delete(
    who: Annotated[str, typer.Argument(help="Their user id, an anonymous id, or a person id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    workspace: WorkspaceRef = None,
    data_dir: DataDir = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Erase a person: their events (and those of every id merged into them), ids, traits
    and memberships. Cannot be undone; the bytes leave the disk at the next purge."""
    if not yes and not typer.confirm(f"Erase everything stored about {who!r}?"):
        raise typer.Exit(1)
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            try:
                done = access.ctx.privacy.delete_person(access.workspace_id, who).as_dict()
            except NoSuchPerson:
                raise fail(f"no person known as {who!r} in this workspace") from None
        else:
            r = access.client.delete(f"/api/v1/persons/{quote(who, safe='')}")
            if r.status_code == 404:
                raise fail(f"no person known as {who!r} in this workspace")
            r.raise_for_status()
            done = r.json()
    err.print(
        f"[green]Erased[/] {done['events']:,} events, {done['distinct_ids']} ids and "
        f"{done['person_ids']} person record(s). "
        + ("Their ids are suppressed. " if done["suppressed"] else "")
        + "The bytes leave the event file at the next purge (`traction privacy purge`)."
    )


@privacy_app.command("show")
def show(
    workspace: WorkspaceRef = None, data_dir: DataDir = None, url: Url = None, key: Key = None
) -> None:
    """The workspace's privacy policy as JSON."""
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            policy = access.ctx.privacy.policy(access.workspace_id).model_dump()
        else:
            policy = access.client.get("/api/v1/privacy").raise_for_status().json()
    console.print_json(data=policy)


@privacy_app.command("set")
def set_policy(
    file: Annotated[Path, typer.Argument(help="A JSON file with the whole policy (see `show`).")],
    workspace: WorkspaceRef = None,
    data_dir: DataDir = None,
    url: Url = None,
    key: Key = None,
) -> None:
    """Replace the privacy policy: consent, retention, suppression of erased ids."""
    try:
        policy = PrivacyPolicy.model_validate_json(file.read_bytes())
    except OSError as e:
        raise fail(f"cannot read {file}: {e.strerror}") from None
    except ValidationError as e:
        raise fail(f"{file}: {describe(e)}") from None
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            access.ctx.privacy.set_policy(access.workspace_id, policy)
        else:
            access.client.put("/api/v1/privacy", json=policy.model_dump()).raise_for_status()
    err.print("[green]Privacy policy saved.[/]")


@privacy_app.command("purge")
def purge(
    data_dir: DataDir = None, workspace: WorkspaceRef = None, url: Url = None, key: Key = None
) -> None:
    """Rewrite the event file now so deleted events leave the disk (the server does it on
    its maintenance schedule)."""
    with events_access(data_dir, workspace, url, key) as access:
        if isinstance(access, Local):
            if not access.ctx.events.pending_purge():
                err.print("Nothing to purge: no deletion is waiting.")
                return
            with err.status("Rewriting the event file…"):
                r = access.ctx.privacy.purge()
            before, after, seconds = r.bytes_before, r.bytes_after, r.seconds
        else:
            body = (
                access.client.post("/api/v1/privacy/purge", timeout=600).raise_for_status().json()
            )
            if not body["purged"]:
                err.print("Nothing to purge: no deletion is waiting.")
                return
            before, after, seconds = body["bytes_before"], body["bytes_after"], body["seconds"]
    err.print(
        f"[green]Purged[/] in {seconds:.1f} s: {before / 1e6:,.1f} MB → {after / 1e6:,.1f} MB."
    )
