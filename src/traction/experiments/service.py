"""Experiments: definitions on the StateStore, analysis on the event log.

`results` reads the exposures and, per metric, the per-variation summary statistics (one
query each, through the analytics engine's slots and limits), then hands them to the pure
statistics (`experiments.stats`) and the verdict (`experiments.domain`).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from traction.experiments import rollout, stats
from traction.experiments.compile import EXPERIMENT, Exposure, compile_exposures, compile_metrics
from traction.experiments.domain import (
    ExperimentDocument,
    ExperimentError,
    Metric,
    parse_experiment,
    verdict,
)
from traction.experiments.models import Experiment
from traction.experiments.rollouts import RolloutService, start_state
from traction.flags.service import FlagService
from traction.store.state import StateStore, utcnow

if TYPE_CHECKING:
    from traction.analytics.service import AnalyticsService


class NotFound(LookupError):
    pass


class ExperimentService:
    def __init__(
        self, state: StateStore, analytics: AnalyticsService, flags: FlagService | None = None
    ) -> None:
        self.state = state
        self.analytics = analytics
        self.rollouts = RolloutService(self, flags or FlagService(state))

    def put(self, workspace_id: str, key: str, body: Any) -> dict[str, Any]:
        """Creates or replaces a definition. A new safe rollout starts at once: its first
        step's rule goes on the flag (checked first, so nothing is half-saved). A rollout that
        has started keeps its progress; one that has ended is not restarted."""
        model = parse_experiment(body)
        doc = model.model_dump(mode="json")
        start: tuple[dict[str, Any], dict[str, Any]] | None = None
        with self.state.session() as s:
            row = s.scalars(select(Experiment).where(Experiment.workspace_id == workspace_id,
                                                     Experiment.key == key).with_for_update()).first()  # fmt: skip
            if model.rollout is not None and (row is None or row.state is None):
                r, control = self.rollouts, self.rollouts.control(workspace_id, model)
                first = model.rollout.steps[0].percent
                served = rollout.rule(key, model.rollout, control, first, model.unit)
                start = (r.flag_body(workspace_id, key, model, served),
                         start_state(r.flags.now(), control, first))  # fmt: skip
            if row is None:
                row = Experiment(
                    workspace_id=workspace_id, key=key, document=doc, version=1, updated_at=utcnow()
                )
                s.add(row)
            elif row.document != doc:
                row.document, row.version, row.updated_at = doc, row.version + 1, utcnow()
            if start is not None:
                row.state = start[1]
            s.flush()
            out = self._out(row)
        if start is not None and model.rollout is not None:
            self.rollouts.serve(workspace_id, start[0], model.rollout.flag)
        return out

    @staticmethod
    def _out(row: Experiment) -> dict[str, Any]:
        extra = {"rollout_state": row.state} if row.state else {}
        return {"key": row.key, **row.document, "version": row.version, **extra}

    def get(self, workspace_id: str, key: str) -> dict[str, Any]:
        with self.state.session() as s:
            row = s.scalars(select(Experiment).where(Experiment.workspace_id == workspace_id,
                                                     Experiment.key == key)).first()  # fmt: skip
            if row is None:
                raise NotFound(f"no experiment {key!r}")
            return self._out(row)

    def definition(
        self, workspace_id: str, key: str
    ) -> tuple[ExperimentDocument, dict[str, Any] | None]:
        got = self.get(workspace_id, key)
        state = got.pop("rollout_state", None)
        doc = ExperimentDocument.model_validate(
            {k: v for k, v in got.items() if k not in ("key", "version")}
        )
        return doc, state

    def experiments(self, workspace_id: str) -> list[dict[str, Any]]:
        with self.state.session() as s:
            rows = s.scalars(select(Experiment).where(Experiment.workspace_id == workspace_id)
                             .order_by(Experiment.key))  # fmt: skip
            return [self._out(r) for r in rows]

    # -- analysis -------------------------------------------------------------------------------

    def results(self, workspace_id: str, key: str) -> dict[str, Any]:
        doc, state = self.definition(workspace_id, key)
        try:
            out = self.analyse(workspace_id, key, doc)
        except ExperimentError:
            if state is None:
                raise
            out = {"experiment": key, "unit": doc.unit, "method": "sequential", "units": {},
                   "excluded_multiple_exposures": 0, "srm_p_value": 1.0, "srm": False,
                   "first_exposure": None, "last_exposure": None, "results": []}  # fmt: skip
        if state is not None:
            out["rollout"] = state
            out["verdict"] = _rollout_verdict(state)
        return out

    def analyse(self, workspace_id: str, key: str, doc: ExperimentDocument,
                exposure: Exposure = EXPERIMENT) -> dict[str, Any]:  # fmt: skip
        """The analysis of `doc` on the log. A rollout's split moves as it ramps, so its
        sample-ratio check is skipped and its guardrails use the always-valid test."""
        if doc.rollout is not None:
            doc = doc.model_copy(update={"method": "sequential", "cuped": False})
        a = self.analytics
        rows = a._rows(
            *compile_exposures(workspace_id, key, doc.unit, doc.start, doc.stop, exposure)
        )
        names = [v.key for v in doc.variations]
        units = dict.fromkeys(names, 0)
        first: datetime | None = None
        last: datetime | None = None
        excluded = 0
        for variation, n, t_first, t_last in rows:
            if variation is None:
                excluded = int(n)
                continue
            name = _variation(variation, names)
            if name is None:
                excluded += int(n)
                continue
            units[name] += int(n)
            first = t_first if first is None or t_first < first else first
            last = t_last if last is None or t_last > last else last
        if sum(units.values()) == 0:
            raise ExperimentError(
                f"{key!r} has no exposures yet ({exposure.event} with {exposure.key_property} {key!r})"
            )
        srm_p = (
            1.0
            if doc.rollout is not None
            else stats.srm([units[n] for n in names], [v.weight for v in doc.variations])
        )
        roles = [(role, m) for role, ms in (("primary", doc.primary), ("secondary", doc.secondary),
                                            ("guardrail", doc.guardrails)) for m in ms]  # fmt: skip
        sql, params = compile_metrics(
            workspace_id, key, doc.unit, doc.start, doc.stop, [m for _, m in roles], exposure
        )
        per_metric: list[dict[str, list[float]]] = [{} for _ in roles]
        for variation, n, *sums in a._rows(sql, params):
            name = _variation(variation, names)
            if name is None:
                continue
            for i in range(len(roles)):
                per_metric[i][name] = [float(n), *(float(x or 0) for x in sums[8 * i : 8 * i + 8])]
        results: list[dict[str, Any]] = []
        for (role, m), per in zip(roles, per_metric, strict=True):
            results += self._metric(doc, m, role, names, per)
        _adjust(results, doc)
        days = _days_needed(results, doc, units, first, last)
        return {"experiment": key, "unit": doc.unit, "method": doc.method,
                "units": units, "excluded_multiple_exposures": excluded,
                "srm_p_value": srm_p, "srm": srm_p < 0.001,
                "first_exposure": first.isoformat() + "Z" if first else None,
                "last_exposure": last.isoformat() + "Z" if last else None,
                "results": results, "verdict": verdict(results, srm_p, doc.alpha, days)}  # fmt: skip

    def _metric(self, doc: ExperimentDocument, m: Metric, role: str, names: list[str],
                per: dict[str, list[float]]) -> list[dict[str, Any]]:  # fmt: skip
        """One metric's comparisons, from its per-variation sums (n, Σy, Σy², Σx, Σx², Σxy,
        Σd, Σd², Σyd)."""
        empty = [0.0] * 9
        arms: dict[str, Any] = {}
        for name in names:
            n, sy, syy, _sx, _sxx, _sxy, sd, sdd, syd = per.get(name, empty)
            if m.kind == "ratio":
                arms[name] = stats.RatioStats(int(n), sy, syy, sd, sdd, syd)
            else:
                arms[name] = stats.MeanStats(int(n), sy, syy)
        adjusted = False
        if doc.cuped and m.kind not in ("ratio", "retention"):
            pre = [
                stats.MeanStats(
                    int(per.get(nm, empty)[0]), per.get(nm, empty)[3], per.get(nm, empty)[4]
                )
                for nm in names
            ]
            if all(p.n > 1 for p in pre) and any(p.variance > 0 for p in pre):
                cross = [per.get(nm, empty)[5] for nm in names]
                arms = dict(
                    zip(names, stats.cuped([arms[nm] for nm in names], pre, cross), strict=True)
                )
                adjusted = True
        control = arms[names[0]]
        out = []
        for name in names[1:]:
            arm = arms[name]
            row: dict[str, Any] = {"metric": m.key, "name": m.name or m.key, "role": role, "kind": m.kind,
                                   "direction": m.direction, "variation": name, "control": names[0],
                                   "units": {names[0]: control.n, name: arm.n},
                                   "means": {names[0]: control.mean, name: arm.mean}, "cuped": adjusted}  # fmt: skip
            if control.n < 2 or arm.n < 2 or not control.mean:
                row.update(
                    lift=0.0, ci=(-math.inf, math.inf), p_value=1.0, chance_to_win=None, risk=None
                )
            else:
                f = (stats.sequential if doc.method == "sequential" else stats.frequentist)(
                    control, arm, doc.alpha
                )
                b = stats.bayesian(control, arm, doc.alpha)
                row.update(lift=f.lift, ci=f.lift_ci, p_value=f.p_value, difference=f.difference,
                           difference_ci=list(f.difference_ci),
                           chance_to_win=b.chance_to_win if m.direction == "up" else 1 - b.chance_to_win,
                           risk=b.risk_variation if m.direction == "up" else b.risk_control)  # fmt: skip
                if doc.method == "bayesian":
                    row["ci"] = b.ci
            out.append(row)
        return out


def _rollout_verdict(state: dict[str, Any]) -> str:
    if state["status"] == "rolled_back":
        return f"Rolled back: {state['reason']}."
    if state["status"] == "completed":
        return "Completed: the new value is served to everyone."
    check = state.get("last_check") or {}
    return f"Rolling out (step {state['step'] + 1}): {check.get('reason') or 'not checked yet'}."


def _variation(raw: Any, names: list[str]) -> str | None:
    """An exposure's `variation_id`: an index into the variations (what SDKs send) or a key."""
    text = str(raw)
    if text in names:
        return text
    try:
        i = int(float(text))
    except ValueError:
        return None
    return names[i] if 0 <= i < len(names) else None


