"""What a flag is, checked: a typed default value and, per environment, on/off and an ordered
list of GrowthBook feature rules. The SDK payload is a projection of it (`payload`), so every
GrowthBook SDK evaluates a flag as Traction does.

Validation names the place of each problem (`environments.production.rules[1].weights`) and
rejects what GrowthBook would silently mis-evaluate: weights that do not sum to 1, a rule
that is neither a force nor an experiment, a bad operator or regex in a condition, values of
the wrong type for the flag.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from traction.flags.domain.conditions import ConditionError, check_condition, is_number

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"
ENV_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"
DEFAULT_ENVIRONMENTS = ("development", "production")
ValueType = Literal["boolean", "string", "number", "json"]
Unit = Annotated[float, Field(ge=0, le=1)]


class FlagError(ValueError):
    """Bad input: the message says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filter(_Strict):
    attribute: str | None = Field(None, max_length=100)
    seed: str = Field(max_length=200)
    ranges: list[tuple[Unit, Unit]] = Field(min_length=1, max_length=100)
    hashVersion: Literal[1, 2] | None = None


class Parent(_Strict):
    id: str = Field(pattern=KEY_PATTERN)
    condition: dict[str, Any] = Field(default_factory=dict)
    gate: bool = False


class Rule(_Strict):
    """One GrowthBook feature rule: a force rule (`force`, maybe with a condition and a
    rollout over `coverage` or `range`), or an experiment / percentage rollout
    (`variations` with `weights`, `coverage`, `ranges`, `namespace`, ...)."""

    id: str | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=2000)
    condition: dict[str, Any] | None = None
    parentConditions: list[Parent] | None = Field(None, max_length=20)
    force: Any = None
    coverage: Unit | None = None
    range: tuple[Unit, Unit] | None = None
    variations: list[Any] | None = Field(None, min_length=1, max_length=50)
    weights: list[Annotated[float, Field(ge=0, le=1)]] | None = None
    ranges: list[tuple[Unit, Unit]] | None = None
    key: str | None = Field(None, max_length=200)
    name: str | None = Field(None, max_length=200)
    phase: str | None = Field(None, max_length=40)
    seed: str | None = Field(None, max_length=200)
    hashAttribute: str | None = Field(None, max_length=100)
    fallbackAttribute: str | None = Field(None, max_length=100)
    hashVersion: Literal[1, 2] | None = None
    namespace: tuple[str, Unit, Unit] | None = None
    filters: list[Filter] | None = Field(None, max_length=20)
    meta: list[dict[str, Any]] | None = None
    disableStickyBucketing: bool | None = None
    bucketVersion: int | None = Field(None, ge=0)
    minBucketVersion: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        forced = "force" in self.model_fields_set
        if forced == (self.variations is not None):
            raise ValueError(
                "a rule has either `force` (a value) or `variations` (an experiment or rollout)"
            )
        n = len(self.variations or [])
        if self.weights is not None:
            if len(self.weights) != n:
                raise ValueError(f"weights: {len(self.weights)} weights for {n} variations")
            total = math.fsum(self.weights)
            if abs(total - 1) > 0.001:
                raise ValueError(f"weights: must sum to 1 (they sum to {total:g})")
        for name, seq in (("ranges", self.ranges), ("meta", self.meta)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name}: {len(seq)} entries for {n} variations")
        for name, r in [("range", self.range), ("namespace", self.namespace[1:] if self.namespace else None),
                        *(("ranges", x) for x in self.ranges or [])]:  # fmt: skip
            if r is not None and r[0] > r[1]:
                raise ValueError(f"{name}: the start must not be after the end")
        return self


class Environment(_Strict):
    enabled: bool = True
    rules: list[Rule] = Field(default_factory=list, max_length=200)


class Scheduled(_Strict):
    """A change that applies itself: the flag on or off in one environment at a time (UTC)."""

    at: datetime
    environment: str = Field(pattern=ENV_PATTERN)
    enabled: bool


