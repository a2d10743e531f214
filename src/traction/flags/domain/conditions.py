"""Targeting conditions, GrowthBook's MongoDB-like language, compiled once into closures.

A condition is JSON: `{"country": "US", "age": {"$gte": 18}, "$or": [...]}`. Every GrowthBook
SDK evaluates it with JavaScript's semantics (loose `<` between a string and a number,
`value + ""` for a string condition, `===` for `$eq`), so this does too: the helpers below
are those semantics in Python, and the shared conformance suite holds them to it.

Compiling (rather than walking the JSON on every evaluation) is where the speed comes from:
a flag's rules are compiled when its payload is loaded, and an evaluation is a few calls.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Attrs = Mapping[str, Any]
Predicate = Callable[[Attrs], bool]
ValueTest = Callable[[Any], bool]


class ConditionError(ValueError):
    """A condition that cannot be compiled (raised by `check`, never by evaluation)."""


# -- JavaScript semantics ---------------------------------------------------------------------


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def js_type(v: Any) -> str:
    if v is None:  # a missing attribute reads as null too, as in every SDK
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def js_string(v: Any) -> str:
    """`String(v)`."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, list):
        return ",".join("" if x is None else js_string(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    return str(v)


def js_number(v: Any) -> float:
    """`Number(v)` (NaN for what does not convert)."""
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if is_number(v):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if s == "":
            return 0.0
        try:
            if s.lower().startswith(("0x", "-0x", "+0x")):
                return math.nan if s[0] in "+-" else float(int(s, 16))
            if s in ("Infinity", "+Infinity", "-Infinity"):
                return float(s.replace("Infinity", "inf"))
            if s.lower() in ("inf", "+inf", "-inf", "nan", "infinity"):
                return math.nan
            return float(s)
        except ValueError:
            return math.nan
    if isinstance(v, list):
        if not v:
            return 0.0
        if len(v) == 1:
            return js_number(js_string(v[0]))
    return math.nan


def js_truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    if is_number(v):
        return v != 0 and not (isinstance(v, float) and math.isnan(v))
    if isinstance(v, str):
        return v != ""
    return True  # objects and arrays, even empty ones


def js_compare(a: Any, b: Any, op: str) -> bool:
    """`a < b` and friends: strings compare as strings (by UTF-16 code units), anything else
    as numbers; NaN compares false."""
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.encode("utf-16-be")
        y: Any = b.encode("utf-16-be")
    else:
        x, y = js_number(a), js_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    if op == "$lt":
        return bool(x < y)
    if op == "$lte":
        return bool(x <= y)
    if op == "$gt":
        return bool(x > y)
    return bool(x >= y)


def js_strict_equal(a: Any, b: Any) -> bool:
    """`a === b`: same type and value; objects and arrays only if the same object."""
    if is_number(a) and is_number(b):
        return bool(a == b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list):
        return a is b
    return bool(a == b)


def json_text(v: Any) -> str | None:
    """`JSON.stringify(v)` for comparing objects and arrays (key order kept, like JS)."""
    return json.dumps(_jsonable(v), separators=(",", ":"), ensure_ascii=False)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def padded_version(v: Any) -> str:
    """A version string that sorts as versions do: `v1.2.3-rc.1+build` -> parts left-padded,
    a release above its pre-releases (`~` is the largest printable ASCII)."""
    if is_number(v):
        v = js_string(v)
    if not isinstance(v, str) or not v:
        v = "0"
    parts = re.split(r"[-.]", re.sub(r"^v|\+.*$", "", v))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(p.rjust(5) if p.isdigit() and p.isascii() else p for p in parts)


def get_path(attrs: Any, path: str) -> Any:
    current = attrs
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return None  # missing reads as null
    return current


# -- compiling --------------------------------------------------------------------------------


def is_operator_object(v: Any) -> bool:
    return (
        isinstance(v, dict) and bool(v) and all(isinstance(k, str) and k.startswith("$") for k in v)
    )


def compile_condition(cond: Any, groups: Mapping[str, Any] | None = None) -> Predicate:
    """A predicate over attributes. `groups`: saved groups (`$inGroup`), id -> values."""
    groups = groups or {}
    if not isinstance(cond, dict):
        return lambda attrs: False
    tests: list[Predicate] = []
    for key, value in cond.items():
        if key == "$or":
            tests.append(_any_of(value, groups))
        elif key == "$nor":
            either = _any_of(value, groups)
            tests.append(lambda a, f=either: not f(a))  # type: ignore[misc]
        elif key == "$and":
            tests.append(_all_of(value, groups))
        elif key == "$not":
            inner = compile_condition(value, groups)
            tests.append(lambda a, f=inner: not f(a))  # type: ignore[misc]
        else:
            vt = compile_value(value, groups)
            if "." in key:
                tests.append(lambda a, k=key, t=vt: t(get_path(a, k)))  # type: ignore[misc]
            else:
                tests.append(lambda a, k=key, t=vt: t(a.get(k) if isinstance(a, dict) else None))  # type: ignore[misc]
    return _conjunction(tests)


def _conjunction(tests: list[Predicate]) -> Predicate:
    """All of `tests`, short-circuiting, without a generator per call."""
    if not tests:
        return lambda attrs: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda attrs: first(attrs) and second(attrs)

    def every(attrs: Attrs) -> bool:
        for t in tests:  # noqa: SIM110 (a loop: no generator object per call)
            if not t(attrs):
                return False
        return True

    return every


def _any_of(conds: Any, groups: Mapping[str, Any]) -> Predicate:
    if not isinstance(conds, list) or not conds:
        return lambda attrs: True  # an empty $or passes (as in every SDK)
    preds = [compile_condition(c, groups) for c in conds]
    return lambda attrs: any(p(attrs) for p in preds)


def _all_of(conds: Any, groups: Mapping[str, Any]) -> Predicate:
    if not isinstance(conds, list):
        return lambda attrs: False
    preds = [compile_condition(c, groups) for c in conds]
    return lambda attrs: all(p(attrs) for p in preds)


def compile_value(cond: Any, groups: Mapping[str, Any]) -> ValueTest:
    """A test of one attribute's value against the condition on it."""
    if isinstance(cond, str):
        return lambda v: (v if isinstance(v, str) else js_string(v)) == cond
    if is_number(cond):
        return lambda v: js_number(v) == cond
    if isinstance(cond, bool):
        return lambda v: v is not None and js_truthy(v) == cond
    if cond is None:
        return lambda v: v is None
    if isinstance(cond, list) or not is_operator_object(cond):
        text = json_text(cond)
        return lambda v: json_text(v) == text
    return _conjunction([_operator(op, expected, groups) for op, expected in cond.items()])


def _strict_key(x: Any, insensitive: bool = False) -> Any:
    """A key under which two values are equal exactly when `===` says so (numbers across int
    and float, never a bool with a number); None for objects and arrays (never `===`)."""
    if isinstance(x, str):
        return ("s", x.lower() if insensitive else x)
    if isinstance(x, bool):
        return ("b", x)
    if isinstance(x, int | float):
        return ("n", float(x))
    if x is None:
        return ("z", None)
    return None


def membership(expected: list[Any], insensitive: bool = False) -> ValueTest:
    """`$in`: the value (or any element of an array value) is one of `expected`, by `===`;
    a set lookup, however long the list (saved groups can hold thousands of ids)."""
    pool = {k for x in expected if (k := _strict_key(x, insensitive)) is not None}

    def test(v: Any) -> bool:
        if isinstance(v, list):
            return any(_strict_key(x, insensitive) in pool for x in v)
        return _strict_key(v, insensitive) in pool

    return test


def _operator(op: str, expected: Any, groups: Mapping[str, Any]) -> ValueTest:
    if op in ("$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte"):
        target = padded_version(expected)
        cmp = {"$veq": lambda a: a == target, "$vne": lambda a: a != target,
               "$vgt": lambda a: a > target, "$vgte": lambda a: a >= target,
               "$vlt": lambda a: a < target, "$vlte": lambda a: a <= target}[op]  # fmt: skip
        return lambda v: cmp(padded_version(v))
    if op == "$eq":
        return lambda v: js_strict_equal(v, expected)
    if op == "$ne":
        return lambda v: not js_strict_equal(v, expected)
    if op in ("$lt", "$lte", "$gt", "$gte"):
        return lambda v: js_compare(v, expected, op)
    if op == "$exists":
        if js_truthy(expected):
            return lambda v: v is not None
        return lambda v: v is None
    if op in ("$in", "$nin", "$ini", "$nini"):
        if not isinstance(expected, list):
            return lambda v: False
        found = membership(expected, insensitive=op.endswith("i"))
        if op.startswith("$n"):
            return lambda v: not found(v)
        return found
    if op in ("$all", "$alli"):
        if not isinstance(expected, list):
            return lambda v: False
        insensitive = op == "$alli"
        each = [_one_of_all(e, groups, insensitive) for e in expected]
        return lambda v: isinstance(v, list) and all(t(v) for t in each)
    if op == "$elemMatch":
        if is_operator_object(expected):
            vt = compile_value(expected, groups)
            return lambda v: isinstance(v, list) and any(vt(x) for x in v)
        pred = compile_condition(expected, groups)
        return lambda v: isinstance(v, list) and any(pred(x) for x in v)
    if op == "$size":
        vt = compile_value(expected, groups)
        return lambda v: isinstance(v, list) and vt(len(v))
    if op == "$type":
        return lambda v: js_type(v) == expected
    if op == "$not":
        vt = compile_value(expected, groups)
        return lambda v: not vt(v)
    if op in ("$regex", "$regexi"):
        try:
            rx = re.compile(_js_regex(expected), re.IGNORECASE if op == "$regexi" else 0)
        except (re.error, TypeError):
            return lambda v: False
        return lambda v: rx.search(js_string(v)) is not None
    if op in ("$inGroup", "$notInGroup"):
        members = groups.get(expected) if isinstance(expected, str) else None
        found = membership(members if isinstance(members, list) else [])
        if op == "$inGroup":
            return found
        return lambda v: not found(v)
    return lambda v: False  # an unknown operator never matches


def _one_of_all(expected: Any, groups: Mapping[str, Any], insensitive: bool) -> ValueTest:
    """`$all`: some element of the array passes this expected value."""
    if insensitive and isinstance(expected, str):
        low = expected.lower()
        return lambda arr: any(isinstance(x, str) and x.lower() == low for x in arr)
    vt = compile_value(expected, groups)
    return lambda arr: any(vt(x) for x in arr)


def _js_regex(pattern: Any) -> str:
    """A JavaScript regex source as Python's (the syntax differences that matter here)."""
    if not isinstance(pattern, str):
        raise TypeError
    return re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", pattern)


def check_condition(cond: Any, where: str = "condition") -> None:
    """Validates a condition for storage: an object, known operators with the right kinds of
    value, regexes that compile. Raises ConditionError naming the place."""
    if not isinstance(cond, dict):
        raise ConditionError(f"{where}: a condition is a JSON object")
    for key, value in cond.items():
        at = f"{where}.{key}"
        if key in ("$or", "$nor", "$and"):
            if not isinstance(value, list):
                raise ConditionError(f"{at}: a list of conditions")
            for i, c in enumerate(value):
                check_condition(c, f"{at}[{i}]")
        elif key == "$not":
            check_condition(value, at)
        elif key.startswith("$"):
            raise ConditionError(
                f"{at}: unknown operator at the top level (use $or, $nor, $and, $not)"
            )
        elif is_operator_object(value):
            _check_operators(value, at)


OPERATORS = {
    "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$exists", "$in", "$nin", "$ini", "$nini",
    "$all", "$alli", "$elemMatch", "$size", "$type", "$not", "$regex", "$regexi", "$inGroup",
    "$notInGroup", "$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte",
}  # fmt: skip
TYPES = {"string", "number", "boolean", "array", "object", "null", "undefined"}


def _check_operators(ops: dict[str, Any], where: str) -> None:
    for op, v in ops.items():
        at = f"{where}.{op}"
        if op not in OPERATORS:
            raise ConditionError(f"{at}: unknown operator (known: {', '.join(sorted(OPERATORS))})")
        if op in ("$in", "$nin", "$ini", "$nini", "$all", "$alli") and not isinstance(v, list):
            raise ConditionError(f"{at}: a list of values")
        if op in ("$regex", "$regexi"):
            try:
                re.compile(_js_regex(v))
            except (re.error, TypeError) as e:
                raise ConditionError(f"{at}: not a valid regular expression ({e})") from None
        if op == "$type" and v not in TYPES:
            raise ConditionError(f"{at}: one of {', '.join(sorted(TYPES))}")
        if op in ("$inGroup", "$notInGroup") and not isinstance(v, str):
            raise ConditionError(f"{at}: a saved group's id")
        if op == "$elemMatch":
            if is_operator_object(v):
                _check_operators(v, at)
            else:
                check_condition(v, at)
        if op in ("$not", "$size") and is_operator_object(v):
            _check_operators(v, at)
