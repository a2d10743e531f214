"""Feature and experiment evaluation on GrowthBook's payload, pure and compiled.

`Evaluator(payload)` compiles every rule's conditions once; `evaluate(key, context)` walks a
flag's rules in order — prerequisites (`parentConditions`), `filters`, a `force` rule with its
condition and rollout (`coverage` / `range` over the hash), or an experiment rule — and
answers the value with where it came from (`source`), as every GrowthBook SDK does on the
same payload (the shared conformance suite checks it). `run(experiment, context)` assigns a
variation, with forced variations, QA mode, namespaces, sticky buckets and bandit weights.

No I/O here: sticky-bucket documents live in the context, and the caller persists them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from traction.flags.domain.conditions import (
    Predicate,
    compile_condition,
    js_string,
    js_truthy,
)
from traction.flags.domain.hashing import (
    bucket_ranges,
    choose_variation,
    gb_hash,
    in_namespace,
    in_range,
    query_string_override,
)

# rule fields an experiment rule carries into the experiment it defines
EXPERIMENT_FIELDS = (
    "coverage", "weights", "hashAttribute", "fallbackAttribute", "disableStickyBucketing",
    "bucketVersion", "minBucketVersion", "namespace", "meta", "ranges", "name", "phase", "seed",
    "hashVersion", "filters", "condition",
)  # fmt: skip


@dataclass
class Context:
    """Who is asking, and how: what a GrowthBook SDK's context holds."""

    attributes: Mapping[str, Any] = field(default_factory=dict)
    url: str = ""
    forced_variations: Mapping[str, int] = field(default_factory=dict)
    qa_mode: bool = False
    enabled: bool = True
    # sticky bucketing: "attribute||value" -> {attributeName, attributeValue, assignments};
    # None turns it off (and with it the fallback attribute)
    sticky: dict[str, dict[str, Any]] | None = None
    bandits: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentResult:
    value: Any
    variation_id: int
    in_experiment: bool
    hash_used: bool
    hash_attribute: str
    hash_value: Any
    feature_id: str | None
    key: str
    sticky_bucket_used: bool = False
    bucket: float | None = None
    name: str | None = None
    passthrough: bool = False
    bandit: dict[str, Any] | None = None  # leafId, variationWeights, banditVersion

    def as_dict(self) -> dict[str, Any]:
        out = {"value": self.value, "variationId": self.variation_id,
               "inExperiment": self.in_experiment, "hashUsed": self.hash_used,
               "hashAttribute": self.hash_attribute, "hashValue": self.hash_value,
               "featureId": self.feature_id, "key": self.key,
               "stickyBucketUsed": self.sticky_bucket_used}  # fmt: skip
        if self.bucket is not None:
            out["bucket"] = self.bucket
        if self.name is not None:
            out["name"] = self.name
        if self.passthrough:
            out["passthrough"] = True
        if self.bandit:
            out.update(self.bandit)
        return out


@dataclass
class FeatureResult:
    value: Any
    source: str  # unknownFeature | defaultValue | force | experiment | prerequisite | cyclicPrerequisite
    rule_id: str = ""
    experiment: dict[str, Any] | None = None
    experiment_result: ExperimentResult | None = None

    @property
    def on(self) -> bool:
        return js_truthy(self.value)

    @property
    def off(self) -> bool:
        return not js_truthy(self.value)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "on": self.on, "off": self.off,
                               "source": self.source, "ruleId": self.rule_id}  # fmt: skip
        if self.experiment is not None:
            out["experiment"] = self.experiment
        if self.experiment_result is not None:
            out["experimentResult"] = self.experiment_result.as_dict()
        return out


class _Experiment:
    """An experiment with its condition and prerequisites compiled."""

    __slots__ = ("bandit_ref", "condition", "key", "parents", "ranges", "spec", "variations")

    def __init__(self, spec: dict[str, Any], groups: Mapping[str, Any]) -> None:
        self.spec = spec
        self.key = js_string(spec.get("key", ""))
        variations = spec.get("variations")
        self.variations: list[Any] = variations if isinstance(variations, list) else []
        cond = spec.get("condition")
        self.condition: Predicate | None = (
            compile_condition(cond, groups) if cond is not None else None
        )
        self.parents = _parents(spec.get("parentConditions"), groups)
        self.bandit_ref: str | None = spec.get("contextualBanditRef")
        self.ranges = spec.get("ranges") or bucket_ranges(
            len(self.variations), spec.get("coverage"), spec.get("weights")
        )


