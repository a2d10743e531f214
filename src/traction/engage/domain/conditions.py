"""The analytics' property filters evaluated in Python, on one event and one person, with the
meaning the SQL gives them (values compared as text, numbers as numbers), so a journey's
trigger or branch means what the same filter means in an insight."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from traction.analytics.domain.specs import EventMatcher, PropertyFilter


def _text(v: Any) -> str:
    """A value as the SQL reads it (`json_extract_string` of the stored JSON): strings as they
    are, `true`/`false`, numbers and nested values as their JSON text (orjson's, the log's)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return orjson.dumps(v).decode()


_DECIMAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


def _number(v: Any) -> float | None:
    """`TRY_CAST(text AS DOUBLE)`: numbers, and text that spells a decimal number."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str) and _DECIMAL.match(v):
        return float(v)
    return None


def _time(v: Any) -> datetime | None:
    """`TRY_CAST(text AS TIMESTAMP)`: an ISO date, or date and time."""
    if isinstance(v, str) and _TIMESTAMP.match(v):
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            return None
    return None


def _lookup(source: Mapping[str, Any], name: str) -> Any:
    """A top-level key, dots and all (`utm.source` is one key), as the SQL reads it
    (`json_extract_string(col, '$."utm.source"')`): the same filter, the same meaning."""
    return source.get(name)


def holds(
    f: PropertyFilter,
    event: Mapping[str, Any],
    person: Mapping[str, Any],
    account: Mapping[str, Any] | None = None,
) -> bool:
    """The filter on one event and person, as `analytics.compile.params.filter_sql` means it
    (a hypothesis test runs both on the same values): a missing value matches only
    `not_equals`, `not_in` and `is_not_set`; a comparison SQL cannot make (a number with
    text that is not one) is false."""
    source = {"event": event, "person": person, "account": account or {}}[f.source]
    actual = _lookup(source, f.property)
    op, want = f.operator, f.value
    if op == "is_set":
        return actual is not None
    if op == "is_not_set":
        return actual is None
    if actual is None:
        return op in ("not_equals", "not_in")
    if op in ("equals", "not_equals"):
        if isinstance(want, int | float) and not isinstance(want, bool):
            number = _number(actual)
            if number is None:
                return False  # (SQL: the cast fails, and NULL is not true either way)
            same = number == float(want)
        else:
            same = _text(actual) == _text(want)
        return same if op == "equals" else not same
    if op in ("in", "not_in"):
        inside = _text(actual) in {_text(w) for w in want or []}  # type: ignore[union-attr]
        return inside if op == "in" else not inside
    if op == "contains":
        return _text(want).lower() in _text(actual).lower()
    if op == "regex":
        try:
            return re.search(_text(want), _text(actual)) is not None
        except re.error:
            return False
    if op in ("before", "after"):
        a, w = _time(actual), _time(_text(want))
        if a is None or w is None:
            return False
        return a < w if op == "before" else a > w
    a_num, w_num = _number(actual), _number(want)
    if a_num is None or w_num is None:
        return False
    return {"gt": a_num > w_num, "gte": a_num >= w_num, "lt": a_num < w_num,
            "lte": a_num <= w_num}[op]  # fmt: skip


def matches(
    m: EventMatcher, name: str | None, props: Mapping[str, Any], person: Mapping[str, Any]
) -> bool:
    return name == m.event and all(holds(f, props, person) for f in m.filters)


def triggers(
    t: Any, kind: str | None, name: str | None, props: Mapping[str, Any], person: Mapping[str, Any]
) -> bool:
    """Does this event start the journey (`t`: a journeys.Trigger; inactivity is scanned)?"""
    if t.identify:  # the traits this call set (stored as `$set`): a change, not a state
        raw = props.get("$set")
        traits: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        return (
            kind == "identify" and bool(traits) and all(holds(f, traits, person) for f in t.filters)
        )
    return (
        t.event_name is not None
        and name == t.event_name
        and all(holds(f, props, person) for f in t.event_filters)
    )


def may_trigger(t: Any, kind: str | None, name: str | None, props: Mapping[str, Any]) -> bool:
    """`triggers` without the person: False only when the event cannot start the journey
    whoever sent it (the reactor's pre-check, before any query)."""
    if t.identify:
        if kind != "identify":
            return False
        raw = props.get("$set")
        props = raw if isinstance(raw, Mapping) else {}
        if not props:
            return False
        return all(holds(f, props, {}) for f in t.filters if f.source == "event")
    if t.event_name is None or name != t.event_name:
        return False
    return all(holds(f, props, {}) for f in t.event_filters if f.source == "event")


Check = Callable[[Mapping[str, Any]], bool]


def compile_filter(f: PropertyFilter) -> Check:
    """`holds` on one source (an event's properties), with the filter's own work done once:
    the reactor checks every event of a triggering name, so this is its hot path. The
    common operators are closures; the rest call `holds` (same meaning by construction)."""
    path, op = f.property, f.operator

    def get(src: Mapping[str, Any]) -> Any:
        return src.get(path)

    if op == "is_set":
        return lambda src: get(src) is not None
    if op == "is_not_set":
        return lambda src: get(src) is None
    numeric = isinstance(f.value, int | float) and not isinstance(f.value, bool)
    if op in ("in", "not_in") or (op in ("equals", "not_equals") and not numeric):
        wanted = {_text(w) for w in f.value} if isinstance(f.value, list) else {_text(f.value)}
        positive = op in ("equals", "in")

        def check(src: Mapping[str, Any]) -> bool:
            v = get(src)
            if v is None:
                return not positive
            return ((v if type(v) is str else _text(v)) in wanted) == positive

        return check
    return lambda src: holds(f, src, src, src)


def compile_start(t: Any) -> Callable[[str | None, Mapping[str, Any]], bool]:
    """`may_trigger` for one trigger and its own event name, compiled once (see
    `compile_filter`): (kind, properties) -> may this event start the journey?"""
    checks = [compile_filter(f) for f in (t.filters if t.identify else t.event_filters)
              if f.source == "event"]  # fmt: skip
    if t.identify:

        def identify(kind: str | None, props: Mapping[str, Any]) -> bool:
            raw = props.get("$set") if kind == "identify" else None
            return isinstance(raw, Mapping) and bool(raw) and all(c(raw) for c in checks)

        return identify
    return lambda kind, props: all(c(props) for c in checks)
