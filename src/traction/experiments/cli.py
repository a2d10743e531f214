"""`traction experiments results KEY`: an experiment's results in a table (or JSON);
`traction experiments rollback KEY`: stop a safe rollout. Both on the data dir or through the
server that holds it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from traction.billing.cli import AsJson
from traction.cli_common import DataDir, WorkspaceRef, console

experiments_app = typer.Typer(help="Experiments: definitions and results.", no_args_is_help=True)


@experiments_app.command("results")
def experiment_results(
    key: Annotated[str, typer.Argument(help="The experiment's key.")],
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
    as_json: AsJson = False,
) -> None:
    """Per metric and variation: lift with its interval, p-value, chance to win; SRM; verdict."""
    from traction.cli_access import read_or_call
    from traction.experiments.domain import ExperimentError
    from traction.experiments.service import NotFound as NoExperiment

    res = read_or_call(data_dir, workspace, f"/api/v1/experiments/{key}/results",
                       lambda ctx, ws: ctx.experiments.results(ws, key), (ExperimentError, NoExperiment))  # fmt: skip
    if as_json:
        print(json.dumps(res, default=str))
        return
    t = Table("metric", "role", "variation", "control mean", "variation mean", "lift", "95% interval",
              "p (adj.)", "chance to win")  # fmt: skip
    for row in res["results"]:
        lo, hi = row["ci"]
        t.add_row(row["metric"], row["role"], row["variation"], f"{row['means'][row['control']]:.4g}",
                  f"{row['means'][row['variation']]:.4g}", f"{row['lift']:+.1%}", f"{lo:+.1%} to {hi:+.1%}",
                  f"{row['p_value_adjusted']:.3g}",
                  "—" if row["chance_to_win"] is None else f"{row['chance_to_win']:.0%}")  # fmt: skip
    console.print(t)
    units = ", ".join(f"{k} {v:,}" for k, v in res["units"].items())
    console.print(
        f"Units: {units} (SRM p = {res['srm_p_value']:.3g}; {res['excluded_multiple_exposures']} excluded for seeing two variations)"
    )
    if res.get("rollout"):
        st = res["rollout"]
        console.print(f"Rollout: {st['status'].replace('_', ' ')}, step {st['step'] + 1}; "
                      + "; ".join(f"{e['at'][:16]} {e['action']} {e['percent']:g}%" for e in st["log"]))  # fmt: skip
    console.print(f"[bold]{res['verdict']}[/]")


@experiments_app.command("rollback")
def experiment_rollback(
    key: Annotated[str, typer.Argument(help="The safe rollout's key.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the rollout's log).")] = "",
    data_dir: DataDir = None,
    workspace: WorkspaceRef = None,
) -> None:
    """Stop a safe rollout now: everyone gets the control value again."""
    from traction.audit.service import ACTOR
    from traction.cli_access import read_or_call
    from traction.experiments.domain import ExperimentError
    from traction.experiments.service import NotFound as NoExperiment

    def local(ctx: Any, ws: str) -> Any:
        token = ACTOR.set("cli")
        try:
            return ctx.experiments.rollouts.roll_back(ws, key, reason)
        finally:
            ACTOR.reset(token)

    state = read_or_call(data_dir, workspace, f"/api/v1/experiments/{key}/rollback", local,
                         (ExperimentError, NoExperiment), post={"reason": reason})  # fmt: skip
    console.print(f"[bold]{key}[/]: {state['reason']}")
