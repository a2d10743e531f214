from __future__ import annotations

import json
from typing import Any

from traction.analytics.compile.peractor import Reads
from traction.analytics.domain.specs import EventMatcher, PropertyFilter


class Params:
    """Collects bound values; `add` returns the placeholder to put in the SQL text."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def json_path(key: str) -> str:
    """A literal top-level key, dots and quotes included: `$."a.b"`."""
    return "$." + json.dumps(key)


def _as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def filter_sql(f: PropertyFilter, p: Params, column: str = "properties") -> str:
    """One filter as a SQL boolean. A property that is missing matches only `not_equals`,
    `not_in` and `is_not_set` (as in PostHog and Amplitude)."""
    text = f"json_extract_string({column}, {p.add(json_path(f.property))})"
    op, v = f.operator, f.value
    if op == "is_set":
        return f"({text} IS NOT NULL)"
    if op == "is_not_set":
        return f"({text} IS NULL)"
    if op in ("equals", "not_equals"):
        if isinstance(v, int | float) and not isinstance(v, bool):
            cond = f"(TRY_CAST({text} AS DOUBLE) = {p.add(float(v))})"
        else:
            cond = f"({text} = {p.add(_as_text(v))})"
        return cond if op == "equals" else f"({text} IS NULL OR NOT {cond})"
    if op in ("in", "not_in"):
        assert isinstance(v, list)
        cond = f"({text} IN (SELECT unnest({p.add([_as_text(x) for x in v])}::VARCHAR[])))"
        return cond if op == "in" else f"({text} IS NULL OR NOT {cond})"
    if op == "contains":
        return f"contains(lower({text}), lower({p.add(_as_text(v))}))"
    if op == "regex":
        return f"regexp_matches({text}, {p.add(_as_text(v))})"
    if op in ("gt", "gte", "lt", "lte"):
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        return f"(TRY_CAST({text} AS DOUBLE) {sym} {p.add(float(v))})"  # type: ignore[arg-type]
    if op in ("before", "after"):
        sym = "<" if op == "before" else ">"
        return f"(TRY_CAST({text} AS TIMESTAMP) {sym} CAST({p.add(_as_text(v))} AS TIMESTAMP))"
    raise ValueError(f"unknown operator {op!r}")  # the spec model makes this unreachable


RESERVED = {"$any": "true", "$page": "type = 'page'", "$screen": "type = 'screen'"}


def matcher_sql(
    m: EventMatcher,
    p: Params,
    name_col: str = "name",
    props_col: str = "properties",
    person_col: str = "person_traits",
    account_col: str = "account_traits",
) -> str:
    """`$any` matches every event, `$page`/`$screen` every page or screen call; anything else
    is an event name."""
    if m.event in RESERVED:
        type_col = name_col[: -len("name")] + "type"
        parts = [RESERVED[m.event].replace("type", type_col)]
    else:
        parts = [f"{name_col} = {p.add(m.event)}"]
    cols = {"event": props_col, "person": person_col, "account": account_col}
    parts += [filter_sql(f, p, cols[f.source]) for f in m.filters]
    return "(" + " AND ".join(parts) + ")"


def reads_of(*matchers: EventMatcher | None) -> Reads | None:
    """The events `matchers` can match, by name and call type; None when one matches any
    event (`$any`, or no matcher at all)."""
    if any(m is None or m.event == "$any" for m in matchers):
        return None
    events = {m.event for m in matchers if m is not None}
    types = {RESERVED[e].split("'")[1] for e in events & RESERVED.keys()}
    return Reads(frozenset(events - RESERVED.keys()), frozenset(types))


RESOLVED_FROM = (
    "events e LEFT JOIN person_overrides o "
    "ON o.workspace_id = e.workspace_id AND o.old_person_id = e.person_id"
)
TRAITS_JOIN = (
    " LEFT JOIN person_traits pt ON pt.workspace_id = e.workspace_id"
    " AND pt.person_id = COALESCE(o.person_id, e.person_id)"
    " LEFT JOIN account_traits act ON act.workspace_id = e.workspace_id AND act.account_id = e.account_id"
)


def uses_traits(*matchers: EventMatcher | None) -> bool:
    return any(f.source != "event" for m in matchers if m is not None for f in m.filters)


def resolved_from(traits: bool) -> str:
    """Events with their current person, and (only if a filter needs them) the person's and
    the account's current traits as `pt.traits` / `act.traits`."""
    return RESOLVED_FROM + (TRAITS_JOIN if traits else "")


def trait_columns(traits: bool) -> str:
    return ", pt.traits AS person_traits, act.traits AS account_traits" if traits else ""


PERSON = "COALESCE(o.person_id, e.person_id)"
# An event's account: its account column, or (billing's events sent without one) the account
# its properties name. The revenue facts read accounts this way.
ACCOUNT = "COALESCE(e.account_id, json_extract_string(e.properties, '$.account'))"


def local_time(column: str, tz: str, p: Params) -> str:
    """`column` (naive UTC) as naive local time in the zone; UTC needs no conversion, which
    saves a time-zone lookup per row."""
    if tz == "UTC":
        return column
    return f"timezone({p.add(tz)}, {column} AT TIME ZONE 'UTC')"
