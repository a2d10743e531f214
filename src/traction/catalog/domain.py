"""The event catalog's rules, pure: what an event or property is called in the catalog, what
type a value has, and how a batch of events adds to what is known.

The catalog is what a person picks from in the insight builder (and later in experiment
metrics, journey triggers and segments), so it follows the names the analytics engine
matches on: track events by name, every page view as `$page`, every screen as `$screen`;
identify traits as person properties, group traits as account properties.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

MAX_PROPERTIES_PER_EVENT = 300  # past this, an event's new keys are not catalogued
MAX_VALUES = 30  # top values kept per property (first come; counted from then on)
MAX_VALUE_LENGTH = 120
SOURCES = ("event", "person", "account")

PAGE, SCREEN = "$page", "$screen"


def catalog_event(kind: str, name: str | None) -> str | None:
    """The catalog name of a stored event, or None for identity calls (identify, group,
    alias: they feed the person and account traits instead)."""
    if kind == "track":
        return name
    if kind == "page":
        return PAGE
    if kind == "screen":
        return SCREEN
    return None


def infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "datetime" if _looks_like_datetime(value) else "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


def _looks_like_datetime(s: str) -> bool:
    if not (10 <= len(s) <= 35 and s[4:5] == "-" and s[:4].isdigit()):
        return False
    try:
        (datetime if len(s) > 10 else date).fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def value_key(value: Any) -> str | None:
    """How a value is listed among the top values: scalars only, and not overly long."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        text = str(value)
        return text if len(text) <= MAX_VALUE_LENGTH else None
    return None


@dataclass
class EventTally:
    count: int = 0
    first: datetime | None = None
    last: datetime | None = None
    max_seq: int = 0

    def add(self, ts: datetime, seq: int) -> None:
        self.count += 1
        self.first = ts if self.first is None or ts < self.first else self.first
        self.last = ts if self.last is None or ts > self.last else self.last
        self.max_seq = max(self.max_seq, seq)


@dataclass
class PropertyTally:
    count: int = 0
    types: Counter[str] = field(default_factory=Counter)
    values: Counter[str] = field(default_factory=Counter)
    max_seq: int = 0

    @classmethod
    def of(cls, values: list[Any], max_seq: int) -> PropertyTally:
        """The tally of one property's values in a batch, worked out once per distinct value:
        a property mostly repeats a few values, and typing a text (is it a date-time?) is
        the dear part. A value is its type and itself, so True and 1 stay apart."""
        out = cls(count=len(values), max_seq=max_seq)
        distinct: Counter[tuple[type, Any]] = Counter()
        try:
            distinct.update(zip(map(type, values), values, strict=True))
        except TypeError:  # a list or an object among them: those one by one
            distinct.clear()
            for v in values:
                if isinstance(v, list | dict):
                    out.types[infer_type(v)] += 1
                else:
                    distinct[(type(v), v)] += 1
        for (typ, v), n in distinct.items():
            out.types[infer_type(v)] += n
            if typ is float and v == 0:  # 0.0 and -0.0 are equal but listed apart
                neg = sum(1 for x in values if type(x) is float and x == 0 and str(x)[0] == "-")
                out.values.update({"-0.0": neg, "0.0": n - neg})
                continue
            key = value_key(v)
            if key is not None:
                out.values[key] += n
        out.values = +out.values  # (no zero counts)
        return out


PropertyKey = tuple[str, str, str]  # (source, event or "", property)


@dataclass
class BatchTally:
    """What one batch adds, per workspace. Events at or below a row's `applied_seq` were
    counted already (a redelivered batch) and are skipped, which makes the update idempotent."""

    events: dict[tuple[str, str], EventTally] = field(default_factory=dict)
    properties: dict[tuple[str, PropertyKey], PropertyTally] = field(default_factory=dict)