class FlagDocument(_Strict):
    """The body of `PUT /api/v1/flags/{key}`."""

    value_type: ValueType = "boolean"
    default_value: Any = None
    description: str = Field("", max_length=2000)
    tags: list[Annotated[str, Field(min_length=1, max_length=60)]] = Field(
        default_factory=list, max_length=30
    )
    environments: dict[Annotated[str, Field(pattern=ENV_PATTERN)], Environment] = Field(
        default_factory=dict, max_length=20
    )
    schedule: list[Scheduled] = Field(default_factory=list, max_length=50)


def _fits(value: Any, value_type: str) -> bool:
    if value_type == "boolean":
        return isinstance(value, bool)
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "number":
        return is_number(value) and math.isfinite(value)
    return True


def parse_flag(body: Any) -> dict[str, Any]:
    """The stored form of a flag document, or FlagError naming the first problem. Rules
    without an id get one (`<environment>-<n>`) so history and results can name them."""
    if not isinstance(body, dict):
        raise FlagError("body: a JSON object with value_type, default_value and environments")
    try:
        doc = FlagDocument.model_validate(body)
    except ValidationError as e:
        raise FlagError(describe(e)) from None
    vt = doc.value_type
    if doc.default_value is None and vt == "boolean":
        doc.default_value = False
    if not _fits(doc.default_value, vt):
        raise FlagError(f"default_value: must be a {vt} for a {vt} flag")
    out = doc.model_dump(mode="json", exclude_none=True)
    out["default_value"] = doc.default_value
    for env, settings in doc.environments.items():
        rules = []
        for i, rule in enumerate(settings.rules):
            where = f"environments.{env}.rules[{i}]"
            try:
                if rule.condition is not None:
                    check_condition(rule.condition, f"{where}.condition")
                for j, parent in enumerate(rule.parentConditions or []):
                    check_condition(parent.condition, f"{where}.parentConditions[{j}].condition")
            except ConditionError as ce:
                raise FlagError(str(ce)) from None
            values = [rule.force] if "force" in rule.model_fields_set else rule.variations or []
            for v in values:
                if not _fits(v, vt):
                    field = "force" if "force" in rule.model_fields_set else "variations"
                    raise FlagError(f"{where}.{field}: {v!r} is not a {vt}")
            raw = rule.model_dump(mode="json", exclude_unset=True)
            raw.setdefault("id", f"{env}-{i + 1}")
            rules.append(raw)
        out["environments"][env] = {"enabled": settings.enabled, "rules": rules}
    return out


def payload_feature(doc: dict[str, Any], environment: str) -> dict[str, Any] | None:
    """The flag as GrowthBook's payload carries it in one environment: None when it is off
    there (the kill switch), or when the environment is not configured (then: its default)."""
    env = doc.get("environments", {}).get(environment)
    if env is None:
        return {"defaultValue": doc.get("default_value")}
    if not env.get("enabled", True):
        return None
    feature: dict[str, Any] = {"defaultValue": doc.get("default_value")}
    if env.get("rules"):
        feature["rules"] = env["rules"]
    return feature


def describe(e: ValidationError) -> str:
    """Pydantic's first error as `place: what`."""
    err = e.errors()[0]
    where = ""
    for part in err["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part != "[key]":
            where += f".{part}" if where else str(part)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if "[key]" in err["loc"]:
        msg = f"not a valid environment name ({msg}: lowercase letters, digits, - and _)"
    return f"{where}: {msg}" if where else msg


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed between two JSON documents, as paths with their old and new values."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{k}" if path else str(k)
            out += diff(before.get(k, _ABSENT), after.get(k, _ABSENT), sub)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out += diff(b, a, f"{path}[{i}]")
        return out
    if before == after and type(before) is type(after):
        return []
    return [{"path": path or "$", **({} if before is _ABSENT else {"before": before}),
             **({} if after is _ABSENT else {"after": after})}]  # fmt: skip


_ABSENT: Any = object()
