"""`traction journeys apply|list|stats|work`. Definitions live in the StateStore, so `apply`
and `list` work while a server runs; `work` is a worker of its own (scaled out: run several)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from traction.billing.cli import AsJson, read_document
from traction.cli_common import (
    DataDir,
    DryRun,
    WorkspaceRef,
    apply_documents,
    console,
    keyed_documents,
    pick_workspace,
    settings_for,
    state_only,
)
from traction.engage.domain.journeys import JourneyError
from traction.workspaces.service import WorkspaceService

journeys_app = typer.Typer(help="Journeys: triggers, messages, holdouts.", no_args_is_help=True)


def _svc(state: Any) -> Any:
    from traction.catalog.service import CatalogService
    from traction.engage.links import Links
    from traction.engage.service import EngageService

    return EngageService(state, None, None, Links("", ""), CatalogService(state))


def _documents(file: Path, key: str | None) -> dict[str, Any]:
    return keyed_documents(read_document(file), file, key, "journeys", "trigger")


@journeys_app.command("apply")
def apply(
    file: Annotated[
        Path, typer.Argument(help="YAML or JSON: one journey, or several under `journeys:`.")
    ],
    key: Annotated[
        str | None, typer.Option(help="The journey's key (default: the file's name).")
    ] = None,
    dry_run: DryRun = False,
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Create or replace journeys: the diff is shown, then all are saved or none (exit 2
    naming the problem and where it is)."""
    bodies = _documents(file, key)
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        apply_documents(_svc(state), ws, bodies, dry_run=dry_run, invalid=JourneyError, file=file,
                        noun="journey")  # fmt: skip


@journeys_app.command("list")
def list_journeys(
    data_dir: DataDir = None, workspace: WorkspaceRef = None, as_json: AsJson = False
) -> None:
    """Every journey: trigger, steps, holdout, entries."""
    with state_only(data_dir) as state:
        ws = pick_workspace(WorkspaceService(state).list_workspaces(), workspace)
        svc = _svc(state)
        rows = [(j, svc.stats(ws, j["key"])) for j in svc.journeys(ws)]
    if as_json:
        print(json.dumps([{**j, "stats": s} for j, s in rows], default=str))
        return
    t = Table("journey", "trigger", "steps", "holdout", "entered", "active", "goal")
    for j, s in rows:
        t.add_row(j["key"], j["trigger_label"], str(len(j["steps"])), f"{j.get('holdout', 0):.0%}",
                  f"{s['entered']:,}", f"{s['active']:,}", f"{s['reached_goal']:,}")  # fmt: skip
    console.print(t if rows else "No journeys yet: `traction journeys apply FILE`.")


@journeys_app.command("stats")
def stats(
    key: Annotated[str, typer.Argument(help="The journey's key.")],
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    as_json: AsJson = False,
) -> None:
    """Entries, messages by step and status, and the goal's lift over the holdout."""
    from traction.cli_access import read_or_call
    from traction.engage.service import NotFound

    s = read_or_call(data_dir, workspace, f"/api/v1/journeys/{key}/stats",
                     lambda ctx, ws: ctx.engage.stats(ws, key), (NotFound,))  # fmt: skip
    if as_json:
        print(json.dumps(s, default=str))
        return
    console.print(
        f"[bold]{key}[/]: entered {s['entered']:,}, active {s['active']:,}, reached the goal {s['reached_goal']:,}"
    )
    for arm, by in s["entries"].items():
        console.print(f"  {arm}: " + ", ".join(f"{k} {v:,}" for k, v in by.items()))
    t = Table("step", "channel", "statuses", "delivered", "opened", "clicked", "unsubscribed")
    for step, m in s["messages"].items():
        counts = ("delivered", "opened", "clicked", "unsubscribed")
        statuses = ", ".join(f"{k} {v:,}" for k, v in m.items() if k not in ("channel", *counts))
        t.add_row(step, m["channel"], statuses, *(f"{m.get(k, 0):,}" for k in counts))
    console.print(t)
    lift = s.get("lift")
    if lift and "lift" in lift:
        lo, hi = lift["ci"]
        console.print(f"Goal rate treatment {lift['rates']['treatment']:.1%} vs holdout {lift['rates']['holdout']:.1%}: "
                      f"lift {lift['lift']:+.1%} (95% interval {lo:+.1%} to {hi:+.1%}, p = {lift['p_value']:.2g})")  # fmt: skip
    elif lift:
        console.print(f"[dim]{lift['error']}[/]")
    for sid, sp in (s.get("splits") or {}).items():
        if sp and "rates" in sp:
            rates = ", ".join(f"{k} {v:.1%}" for k, v in sp["rates"].items())
            cmps = "; ".join(
                f"{c['arm']} vs {c['against']} {c['lift']:+.1%} (p = {c['p_value']:.2g})"
                for c in sp["comparisons"]
            )
            console.print(f"Split {sid}: goal rate {rates}; {cmps}")


@journeys_app.command("work")
def work(
    data_dir: DataDir = None,
    every: Annotated[float, typer.Option(help="Seconds between rounds when idle.")] = 1.0,
    rounds: Annotated[
        int, typer.Option(help="Stop after this many rounds (0: run until stopped).")
    ] = 0,
) -> None:
    """A journey worker in the foreground: moves due runs and sends their messages. Several
    can run side by side (each claims its own work with a lease)."""
    from traction.context import Context

    ctx = Context.open(settings_for(data_dir))
    done = 0
    try:
        while rounds == 0 or done < rounds:
            done += 1
            if ctx.engage.work() == 0:
                time.sleep(every)
    except KeyboardInterrupt:
        pass
    finally:
        ctx.close()