def event_keys(batch: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    keys = set()
    for ev in batch:
        name = catalog_event(ev["type"], ev["name"])
        if name:
            keys.add((ev["workspace_id"], name))
    return keys


def property_sources(ev: Mapping[str, Any]) -> list[tuple[PropertyKey, Mapping[str, Any]]]:
    """(source, event, "") prefixes and the dict of properties each describes."""
    props = ev.get("properties") or {}
    name = catalog_event(ev["type"], ev["name"])
    if name is not None:
        return [(("event", name, ""), props)]
    traits = props.get("$set") if isinstance(props, dict) else None
    if not isinstance(traits, dict):
        return []
    if ev["type"] == "identify":
        return [(("person", "", ""), traits)]
    if ev["type"] == "group":
        return [(("account", "", ""), traits)]
    return []


def tally(
    batch: Iterable[Mapping[str, Any]],
    applied_events: Mapping[tuple[str, str], int],
    applied_properties: Mapping[tuple[str, PropertyKey], int],
    known_counts: Mapping[tuple[str, str, str], int] | None = None,
    *,
    counted: bool = False,
) -> BatchTally:
    """Adds up a batch. `applied_*`: the highest seq each row has counted already.
    `known_counts[(ws, source, event)]`: properties catalogued for it so far (for the cap).
    `counted=True` adds up the opposite: only what the rows have counted already (an
    erasure takes exactly that back out)."""

    def fresh(seq: int, applied: int) -> bool:
        return seq <= applied if counted else seq > applied

    out = BatchTally()
    per_event: Counter[tuple[str, str, str]] = Counter(known_counts or {})
    gathered: dict[tuple[str, PropertyKey], _Gathered] = {}
    by_scope: dict[tuple[str, str, str], dict[Any, _Gathered | None]] = {}

    def start(scope: tuple[str, str, str], prop: Any) -> _Gathered | None:
        """A property's first sight in the batch: None if it is not catalogued here."""
        ws, source, event = scope
        if source == "event" and prop in ("$set", "$set_once"):
            return None
        key = (ws, (source, event, str(prop)[:200]))
        if key in gathered:  # two names that are the same once cut to 200 characters
            return gathered[key]
        if key not in applied_properties:
            if per_event[scope] >= MAX_PROPERTIES_PER_EVENT:
                return None
            per_event[scope] += 1
        g = gathered[key] = _Gathered(applied_properties.get(key, 0))
        return g

    for ev in batch:
        ws, seq = ev["workspace_id"], int(ev["seq"])
        name = catalog_event(ev["type"], ev["name"])
        if name is not None and fresh(seq, applied_events.get((ws, name), 0)):
            out.events.setdefault((ws, name), EventTally()).add(ev["timestamp"], seq)
        for (source, event, _), props in property_sources(ev):
            if not isinstance(props, dict):  # (parsed JSON; `Mapping` was an ABC check an event)
                continue
            scope = (ws, source, event)
            seen = by_scope.get(scope)
            if seen is None:
                seen = by_scope[scope] = {}
            for prop, value in props.items():
                g = seen[prop] if prop in seen else seen.setdefault(prop, start(scope, prop))
                if g is None or (seq > g.applied if counted else seq <= g.applied):
                    continue
                g.values.append(value)
                if seq > g.max_seq:
                    g.max_seq = seq
    out.properties = {
        k: PropertyTally.of(g.values, g.max_seq) for k, g in gathered.items() if g.values
    }
    return out


@dataclass
class _Gathered:
    applied: int  # the highest seq its row has counted
    values: list[Any] = field(default_factory=list)
    max_seq: int = 0


def merge_values(
    existing: Mapping[str, int], new: Counter[str], cap: int = MAX_VALUES
) -> dict[str, int]:
    """Top values so far: counts of the kept values grow; a new value gets a place while there
    is room, the most frequent first. The result is ordered by count, highest first."""
    out = dict(existing)
    for value, n in new.most_common():
        if value in out:
            out[value] += n
        elif len(out) < cap:
            out[value] = n
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def main_type(types: Mapping[str, int]) -> str:
    """The type most values had (nulls count only when there is nothing else)."""
    real = {t: n for t, n in types.items() if t != "null"}
    pool = real or dict(types)
    return max(sorted(pool), key=lambda t: pool[t]) if pool else "null"


def subtract_values(existing: Mapping[str, int], gone: Counter[str]) -> dict[str, int]:
    """Top values after some events are erased: their counts come off, and a value left with
    none is dropped (it may have been a person's own, like an email)."""
    out = {v: n - gone.get(v, 0) for v, n in existing.items()}
    return {v: n for v, n in sorted(out.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0}
