"""Feeds the simulated world through the real ingest pipeline, with a progress bar."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from traction.context import Context
from traction.ingest.domain import normalize_segment
from traction.simulate.billing import replay_intents
from traction.simulate.world import SimulationParams, SimulationStats, World


def run_simulation(
    ctx: Context,
    workspace_id: str,
    params: SimulationParams,
    console: Console | None = None,
    chunk: int = 50_000,
) -> SimulationStats:
    """Into a data dir opened here, through the same validation, identity and writer code as
    the API, without HTTP. (Committing on another thread while the next batch is validated
    was measured slower: both halves need the GIL.)"""

    def send(messages: list[object]) -> int:
        return len(ctx.ingest.ingest_sync(workspace_id, messages, normalize_segment).rejected)

    world = simulate_into(send, params, console, chunk)
    intents = world.product.intents
    with (console or Console(quiet=True)).status(
        f"Replaying {len(intents):,} trials, purchases and plan changes through billing…"
    ):
        billing_events = replay_intents(ctx.billing, ctx.providers, workspace_id, intents)
    if billing_events:  # committed before returning, like the simulation's own
        send(list[object](billing_events))
    return world.stats


def simulate_into(
    send: Callable[[list[object]], int],
    params: SimulationParams,
    console: Console | None = None,
    chunk: int = 50_000,
) -> World:
    """Through any sink that answers how many events it refused (the ingest pipeline here,
    or a server's tracking API). Days are sent together up to `chunk` events: each batch
    costs a transaction and an identity flush, so fewer, larger ones go faster."""
    world = World(params)
    rejected = 0
    with Progress(
        TextColumn("[bold]Simulating[/] day {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    ) as bar:
        task = bar.add_task("sim", total=params.days, events=0)
        pending: list[object] = []
        for messages in world.run():
            pending.extend(messages)
            if len(pending) >= chunk:
                rejected += send(pending)
                pending = []
            bar.update(task, advance=1, events=world.stats.events)
        if pending:
            rejected += send(pending)
    if rejected:
        raise RuntimeError(
            f"the simulator produced {rejected} invalid events: a bug in traction.simulate"
        )
    return world
