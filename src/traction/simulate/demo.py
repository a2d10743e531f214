"""`make demo`: one workspace, one dashboard user, a few million simulated events. Idempotent."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml
from rich.console import Console

from traction.context import Context
from traction.simulate.engage import JOURNEYS, SEGMENTS
from traction.simulate.experiments import EXPERIMENTS, FLAGS
from traction.simulate.runner import run_simulation
from traction.simulate.world import SimulationParams

EXAMPLE_CATALOG = Path(__file__).resolve().parent.parent / "billing" / "example_catalog.yaml"
DEMO_WORKSPACE = "Demo SaaS"
DEMO_EMAIL = "demo@traction.local"
DEMO_PASSWORD = "traction-demo"


# present while the demo's data is being built: a build that stopped half-way is not reused
BUILDING = "demo-building"


class DemoInterrupted(RuntimeError):
    pass


@dataclass
class DemoInfo:
    workspace_id: str
    write_key: str
    email: str
    password: str
    events: int


def configure_demo(ctx: Context, ws_id: str) -> None:
    """What the simulated product sells and runs, as its team would have set it up."""
    if ctx.billing.catalog(ws_id) is None:  # the plans the demo product sells
        ctx.billing.apply_catalog(ws_id, yaml.safe_load(EXAMPLE_CATALOG.read_text()))
    for key, flag in FLAGS.items():  # the flags and experiments the simulated product runs
        ctx.flags.put(ws_id, key, flag)
    for key, experiment in EXPERIMENTS.items():
        ctx.experiments.put(ws_id, key, experiment)
    ctx.segments.apply(ws_id, SEGMENTS)
    ctx.engage.apply(ws_id, JOURNEYS)  # the three recipes of docs/engage.md


def prepare_demo(
    ctx: Context, *, people: int, days: int, console: Console | None = None
) -> DemoInfo:
    """Reuses the demo workspace if it exists; simulates only into an empty one."""
    building = ctx.settings.data_dir / BUILDING
    if building.exists():
        raise DemoInterrupted(
            f"a demo build in {ctx.settings.data_dir} was interrupted before it finished: "
            "delete that directory to start over"
        )
    ws = ctx.workspaces.find_workspace(DEMO_WORKSPACE)
    if ws is None:
        created = ctx.workspaces.create_workspace(DEMO_WORKSPACE)
        ws_id, write_key = created.id, created.write_key
    else:
        ws_id = ws.id
        write_key = ctx.workspaces.create_key(ws_id, "write", "demo write key").key
    if ctx.workspaces.verify_password(DEMO_EMAIL, DEMO_PASSWORD) is None:
        with contextlib.suppress(ValueError):  # exists with another password: leave it alone
            ctx.workspaces.create_user(DEMO_EMAIL, DEMO_PASSWORD, [ws_id])
    configure_demo(ctx, ws_id)
    if ctx.events.count(ws_id) == 0:
        # End the history yesterday, so the dashboard looks current.
        start = date.today() - timedelta(days=days)
        building.touch()
        with ctx.state.bulk_load():  # (a build that fails is started over: see BUILDING)
            run_simulation(
                ctx, ws_id, SimulationParams(people=people, days=days, start=start), console=console
            )
            ctx.segments.refresh_all()  # members as of now (the server refreshes them from here)
        building.unlink()
    elif console is not None:
        console.print("[dim]Demo data exists; reusing it (delete the data dir to start over).[/]")
    return DemoInfo(ws_id, write_key, DEMO_EMAIL, DEMO_PASSWORD, ctx.events.count(ws_id))
