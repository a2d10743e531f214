"""Safe rollouts on the stores: start one (its first step's rule on the flag), check them all
from the server's maintenance loop (ramp, complete or roll back, each a change in the flag's
history by `safe-rollout`), and roll one back by hand.

The state lives on the experiment's row (`state`), the plan in its document; the flag only
ever holds the rule of the current step, so every SDK (ours or GrowthBook's) serves it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from traction.audit.service import ACTOR
from traction.experiments import rollout
from traction.experiments.domain import ExperimentDocument, ExperimentError
from traction.experiments.models import Experiment
from traction.flags.domain.flags import FlagError, parse_flag
from traction.flags.service import FlagService
from traction.flags.service import NotFound as FlagNotFound

if TYPE_CHECKING:
    from traction.experiments.service import ExperimentService

ACTOR_NAME = "safe-rollout"


class RolloutService:
    def __init__(self, experiments: ExperimentService, flags: FlagService) -> None:
        self.experiments = experiments
        self.flags = flags

    # -- the flag's side ------------------------------------------------------------------

    def flag_body(self, workspace_id: str, key: str, doc: ExperimentDocument,
                  served: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """The flag with `served` in place of the rollout's rule (first, so it wins), checked
        as a flag: a value of the wrong type is refused before anything is written."""
        plan = doc.rollout
        assert plan is not None
        try:
            flag = self.flags.get(workspace_id, plan.flag)
        except FlagNotFound:
            raise ExperimentError(f"rollout.flag: no flag {plan.flag!r}") from None
        body = {k: v for k, v in flag.items() if k not in ("key", "version", "updated_at")}
        env = body["environments"].get(plan.environment)
        if env is None:
            raise ExperimentError(
                f"rollout.environment: flag {plan.flag!r} has no environment {plan.environment!r}"
            )
        env["rules"] = [served] + [r for r in env["rules"] if r.get("id") != rollout.rule_id(key)]
        try:
            parse_flag(body)
        except FlagError as e:
            raise ExperimentError(f"rollout: the flag would not accept it ({e})") from None
        return body

    def control(self, workspace_id: str, doc: ExperimentDocument) -> Any:
        plan = doc.rollout
        assert plan is not None
        if plan.control is not None:
            return plan.control
        try:
            return self.flags.get(workspace_id, plan.flag)["default_value"]
        except FlagNotFound:
            raise ExperimentError(f"rollout.flag: no flag {plan.flag!r}") from None

    def serve(self, workspace_id: str, body: dict[str, Any], flag: str) -> None:
        token = ACTOR.set(ACTOR_NAME)
        try:
            self.flags.put(workspace_id, flag, body)
        finally:
            ACTOR.reset(token)

    # -- the loop ---------------------------------------------------------------------------

    def check_all(self, now: datetime | None = None) -> int:
        """One check of every running rollout. Returns how many changed step or stopped."""
        now = now or self.flags.now()
        with self.experiments.state.session() as s:
            running = [(r.workspace_id, r.key) for r in s.scalars(select(Experiment))
                       if r.state and r.state.get("status") == "running"]  # fmt: skip
        return sum(self.check(ws, key, now) for ws, key in running)

    def check(self, workspace_id: str, key: str, now: datetime) -> bool:
        doc, state = self.experiments.definition(workspace_id, key)
        plan = doc.rollout
        if plan is None or state is None or state["status"] != "running":
            return False
        try:
            results = self.experiments.analyse(workspace_id, key, doc)["results"]
            if any(min(r["units"].values()) < 2 for r in results):
                results = None
        except ExperimentError:
            results = None
        d = rollout.decide(plan, state["step"], _at(state["step_started_at"]), now, results)
        state["last_check"] = {"at": _iso(now), "reason": d.reason,
                               "guardrails": [{k: r[k] for k in ("metric", "lift", "ci", "p_value_adjusted",
                                                                 "significant", "worse")}
                                              for r in results or []]}  # fmt: skip
        if d.action == "hold":
            self._save(workspace_id, key, state)
            return False
        control = state["control"]
        if d.action == "rollback":
            served = rollout.rolled_back(key, control)
        else:
            served = rollout.rule(key, plan, control, plan.steps[d.step].percent, doc.unit)
        self.serve(workspace_id, self.flag_body(workspace_id, key, doc, served), plan.flag)
        state.update(step=d.step, step_started_at=_iso(now))
        if d.action in ("rollback", "complete"):
            state.update(status="rolled_back" if d.action == "rollback" else "completed",
                         reason=d.reason, ended_at=_iso(now))  # fmt: skip
        state["log"].append({"at": _iso(now), "action": d.action,
                             "percent": plan.steps[d.step].percent if d.action != "rollback" else 0,
                             "reason": d.reason})  # fmt: skip
        self._save(workspace_id, key, state)
        return True

    def roll_back(self, workspace_id: str, key: str, reason: str) -> dict[str, Any]:
        """By hand: everyone back on the control, with the reason given."""
        doc, state = self.experiments.definition(workspace_id, key)
        if doc.rollout is None or state is None:
            raise ExperimentError(f"experiment {key!r} is not a rollout")
        if state["status"] != "running":
            raise ExperimentError(f"rollout {key!r} is {state['status']} already")
        now = self.flags.now()
        served = rollout.rolled_back(key, state["control"])
        self.serve(workspace_id, self.flag_body(workspace_id, key, doc, served), doc.rollout.flag)
        why = f"rolled back by {ACTOR.get() or 'hand'}: {reason or 'no reason given'}"
        state.update(status="rolled_back", reason=why, ended_at=_iso(now))
        state["log"].append({"at": _iso(now), "action": "rollback", "percent": 0, "reason": why})
        self._save(workspace_id, key, state)
        return state

    def _save(self, workspace_id: str, key: str, state: dict[str, Any]) -> None:
        with self.experiments.state.session() as s:
            row = s.scalars(select(Experiment).where(Experiment.workspace_id == workspace_id,
                                                     Experiment.key == key).with_for_update()).one()  # fmt: skip
            row.state = dict(state)


def start_state(now: datetime, control: Any, percent: float) -> dict[str, Any]:
    return {"status": "running", "step": 0, "control": control, "started_at": _iso(now),
            "step_started_at": _iso(now), "reason": "", "log": [
                {"at": _iso(now), "action": "start", "percent": percent, "reason": "started"}]}  # fmt: skip


def _iso(t: datetime) -> str:
    return t.isoformat()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
