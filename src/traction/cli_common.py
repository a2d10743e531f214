"""What every capability's CLI shares: the data-dir option, settings, errors, the workspace
pick, and a StateStore-only opening for commands that must work while a server runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from traction.settings import Settings, load_settings
from traction.store.state import StateStore

console = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default ./traction-data).")
]
WorkspaceRef = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id or name (default: the only one).")
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the changes; save nothing.")]


def settings_for(data_dir: Path | None, **kw: object) -> Settings:
    if data_dir is not None:
        kw["data_dir"] = data_dir
    return load_settings(**kw)


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {message}")
    return typer.Exit(1)


def pick_workspace(spaces: Sequence[Any], ref: str | None) -> str:
    if ref:
        for w in spaces:
            if ref in (w.id, w.name):
                return str(w.id)
        raise fail(f"no workspace {ref!r}; see `traction workspace list`")
    if len(spaces) == 1:
        return str(spaces[0].id)
    if not spaces:
        raise fail("no workspace yet: create one with `traction workspace create NAME`")
    raise fail(f"name the workspace with --workspace (there are {len(spaces)})")


@contextmanager
def state_only(data_dir: Path | None) -> Iterator[StateStore]:
    """The StateStore alone: SQLite allows other processes, so configuration commands work
    whether or not a server holds the event file."""
    settings = settings_for(data_dir)
    settings.ensure_dirs()
    state = StateStore(settings.resolved_state_url)
    state.migrate()
    try:
        yield state
    finally:
        state.dispose()


def keyed_documents(
    doc: Any, file: Path, key: str | None, section: str, marker: str
) -> dict[str, Any]:
    """A file holds one document (its key from --key or the file's name) or several under
    `section:` (key → document); `marker` is a field only a single document has."""
    if isinstance(doc, dict) and isinstance(doc.get(section), dict) and marker not in doc:
        return dict(doc[section])
    return {key or file.stem: doc}


def apply_documents(svc: Any, workspace_id: str, bodies: dict[str, Any], *, dry_run: bool,
                    invalid: type[Exception], file: Path, noun: str) -> None:  # fmt: skip
    """`traction <things> apply`: the plan shown, then every document saved or none (bad
    input exits 2 naming the file, the document and the place)."""
    try:
        show_plan(svc.plan(workspace_id, bodies))
        if not dry_run:
            svc.apply(workspace_id, bodies)
    except invalid as e:
        err.print(f"[bold red]Error:[/] {file}: {e}")
        raise typer.Exit(2) from None
    err.print(
        "[dim]dry run: nothing saved[/]"
        if dry_run
        else f"[green]{len(bodies)} {noun}(s) applied.[/]"
    )


def show_plan(plan: list[dict[str, Any]]) -> None:
    """What an `apply` would change: each document's key, create/update/none, and its diff."""
    import json

    for change in plan:
        err.print(f"[bold]{change['key']}[/]: {change['change']}")
        for d in change["diff"][:40]:
            before = json.dumps(d["before"]) if "before" in d else "—"
            after = json.dumps(d["after"]) if "after" in d else "—"
            err.print(f"  {d['path']}: {before} → {after}")