def _adjust(results: list[dict[str, Any]], doc: ExperimentDocument) -> None:
    """Corrected p-values across every metric and variation; significance and direction."""
    p = [r["p_value"] for r in results]
    if doc.correction == "holm":
        adj = stats.holm(p)
    elif doc.correction == "benjamini-hochberg":
        adj = stats.benjamini_hochberg(p)
    else:
        adj = p
    for r, q in zip(results, adj, strict=True):
        r["p_value_adjusted"] = q
        if doc.method == "bayesian":
            win = r["chance_to_win"]
            r["significant"] = win is not None and (win > 1 - doc.alpha / 2 or win < doc.alpha / 2)
        else:
            r["significant"] = q < doc.alpha
        r["worse"] = (r["lift"] < 0) == (r["direction"] == "up")
        r["ci"] = list(r["ci"])


def _days_needed(results: list[dict[str, Any]], doc: ExperimentDocument, units: dict[str, int],
                 first: datetime | None, last: datetime | None) -> float | None:  # fmt: skip
    """Days more at the current pace for the first primary metric to detect the minimum lift."""
    primary = next((r for r in results if r["role"] == "primary"), None)
    if primary is None or first is None or last is None or last <= first:
        return None
    mean = primary["means"][primary["control"]]
    if not mean or primary["kind"] == "ratio":
        return None
    sd = (
        math.sqrt(mean * (1 - mean))
        if primary["kind"] in ("conversion", "retention") and mean < 1
        else abs(mean)
    )
    need = stats.sample_size(mean, sd, doc.minimum_lift, doc.alpha)
    smallest = min(units.values())
    per_day = smallest / max((last - first).total_seconds() / 86400, 1)
    return max(0.0, (need - smallest) / per_day) if per_day else None