class _Rule:
    __slots__ = ("condition", "experiment", "id", "parents", "raw")

    def __init__(self, feature: str, raw: dict[str, Any], groups: Mapping[str, Any]) -> None:
        self.raw = raw
        self.id = js_string(raw.get("id", ""))
        cond = raw.get("condition")
        self.condition: Predicate | None = (
            compile_condition(cond, groups) if cond is not None else None
        )
        self.parents = _parents(raw.get("parentConditions"), groups)
        self.experiment: _Experiment | None = None
        variations = raw.get("variations")
        if "contextualBanditRef" in raw and isinstance(raw.get("contextualVariations"), list):
            variations = raw["contextualVariations"]
        if "force" not in raw and isinstance(variations, list):
            spec: dict[str, Any] = {"variations": variations, "key": raw.get("key") or feature}
            for f in EXPERIMENT_FIELDS:
                if f in raw:
                    spec[f] = raw[f]
            if "contextualBanditRef" in raw:
                spec["contextualBanditRef"] = raw["contextualBanditRef"]
            self.experiment = _Experiment(spec, groups)


def _parents(raw: Any, groups: Mapping[str, Any]) -> list[tuple[str, Predicate, bool]]:
    if not isinstance(raw, list):
        return []
    return [(js_string(p.get("id", "")), compile_condition(p.get("condition") or {}, groups),
             bool(p.get("gate"))) for p in raw if isinstance(p, dict)]  # fmt: skip


