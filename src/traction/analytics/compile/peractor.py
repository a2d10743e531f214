"""A query split where its rows stop depending on more than one actor.

Most insights first compute one row (or a few) per actor from that actor's events alone (a
person's furthest funnel step, their activation time, their first sessions, their active
days), then aggregate those rows. `PerActor` keeps the two parts apart: `ctes` end with the
per-actor relation `name` (a column `actor`), `tail_ctes` and `select` aggregate it.

That split is what lets a result follow new events cheaply (`analytics.incremental`): the
per-actor rows are kept, only the actors the new events belong to are computed again (from
their events alone), and the aggregate runs over the patched rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")

# the names the events of the actors being recomputed (and those events' merged ids) are
# registered under
AFFECTED = "__affected_events"
AFFECTED_OVERRIDES = "__affected_overrides"


def actors_of(aggregate_by: str) -> Literal["person", "account"]:
    return "person" if aggregate_by == "person" else "account"


def used(sql: str, values: dict[str, object]) -> dict[str, object]:
    """The bound values `sql` refers to (DuckDB refuses values a statement does not use)."""
    names = set(_PARAM.findall(sql))
    return {k: v for k, v in values.items() if k in names}


@dataclass(frozen=True)
class Reads:
    """The events a query's per-actor rows can depend on, by name or by call type (`page`,
    `screen`). An actor's new events that are none of these leave its rows as they were: a
    dashboard view changes no funnel of sign-ups, so the funnel is not computed again for it."""

    names: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def any_of(self, kinds: Iterable[tuple[str | None, str | None]]) -> bool:
        """Whether one of the (name, type) pairs is an event these rows read."""
        return any(name in self.names or kind in self.types for name, kind in kinds)


@dataclass(frozen=True)
class PerActor:
    ctes: tuple[str, ...]  # "x AS (...)", the last one defining `name`
    name: str
    select: str  # the final SELECT, over `name` and `tail_ctes`
    values: dict[str, object]
    tail_ctes: tuple[str, ...] = ()
    # What a row depends on: one person's events, one account's, or (`event`) one event
    # alone, so new events only add rows (such rows carry the event's `seq`).
    by: Literal["person", "account", "event"] = "person"
    # False when a row also depends on other actors' events (an account trait filter reads
    # what any member did): such a query is always computed whole.
    separable: bool = True
    # The events the rows read (None: any event can change them, as in sessions).
    reads: Reads | None = None

    @property
    def sql(self) -> str:
        """The whole query, as one statement."""
        return "WITH " + ",\n".join(self.ctes + self.tail_ctes) + "\n" + self.select

    def params(self, sql: str) -> dict[str, object]:
        return used(sql, self.values)

    def rows_sql(self, affected_only: bool = False) -> str:
        """The per-actor rows; with `affected_only`, read from the registered events of the
        actors being recomputed instead of the whole log (a CTE shadows the table)."""
        shadow = (
            f"events AS (SELECT * FROM {AFFECTED})",
            f"person_overrides AS (SELECT * FROM {AFFECTED_OVERRIDES})",
        )
        ctes = (shadow if affected_only else ()) + self.ctes
        return "WITH " + ",\n".join(ctes) + f"\nSELECT * FROM {self.name}"

    def aggregate_sql(self, source: str) -> str:
        """The aggregate over per-actor rows registered as `source`."""
        ctes = (f"{self.name} AS (SELECT * FROM {source})", *self.tail_ctes)
        return "WITH " + ",\n".join(ctes) + "\n" + self.select

    def with_select(self, select: str, values: dict[str, object] | None = None) -> PerActor:
        return replace(self, select=select, values={**self.values, **(values or {})})
