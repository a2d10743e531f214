"""GrowthBook's language-agnostic SDK suite (`../shared/conformance/growthbook-cases.json`,
beside the checkout; read there, never copied): every section but `urlRedirect` and
`contextualBandit`, every case, against our evaluator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from traction.flags.domain.conditions import compile_condition
from traction.flags.domain.crypto import DecryptError, decrypt
from traction.flags.domain.evaluate import Context, Evaluator
from traction.flags.domain.hashing import (
    bucket_ranges,
    choose_variation,
    equal_weights,
    gb_hash,
    in_namespace,
    query_string_override,
)

CASES_FILE = (
    Path(__file__).resolve().parent.parent.parent / "shared/conformance/growthbook-cases.json"
)
CASES: dict[str, Any] = json.loads(CASES_FILE.read_text())


def cases(section: str) -> Any:
    return pytest.mark.parametrize(
        "case", CASES[section], ids=[f"{i}:{str(c[0])[:60]}" for i, c in enumerate(CASES[section])]
    )


def context(c: dict[str, Any], sticky: dict[str, Any] | None = None) -> Context:
    return Context(
        attributes=c.get("attributes") or {},
        url=c.get("url") or "",
        forced_variations=c.get("forcedVariations") or {},
        qa_mode=bool(c.get("qaMode")),
        enabled=c.get("enabled", True) is not False,
        sticky=sticky,
        bandits=c.get("contextualBandits") or {},
    )


def evaluator(c: dict[str, Any]) -> Evaluator:
    return Evaluator(
        {"features": c.get("features") or {}, "savedGroups": c.get("savedGroups") or {}}
    )


def rounded(x: Any) -> Any:
    """Floats to 6 places (JavaScript's sums differ in the last bits: 0.2 * 0.2)."""
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, list | tuple):
        return [rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return x


def test_the_suite_is_the_one_we_expect() -> None:
    counts = {k: len(v) for k, v in CASES.items() if isinstance(v, list)}
    assert counts["evalCondition"] == 248 and counts["feature"] == 55 and counts["run"] == 73


@cases("evalCondition")
def test_eval_condition(case: list[Any]) -> None:
    _name, cond, attrs, expected, *groups = case
    assert compile_condition(cond, groups[0] if groups else {})(attrs) is expected


@cases("hash")
def test_hash(case: list[Any]) -> None:
    seed, value, version, expected = case
    assert gb_hash(seed, value, version) == expected


@cases("getBucketRange")
def test_bucket_ranges(case: list[Any]) -> None:
    _name, (n, coverage, weights), expected = case
    assert rounded(bucket_ranges(n, coverage, weights)) == rounded(expected)


@cases("chooseVariation")
def test_choose_variation(case: list[Any]) -> None:
    _name, n, ranges, expected = case
    assert choose_variation(n, ranges) == expected


@cases("getQueryStringOverride")
def test_query_string_override(case: list[Any]) -> None:
    _name, key, url, variations, expected = case
    assert query_string_override(key, url, variations) == expected


@cases("inNamespace")
def test_in_namespace(case: list[Any]) -> None:
    _name, user, namespace, expected = case
    assert in_namespace(user, namespace) is expected


@cases("getEqualWeights")
def test_equal_weights(case: list[Any]) -> None:
    n, expected = case
    assert rounded(equal_weights(n)) == rounded(expected)


@cases("decrypt")
def test_decrypt(case: list[Any]) -> None:
    _name, payload, key, expected = case
    try:
        got = decrypt(payload, key)
    except DecryptError:
        got = None
    assert got == expected


@cases("feature")
def test_feature(case: list[Any]) -> None:
    _name, ctx, key, expected = case
    assert rounded(evaluator(ctx).evaluate(key, context(ctx)).as_dict()) == rounded(expected)


@cases("run")
def test_run(case: list[Any]) -> None:
    _name, ctx, experiment, value, in_experiment, hash_used = case
    r = evaluator(ctx).run(experiment, context(ctx))
    assert (r.value, r.in_experiment, r.hash_used) == (value, in_experiment, hash_used)


@cases("stickyBucket")
def test_sticky_bucket(case: list[Any]) -> None:
    """The documents of this user's attributes are loaded (others' are not), the feature is
    evaluated, and the documents after it are compared too."""
    _name, ctx, docs, key, expected, expected_docs = case
    ev = evaluator(ctx)
    attrs = ctx.get("attributes") or {}
    mine = {f"{a}||{attrs[a]}" for a in ev.sticky_attributes if a in attrs}
    sticky = {k: d for d in docs if (k := f"{d['attributeName']}||{d['attributeValue']}") in mine}
    result = ev.evaluate(key, context(ctx, sticky)).experiment_result
    assert rounded(result.as_dict() if result else None) == rounded(expected)
    assert sticky == expected_docs


# -- against the reference SDK on random payloads ---------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ATTR_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 50), st.sampled_from(["a", "b", "US", "1.2.3", ""])
)
# typed attributes: where a condition's value and the attribute's differ in type, the SDKs
# differ too (the JS SDK compares `value + ""` with a string, the Python package strictly);
# we follow the JS SDK, which is the one in browsers (so too for `null >= 0`: true in JS,
# false in the Python package)
PEOPLE = st.fixed_dictionaries({
    "id": st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans()),
    "n": st.integers(-5, 50),
    "country": st.one_of(st.none(), st.sampled_from(["a", "b", "US", ""])),
    "v": st.one_of(st.none(), st.sampled_from(["1.2.3", "0.9", "2.0.0-rc.1"])),
    "flag": st.one_of(st.none(), st.booleans()),
})  # fmt: skip
CONDITIONS = st.one_of(
    st.fixed_dictionaries({"country": st.sampled_from(["US", "a", "b"])}),
    st.fixed_dictionaries({"n": st.fixed_dictionaries({"$gte": st.integers(0, 40)})}),
    st.fixed_dictionaries(
        {"n": st.fixed_dictionaries({"$in": st.lists(st.integers(0, 50), max_size=4)})}
    ),
    st.fixed_dictionaries(
        {"v": st.fixed_dictionaries({"$vgt": st.sampled_from(["1.0.0", "1.2.3", "2.0"])})}
    ),
    st.fixed_dictionaries(
        {"$or": st.lists(st.fixed_dictionaries({"flag": st.booleans()}), max_size=2)}
    ),
)
RULES = st.one_of(
    # (no null force: the JS SDK, like us, forces null; the Python package skips the rule)
    st.fixed_dictionaries({"force": ATTR_VALUES.filter(lambda v: v is not None)}, optional={"condition": CONDITIONS,
                          "coverage": st.floats(0, 1), "hashVersion": st.sampled_from([1, 2])}),
    st.fixed_dictionaries({"variations": st.lists(st.integers(0, 9), min_size=1, max_size=4)},
                          optional={"condition": CONDITIONS, "coverage": st.floats(0, 1),
                                    "seed": st.sampled_from(["s1", "s2"]), "hashVersion": st.sampled_from([1, 2]),
                                    "hashAttribute": st.sampled_from(["id", "n"])}),
)  # fmt: skip


@given(
    st.lists(RULES, max_size=4),
    st.lists(PEOPLE, min_size=1, max_size=8),
)  # fmt: skip
def test_agrees_with_the_growthbook_package(
    rules: list[dict[str, Any]], people: list[dict[str, Any]]
) -> None:
    """Random rules and users: the `growthbook` package (the reference Python SDK) and our
    evaluator give the same value and source."""
    from growthbook import GrowthBook

    features = {"f": {"defaultValue": "default", "rules": rules}}
    ours = Evaluator({"features": features})
    for attrs in people:
        theirs = GrowthBook(features=features, attributes=attrs).eval_feature("f")
        mine = ours.evaluate("f", Context(attributes=attrs))
        assert (mine.value, mine.source) == (theirs.value, theirs.source), attrs
