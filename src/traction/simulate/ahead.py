"""The simulated days before anything in the workspace reacts to them, simulated in a process
of their own while this one stores them.

Until the first journey or rollout starts, the simulated world depends on nothing but its
parameters and seed: nothing the engine does reaches it. Those days (three quarters of the
demo's) are simulated, validated and encoded as Arrow in a spawned process, in the chunks
`simulate_into` would send, while this process resolves identity and commits the chunk before.
At the first day something reacts, the world itself is handed over (pickled) and the runner
goes on from there: the same messages, the same chunks, the same log as in one process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from traction.ingest import prepare
from traction.ingest.domain import normalize_segment
from traction.ingest.processes import no_ctrl_c, no_main_module
from traction.ingest.service import now_utc
from traction.privacy.domain import ConsentPolicy
from traction.simulate.product import Intent
from traction.simulate.world import SimulationParams, World


@dataclass(frozen=True)
class AheadJob:
    params: SimulationParams
    days: int  # simulated there: days 0 .. days-1
    chunk: int  # events per commit, as `simulate_into` sends them
    max_event_bytes: int
    policy: ConsentPolicy | None


def simulate_ahead(job: AheadJob, out: Connection) -> None:
    """In the spawned process: ("day", days done, events, wire or None, the purchases made
    that day) per day, then ("world", the world). A failure is sent as ("error", its
    traceback)."""
    # Ctrl+C reaches the whole process group: the parent stops this process (a traceback
    # from here would hide the parent's "Aborted")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        world = World(job.params)
        pending: list[Any] = []
        intents = world.product.intents
        sent = 0
        for d in range(job.days):
            pending.extend(world.day(d))
            wire = None
            if pending and (len(pending) >= job.chunk or d == job.days - 1):
                p = prepare.prepare(pending, normalize_segment, now_utc(), job.max_event_bytes,
                                    None, job.policy, False)  # fmt: skip
                wire, pending = prepare.to_wire(p), []
            out.send(("day", d + 1, world.stats.events, wire, intents[sent:]))
            sent = len(intents)
        out.send(("world", world))
    except BaseException:  # the parent waits for an answer: it gets the reason
        with contextlib.suppress(OSError):  # (unless it has stopped reading)
            out.send(("error", traceback.format_exc()))
    finally:
        out.close()


class SimulationProcessFailed(RuntimeError):
    pass


def run_ahead(
    job: AheadJob,
    commit: Callable[[prepare.Prepared, list[Intent], int], None],
    progress: Callable[[int, int], None],
) -> tuple[World, int]:
    """Commits the first `job.days` days as the spawned process prepares them, in order:
    `commit(rows, the purchases made so far, days in the log)`. Returns the world as of the
    next day and how many events were refused."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("spawn").Process(
        target=simulate_ahead, args=(job, writer), name="traction-simulate", daemon=True
    )
    with no_main_module(), no_ctrl_c():  # (ignored while it imports, too)
        proc.start()
    writer.close()  # ours: so that the child's end closing is seen as EOF
    rejected = 0
    intents: list[Intent] = []
    finished = False
    try:
        while True:
            try:
                kind, *rest = reader.recv()
            except EOFError:
                proc.join(5)
                raise SimulationProcessFailed(
                    f"the simulation process ended without its world (exit code {proc.exitcode})"
                ) from None
            if kind == "error":
                raise SimulationProcessFailed(f"in the simulation process:\n{rest[0]}")
            if kind == "world":
                finished = True
                return rest[0], rejected
            day, events, wire, made = rest
            intents.extend(made)
            if wire is not None:
                p = prepare.from_wire(wire)
                rejected += len(p.rejected)
                commit(p, intents, day)
            progress(day, events)
    finally:
        reader.close()
        proc.join(5 if finished else 0)  # (stopped early, e.g. by Ctrl+C: no waiting for it)
        if proc.is_alive():
            proc.kill()
            proc.join()
