"""Safe rollouts, pure: the flag rule each step serves, and what to do at each check.

A rollout is an experiment with two arms whose split moves: at step *k* a share `p_k` of
units get the new value and the rest the control. GrowthBook buckets the arms as contiguous
ranges in order (control `[0, 1-p)`, rollout `[1-p, 1)`), so raising `p` only moves units from
control into the rollout, never back: nobody who got the new value loses it while it ramps.
Units that moved are seen in both arms and the analysis excludes them, as it does for any
experiment.

The guardrails are judged with the always-valid (sequential) test, because the check runs
every few minutes for days: a fixed-horizon p-value looked at that often would roll back
healthy rollouts far more often than alpha says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from traction.experiments.domain import Rollout

RULE_PREFIX = "safe-rollout:"


def rule_id(experiment: str) -> str:
    return RULE_PREFIX + experiment


def rule(experiment: str, plan: Rollout, control: Any, percent: float, unit: str) -> dict[str, Any]:
    """The GrowthBook rule serving `percent` of units the new value (every SDK evaluates it)."""
    if percent >= 100:
        return {"id": rule_id(experiment), "force": plan.value}
    p = round(percent / 100, 6)
    return {"id": rule_id(experiment), "key": experiment, "name": f"safe rollout of {plan.flag}",
            "variations": [control, plan.value], "weights": [round(1 - p, 6), p],
            "hashAttribute": "id" if unit == "person" else "account_id", "hashVersion": 2,
            "seed": experiment, "meta": [{"key": "control"}, {"key": "rollout"}]}  # fmt: skip


def rolled_back(experiment: str, control: Any) -> dict[str, Any]:
    """After a rollback everyone gets the control again (and no more exposures are logged)."""
    return {"id": rule_id(experiment), "force": control}


@dataclass(frozen=True)
class Decision:
    action: Literal["hold", "ramp", "complete", "rollback"]
    step: int  # the step the rollout is at after the action
    reason: str


def decide(
    plan: Rollout,
    step: int,
    step_started_at: datetime,
    now: datetime,
    results: list[dict[str, Any]] | None,
) -> Decision:
    """Roll back on a guardrail that got significantly worse; otherwise move to the next step
    once this one has been held long enough and there is data to judge it by."""
    percent = plan.steps[step].percent
    for r in results or []:
        if r["role"] == "guardrail" and r["significant"] and r["worse"]:
            # the difference's interval is the one the p-value belongs to (the lift's also
            # carries the control mean's uncertainty, and can reach 0 when this does not)
            lo, hi = r["difference_ci"]
            before, after = r["means"][r["control"]], r["means"][r["variation"]]
            return Decision("rollback", step,
                            f"guardrail {r['name']} got worse with the new value: {before:.4g} → {after:.4g} "
                            f"per unit ({r['lift']:+.0%}; difference {r['difference']:+.3g}, always-valid "
                            f"interval {lo:+.3g} to {hi:+.3g}, p = {r['p_value_adjusted']:.2g}) "
                            f"at {percent:g}% of traffic")  # fmt: skip
    if results is None:
        return Decision("hold", step, "waiting for exposures in both arms")
    held_hours = (now - step_started_at).total_seconds() / 3600
    if held_hours < plan.steps[step].hours:
        return Decision("hold", step, f"holding {percent:g}% for {plan.steps[step].hours:g} h")
    nxt = plan.steps[step + 1].percent
    if nxt >= 100:
        return Decision("complete", step + 1, "every step held with no guardrail worse: at 100%")
    return Decision(
        "ramp", step + 1, f"{percent:g}% held with no guardrail worse: ramped to {nxt:g}%"
    )
