"""What an experiment is, and the verdict on its results, pure.

An experiment names its variations (the flag rule's `meta` keys), the unit it assigns (a
person or an account), when it ran, and its metrics: **primary** (what it is for),
**secondary** (to learn from) and **guardrail** (must not get worse). Metrics are built from
the analytics' event matchers, per unit and counted from the unit's first exposure:

- `conversion`: did the event happen within `window_days` (0/1 per unit);
- `count` / `sum`: how many times, or the sum of a numeric property, within the window;
- `ratio`: a count or sum over another (e.g. revenue per session), by the delta method;
- `retention`: was the unit active (any event) on day `day` after exposure;
- `revenue`: MRR the unit's purchases added within the window (billing's events).
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from traction.analytics.domain.specs import EventMatcher

Key = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]


class ExperimentError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metric(_Strict):
    key: Key
    name: str = Field("", max_length=200)
    kind: Literal["conversion", "count", "sum", "ratio", "retention", "revenue"] = "conversion"
    event: EventMatcher | None = None
    property: str | None = Field(None, max_length=200, description="for sum: the numeric property")
    denominator: EventMatcher | None = Field(None, description="for ratio: counted per unit")
    window_days: float = Field(14, gt=0, le=365)
    day: int = Field(7, ge=1, le=365, description="for retention")
    direction: Literal["up", "down"] = "up"  # which way is better

    @model_validator(mode="after")
    def _shape(self) -> Metric:
        if self.kind in ("conversion", "count", "sum", "ratio") and self.event is None:
            raise ValueError(f"a {self.kind} metric needs an `event`")
        if self.kind == "sum" and not self.property:
            raise ValueError("a sum metric needs the `property` to add up")
        if self.kind == "ratio" and self.denominator is None:
            raise ValueError("a ratio metric needs a `denominator` event")
        return self


class Variation(_Strict):
    key: Key
    name: str = Field("", max_length=200)
    weight: float = Field(gt=0, le=1)


class Step(_Strict):
    percent: float = Field(gt=0, le=100, description="the share of units given the new value")
    hours: float = Field(24, ge=0, le=24 * 90, description="how long to hold before the next step")


class Rollout(_Strict):
    """A safe rollout: the flag's new value ramped on a schedule while the guardrails are
    watched with the sequential test; a guardrail that gets significantly worse rolls it back."""

    flag: Key
    environment: str = Field("production", pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    value: Any = Field(description="the new value being rolled out")
    control: Any = Field(None, description="what the others get (the flag's default if omitted)")
    steps: list[Step] = Field(
        default_factory=lambda: [Step(percent=p, hours=24) for p in (5, 25, 50, 100)],
        min_length=1,
        max_length=20,
    )

    @model_validator(mode="after")
    def _shape(self) -> Rollout:
        if "value" not in self.model_fields_set:
            raise ValueError("value: the new value to roll out is required")
        percents = [s.percent for s in self.steps]
        if any(b <= a for a, b in pairwise(percents)):
            raise ValueError("steps: each step's percent must be above the one before")
        if percents[0] >= 100:
            raise ValueError("steps: the first step must be below 100 percent (to compare)")
        if percents[-1] != 100:
            raise ValueError("steps: the last step must reach 100 percent")
        return self


class ExperimentDocument(_Strict):
    hypothesis: str = Field("", max_length=4000)
    variations: list[Variation] = Field(min_length=2, max_length=20)
    unit: Literal["person", "account"] = "person"
    start: datetime | None = None
    stop: datetime | None = None
    primary: list[Metric] = Field(default_factory=list, max_length=5)
    secondary: list[Metric] = Field(default_factory=list, max_length=20)
    guardrails: list[Metric] = Field(default_factory=list, max_length=10)
    method: Literal["frequentist", "sequential", "bayesian"] = "frequentist"
    alpha: float = Field(0.05, gt=0, lt=0.5)
    cuped: bool = True
    correction: Literal["none", "holm", "benjamini-hochberg"] = "holm"
    minimum_lift: float = Field(
        0.05, gt=0, le=10, description="the lift worth detecting (for the verdict)"
    )
    rollout: Rollout | None = Field(
        None, description="a safe rollout of a flag's value watched by the guardrails"
    )

    @model_validator(mode="before")
    @classmethod
    def _rollout_arms(cls, data: Any) -> Any:
        """A rollout has two arms, control and rollout, whatever their weights at the time."""
        if (
            isinstance(data, dict)
            and data.get("rollout") is not None
            and not data.get("variations")
        ):
            data = {**data, "variations": [{"key": "control", "weight": 0.5},
                                           {"key": "rollout", "weight": 0.5}]}  # fmt: skip
        return data

    @model_validator(mode="after")
    def _shape(self) -> ExperimentDocument:
        if self.rollout is None and not self.primary:
            raise ValueError("primary: an experiment needs at least one primary metric")
        if self.rollout is not None:
            if [v.key for v in self.variations] != ["control", "rollout"]:
                raise ValueError("variations: a rollout's are control and rollout (leave them out)")
            if not self.guardrails:
                raise ValueError("guardrails: a safe rollout needs at least one guardrail to watch")
        total = sum(v.weight for v in self.variations)
        if abs(total - 1) > 0.001:
            raise ValueError(f"variations: weights must sum to 1 (they sum to {total:g})")
        keys = [m.key for m in self.primary + self.secondary + self.guardrails]
        if len(set(keys)) != len(keys):
            raise ValueError("metrics: each metric's key must be unique")
        if len({v.key for v in self.variations}) != len(self.variations):
            raise ValueError("variations: each variation's key must be unique")
        if self.start and self.stop and self.stop <= self.start:
            raise ValueError("stop: must be after start")
        return self


def parse_experiment(body: Any) -> ExperimentDocument:
    if not isinstance(body, dict):
        raise ExperimentError("body: a JSON object with variations and metrics")
    try:
        return ExperimentDocument.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ExperimentError(f"{where}: {msg}" if where else msg) from None


def verdict(
    results: list[dict[str, Any]], srm_p: float, alpha: float, days_needed: float | None
) -> str:
    """A plain-language call from the results: SRM first (nothing else can be trusted), then
    guardrails, then the primary metric."""
    if srm_p < 0.001:
        return ("Sample ratio mismatch (p < 0.001): the split is not what was configured, so "
                "the results cannot be trusted. Check the assignment and the exposure logging.")  # fmt: skip
    for r in results:
        if r["role"] == "guardrail" and r["significant"] and r["worse"]:
            return f"Guardrail {r['metric']} got worse in {r['variation']} ({r['lift']:+.1%}): do not ship it."
    primary = [r for r in results if r["role"] == "primary"]
    winners = [r for r in primary if r["significant"] and not r["worse"]]
    if winners:
        best = max(winners, key=lambda r: r["lift"] if r["direction"] == "up" else -r["lift"])
        lo, hi = best["ci"]
        return (f"Ship {best['variation']}: {best['metric']} {best['lift']:+.1%} "
                f"(95% interval {lo:+.1%} to {hi:+.1%}).")  # fmt: skip
    losers = [r for r in primary if r["significant"] and r["worse"]]
    if losers:
        r = losers[0]
        return f"{r['variation']} is worse on {r['metric']} ({r['lift']:+.1%}): stop it and keep control."
    if days_needed is None:
        return "No significant difference yet, and no traffic to estimate how long to wait."
    if days_needed <= 0:
        return "No significant difference at the planned sample size: the effect is smaller than the minimum worth detecting."
    return (
        f"Keep running: about {days_needed:.0f} more days to detect the minimum lift at 80% power."
    )
