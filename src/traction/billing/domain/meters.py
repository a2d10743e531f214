"""Meters over events, pure: which events a meter counts, the value each adds, and the
aggregate over a list of events (what a recomputation from the raw log gives; the reactor's
running values must always equal it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from traction.billing.domain.catalog import Meter


def _lookup(props: Mapping[str, Any], path: str) -> Any:
    node: Any = props
    for part in path.split(".")[1:]:  # "$.a.b"
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def matches(meter: Meter, name: str | None, props: Mapping[str, Any]) -> bool:
    if name != meter.event:
        return False
    return all(
        props.get(k) == v and type(props.get(k)) is type(v) for k, v in meter.filters.items()
    )


def value_of(meter: Meter, props: Mapping[str, Any]) -> Decimal | str | None:
    """The event's contribution: None when the event does not carry a usable value (it is
    then skipped, as OpenMeter skips it)."""
    if meter.aggregation == "COUNT":
        return Decimal(1)
    assert meter.value_property is not None
    raw = _lookup(props, meter.value_property)
    if meter.aggregation == "UNIQUE_COUNT":
        return None if raw is None or isinstance(raw, dict | list) else str(raw)
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


class Running:
    """One meter's value over one window, fed event by event in any order. Keeps what the
    aggregation needs: a sum, a maximum, the distinct values, or the latest (time, seq, value)."""

    def __init__(self, aggregation: str) -> None:
        self.aggregation = aggregation
        self.total = Decimal(0)
        self.maximum: Decimal | None = None
        self.distinct: set[str] = set()
        self.latest: tuple[datetime, int, Decimal] | None = None

    def add(self, value: Decimal | str, at: datetime, seq: int) -> None:
        if self.aggregation == "UNIQUE_COUNT":
            self.distinct.add(str(value))
        elif self.aggregation in ("COUNT", "SUM"):
            self.total += Decimal(value)
        elif self.aggregation == "MAX":
            v = Decimal(value)
            self.maximum = v if self.maximum is None else max(self.maximum, v)
        else:  # LATEST: by event time, then by arrival
            key = (at, seq, Decimal(value))
            if self.latest is None or key[:2] > self.latest[:2]:
                self.latest = key

    @property
    def value(self) -> Decimal:
        if self.aggregation == "UNIQUE_COUNT":
            return Decimal(len(self.distinct))
        if self.aggregation == "MAX":
            return self.maximum if self.maximum is not None else Decimal(0)
        if self.aggregation == "LATEST":
            return self.latest[2] if self.latest is not None else Decimal(0)
        return self.total


def aggregate(meter: Meter, events: Iterable[Mapping[str, Any]]) -> Decimal:
    """The meter over `events` (each with name, properties, timestamp, seq)."""
    run = Running(meter.aggregation)
    for ev in events:
        props = ev.get("properties") or {}
        if matches(meter, ev.get("name"), props):
            v = value_of(meter, props)
            if v is not None:
                run.add(v, ev["timestamp"], int(ev["seq"]))
    return run.value