class Evaluator:
    """Evaluates one payload (`features`, `savedGroups`) for any number of contexts."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        features = payload.get("features") or {}
        self.groups: Mapping[str, Any] = payload.get("savedGroups") or {}
        self.defaults: dict[str, Any] = {}
        self.rules: dict[str, list[_Rule]] = {}
        for key, f in features.items():
            if not isinstance(f, dict):
                continue
            self.defaults[key] = f.get("defaultValue")
            self.rules[key] = [_Rule(key, r, self.groups) for r in f.get("rules") or []
                               if isinstance(r, dict)]  # fmt: skip
        self.sticky_attributes = sorted({
            a for rules in self.rules.values() for r in rules if r.experiment is not None
            for a in (r.experiment.spec.get("hashAttribute") or "id", r.experiment.spec.get("fallbackAttribute"))
            if a
        })  # fmt: skip

    # -- features ---------------------------------------------------------------------------

    def evaluate(self, key: str, ctx: Context) -> FeatureResult:
        return self._feature(key, ctx, ())

    def _feature(self, key: str, ctx: Context, outer: tuple[str, ...]) -> FeatureResult:
        """`outer`: the flags whose prerequisites led here (a cycle is reported, not run)."""
        if key in outer:
            return FeatureResult(None, "cyclicPrerequisite")
        rules = self.rules.get(key)
        if rules is None:
            return FeatureResult(None, "unknownFeature")
        stack = (*outer, key)
        attrs = ctx.attributes
        for rule in rules:
            skip = False
            for parent, cond, gate in rule.parents:
                res = self._feature(parent, ctx, stack)
                if res.source == "cyclicPrerequisite":
                    return FeatureResult(None, "cyclicPrerequisite")
                if not cond({"value": res.value}):
                    if gate:
                        return FeatureResult(None, "prerequisite")
                    skip = True
                    break
            if skip:
                continue
            raw = rule.raw
            filters = raw.get("filters")
            if filters and self._filtered_out(filters, ctx):
                continue
            if "force" in raw:
                if rule.condition is not None and not rule.condition(attrs):
                    continue
                if not self._in_rollout(raw, key, ctx):
                    continue
                return FeatureResult(raw["force"], "force", rule.id)
            exp = rule.experiment
            if exp is None:
                continue
            result = self._run(exp, key, ctx, stack)
            if result.in_experiment and not result.passthrough:
                spec = {k: v for k, v in exp.spec.items() if k != "contextualBanditRef"}
                if result.bandit:
                    spec["contextualBandit"] = dict(result.bandit)
                return FeatureResult(result.value, "experiment", rule.id, spec, result)
        return FeatureResult(self.defaults.get(key), "defaultValue")

    def _in_rollout(self, raw: Mapping[str, Any], feature: str, ctx: Context) -> bool:
        rng, coverage = raw.get("range"), raw.get("coverage")
        if rng is None and coverage is None:
            return True
        if rng is None and coverage == 0:
            return False
        fallback = raw.get("fallbackAttribute") if self._sticky_on(ctx, raw) else None
        _, value = hash_attribute(ctx.attributes, raw.get("hashAttribute"), fallback)
        if not js_truthy(value):
            return False
        n = gb_hash(js_string(raw.get("seed") or feature), value, raw.get("hashVersion") or 1)
        if n is None:
            return False
        if rng is not None:
            return in_range(n, rng)
        # half-open like every range: a coverage of k/10000 takes exactly k buckets
        return n < coverage if coverage is not None else True

    @staticmethod
    def _filtered_out(filters: Any, ctx: Context) -> bool:
        for f in filters:
            _, value = hash_attribute(ctx.attributes, f.get("attribute"))
            if not js_truthy(value):
                return True
            n = gb_hash(js_string(f.get("seed", "")), value, f.get("hashVersion") or 2)
            if n is None or not any(in_range(n, r) for r in f.get("ranges") or []):
                return True
        return False

    @staticmethod
    def _sticky_on(ctx: Context, spec: Mapping[str, Any]) -> bool:
        return ctx.sticky is not None and not spec.get("disableStickyBucketing")

    # -- experiments --------------------------------------------------------------------------

    def run(self, experiment: dict[str, Any], ctx: Context) -> ExperimentResult:
        """An inline experiment (`GrowthBook.run`)."""
        return self._run(_Experiment(experiment, self.groups), None, ctx, ())

    def _run(
        self, exp: _Experiment, feature: str | None, ctx: Context, stack: tuple[str, ...]
    ) -> ExperimentResult:
        spec, key, n_var = exp.spec, exp.key, len(exp.variations)
        if n_var < 2 or not ctx.enabled:
            return self._result(exp, -1, False, feature, ctx)
        forced = query_string_override(key, ctx.url, n_var)
        if forced is not None:
            return self._result(exp, forced, False, feature, ctx)
        if key in ctx.forced_variations:
            return self._result(exp, ctx.forced_variations[key], False, feature, ctx)
        if spec.get("status") == "draft" or spec.get("active") is False:
            return self._result(exp, -1, False, feature, ctx)
        sticky = self._sticky_on(ctx, spec)
        attr, value = hash_attribute(ctx.attributes, spec.get("hashAttribute"),
                                     spec.get("fallbackAttribute") if sticky else None)  # fmt: skip
        if not js_truthy(value):
            return self._result(exp, -1, False, feature, ctx)
        assigned, found, blocked = -1, False, False
        if sticky:
            assigned, blocked = self._sticky_variation(exp, ctx)
            found = assigned >= 0
        if not found:
            filters = spec.get("filters")
            if filters:
                if self._filtered_out(filters, ctx):
                    return self._result(exp, -1, False, feature, ctx)
            elif spec.get("namespace") and not in_namespace(value, spec["namespace"]):
                return self._result(exp, -1, False, feature, ctx)
            if exp.condition is not None and not exp.condition(ctx.attributes):
                return self._result(exp, -1, False, feature, ctx)
            for parent, cond, _gate in exp.parents:
                res = self._feature(parent, ctx, stack)
                if res.source == "cyclicPrerequisite" or not cond({"value": res.value}):
                    return self._result(exp, -1, False, feature, ctx)
        n = gb_hash(js_string(spec.get("seed") or key), value, spec.get("hashVersion") or 1)
        if n is None:
            return self._result(exp, -1, False, feature, ctx)
        bandit = None
        if not found:
            ranges = exp.ranges
            if exp.bandit_ref is not None:
                bandit = self._bandit(exp, ctx)
                ranges = spec.get("ranges") or bucket_ranges(
                    n_var, spec.get("coverage"), bandit["variationWeights"]
                )
            assigned = choose_variation(n, ranges)
        if blocked:
            return self._result(exp, -1, False, feature, ctx, sticky_used=True)
        if assigned < 0:
            return self._result(exp, -1, False, feature, ctx)
        if "force" in spec:
            force = spec["force"]
            return self._result(exp, -1 if force is None else force, False, feature, ctx)
        if ctx.qa_mode or spec.get("status") == "stopped":
            return self._result(exp, -1, False, feature, ctx)
        result = self._result(exp, assigned, True, feature, ctx, n, found, bandit)
        if sticky and ctx.sticky is not None:
            doc_key = f"{attr}||{js_string(value)}"
            doc = ctx.sticky.get(doc_key) or {"attributeName": attr, "attributeValue": js_string(value),
                                              "assignments": {}}  # fmt: skip
            exp_key = f"{key}__{spec.get('bucketVersion') or 0}"
            if doc["assignments"].get(exp_key) != result.key:
                ctx.sticky[doc_key] = {
                    **doc,
                    "assignments": {**doc["assignments"], exp_key: result.key},
                }
        return result

    def _sticky_variation(self, exp: _Experiment, ctx: Context) -> tuple[int, bool]:
        """(the variation a stored assignment gives, whether an older version blocks it)."""
        assert ctx.sticky is not None
        spec = exp.spec
        assignments: dict[str, Any] = {}
        fallback = spec.get("fallbackAttribute")
        if fallback:
            fa, fv = hash_attribute(ctx.attributes, fallback)
            assignments.update(
                (ctx.sticky.get(f"{fa}||{js_string(fv)}") or {}).get("assignments") or {}
            )
        ha, hv = hash_attribute(ctx.attributes, spec.get("hashAttribute"))
        assignments.update(
            (ctx.sticky.get(f"{ha}||{js_string(hv)}") or {}).get("assignments") or {}
        )
        for version in range(int(spec.get("minBucketVersion") or 0)):
            if f"{exp.key}__{version}" in assignments:
                return -1, True
        chosen = assignments.get(f"{exp.key}__{spec.get('bucketVersion') or 0}")
        if chosen is None:
            return -1, False
        meta = spec.get("meta") or []
        for i, m in enumerate(meta):
            if isinstance(m, dict) and m.get("key") == chosen:
                return i, False
        return -1, False

    def _bandit(self, exp: _Experiment, ctx: Context) -> dict[str, Any]:
        """A contextual bandit's weights for this user: the first leaf whose condition the
        attributes meet, else the marginal weights (`leafId` -1)."""
        bandit = ctx.bandits.get(exp.bandit_ref or "") or {}
        weights = exp.spec.get("weights") or [1.0 / len(exp.variations)] * len(exp.variations)
        out = {
            "leafId": -1,
            "variationWeights": weights,
            "banditVersion": bandit.get("banditVersion"),
        }
        for leaf in bandit.get("contexts") or []:
            if isinstance(leaf, dict) and compile_condition(
                leaf.get("condition") or {}, self.groups
            )(ctx.attributes):
                out = {"leafId": leaf.get("leafId", leaf.get("id")),
                       "variationWeights": leaf.get("variationWeights") or weights,
                       "banditVersion": bandit.get("banditVersion")}  # fmt: skip
                break
        return out

    def _result(
        self, exp: _Experiment, index: int, hash_used: bool, feature: str | None, ctx: Context,
        bucket: float | None = None, sticky_used: bool = False, bandit: dict[str, Any] | None = None,
    ) -> ExperimentResult:  # fmt: skip
        spec = exp.spec
        in_exp = (
            isinstance(index, int)
            and not isinstance(index, bool)
            and 0 <= index < len(exp.variations)
        )
        if not in_exp:
            index = 0
        fallback = spec.get("fallbackAttribute") if self._sticky_on(ctx, spec) else None
        attr, value = hash_attribute(ctx.attributes, spec.get("hashAttribute"), fallback)
        metas = spec.get("meta")
        meta = (
            metas[index]
            if isinstance(metas, list) and index < len(metas) and isinstance(metas[index], dict)
            else {}
        )
        return ExperimentResult(
            value=exp.variations[index] if exp.variations else None, variation_id=index,
            in_experiment=in_exp, hash_used=hash_used, hash_attribute=attr, hash_value=value,
            feature_id=feature, key=js_string(meta.get("key")) if meta.get("key") else str(index),
            sticky_bucket_used=sticky_used, bucket=bucket,
            name=meta.get("name") or None, passthrough=bool(meta.get("passthrough")),
            bandit=bandit if in_exp and hash_used else None,
        )  # fmt: skip


def hash_attribute(
    attrs: Mapping[str, Any], attribute: str | None, fallback: str | None = None
) -> tuple[str, Any]:
    """(the attribute hashed, its value): `attribute` (default `id`), or the fallback when the
    first is empty."""
    name = attribute or "id"
    value = attrs.get(name)
    if not hashable(value):
        value = ""
        if fallback:
            alt = attrs.get(fallback)
            if hashable(alt):
                return fallback, alt
    return name, value


def hashable(v: Any) -> bool:
    """What can identify a user (the JS SDK's `isHashable`): a non-empty string or a finite,
    non-zero number; never a boolean, an object or an array."""
    if isinstance(v, str):
        return v != ""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return v != 0 and math.isfinite(v)
