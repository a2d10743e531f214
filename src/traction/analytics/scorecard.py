"""The scorecard: every KPI for a period and the one before, kept warm.

A KPI's value depends on the events up to its range's end plus its look-ahead (conversion
windows, day-N retention). So a cached value stays exact while every event stored since it
was computed is timestamped after that point and no identities were merged: the usual case,
since new events are about now. Such a value is *final* once the data had reached past that
point when it was computed (before that, a later event can still close an open window).
Everything else is *stale* when new data arrives: the dashboard shows the stale value marked
"updating" and refreshes it in the background, while the API and CLI wait for the exact value.

The cache lives in this process; its final values are also kept in the StateStore
(`analytics.kept`), so the next process (a restart, `traction report`) computes only what is
not final. Another replica computes its own, which is only slower.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from traction.analytics.domain.kpis import (
    BY_KEY,
    CATALOG,
    KPI,
    KPIConfig,
    previous_range,
    scorecard_row,
)
from traction.analytics.domain.specs import DateRange, day_bounds

if TYPE_CHECKING:
    from traction.analytics.service import AnalyticsService


@dataclass(frozen=True)
class Entry:
    value: float | None
    seq: int  # the log's head when computed: events after it are new to this value
    changes: tuple[int, int]  # the workspace's merges and deletions when computed
    reads_until: datetime  # naive UTC: the value reads no event at or after this time
    final: bool  # the data had reached reads_until when it was computed


Key = tuple[str, str, DateRange, KPIConfig, str]  # workspace, KPI, range, config, zone

log = logging.getLogger(__name__)
# the insights whose computation is longest (the PLG facts: five queries, then Python)
_LONGEST = {"sessions": 0, "activation_retention": 1, "plg_revenue": 2}


class Keeps(Protocol):
    """Where final values outlive the process (`analytics.kept.KeptValues`)."""

    def key(self, key: Key) -> str: ...
    def load(self, workspace_id: str) -> dict[str, Entry]: ...
    def save(self, workspace_id: str, entries: dict[str, Entry]) -> None: ...


class Scorecard:
    MAX_ENTRIES = 4096

    def __init__(self, analytics: AnalyticsService, kept: Keeps | None = None) -> None:
        self.analytics = analytics
        self._kept = kept
        self._stored: dict[str, dict[str, Entry]] = {}  # per workspace, read once
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._refreshing: set[Key] = set()
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorecard")

    def rows(
        self,
        workspace_id: str,
        r: DateRange,
        config: KPIConfig | None = None,
        *,
        wait: bool = True,
    ) -> list[dict[str, Any]]:
        """Every KPI for `r` and the period before. `wait=False` (the dashboard) answers at
        once with stale values marked `updating` and refreshes them in the background."""
        prev = previous_range(r)
        values, updating = self.values(
            workspace_id, [k.key for k in CATALOG], [r, prev], config, wait=wait
        )
        return [
            scorecard_row(k, values[(k.key, r)], values[(k.key, prev)])
            | {"updating": (k.key, r) in updating or (k.key, prev) in updating}
            for k in CATALOG
        ]

    def values(
        self,
        workspace_id: str,
        kpis: Iterable[str],
        ranges: Iterable[DateRange],
        config: KPIConfig | None = None,
        *,
        wait: bool = True,
    ) -> tuple[dict[tuple[str, DateRange], float | None], set[tuple[str, DateRange]]]:
        """Each KPI over each range, and which of those are stale values being refreshed."""
        a = self.analytics
        config = config or a.kpi_config(workspace_id)
        tz = a._timezone(workspace_id)
        keys = [(workspace_id, k, p, config, tz) for k in kpis for p in ranges]
        stale, missing = self._classify(workspace_id, keys)
        if missing or (stale and wait):
            self._compute(missing + (stale if wait else []))
        if stale and not wait:
            self._refresh_later(stale)
        with self._lock:
            values = {(key[1], key[2]): self._entries[key].value for key in keys}
        updating = set() if wait else {(key[1], key[2]) for key in stale}
        return values, updating

    # -- what is still exact ------------------------------------------------------------------

    def _classify(self, workspace_id: str, keys: list[Key]) -> tuple[list[Key], list[Key]]:
        """Split the keys not known to be exact into stale (a value to show meanwhile) and
        missing; move the exact ones forward to the log's head."""
        seq, changes = self.analytics.data_version(workspace_id)
        self._restore(workspace_id, keys)
        with self._lock:
            entries = {k: self._entries.get(k) for k in keys}
        behind = [e.seq for e in entries.values() if e is not None and e.seq != seq]
        earliest_new = self._earliest_after(workspace_id, min(behind)) if behind else None
        exact, stale, missing = [], [], []
        for key, e in entries.items():
            if e is None:
                missing.append(key)
            elif e.changes == changes and (
                e.seq == seq
                or (e.final and (earliest_new is None or earliest_new >= e.reads_until))
            ):
                exact.append(key)
            else:
                stale.append(key)
        with self._lock:
            for key in exact:
                e = self._entries.get(key)
                if e is not None:
                    self._entries[key] = Entry(e.value, seq, changes, e.reads_until, e.final)
                    self._entries.move_to_end(key)
        return stale, missing

    def _restore(self, workspace_id: str, keys: list[Key]) -> None:
        """The final values an earlier process kept, for the keys not known here; checked
        like any other entry before they are used."""
        if self._kept is None:
            return
        with self._lock:
            absent = [k for k in keys if k not in self._entries]
        if not absent:
            return
        stored = self._stored.get(workspace_id)
        if stored is None:
            stored = self._stored[workspace_id] = self._kept.load(workspace_id)
        with self._lock:
            for key in absent:
                e = stored.get(self._kept.key(key))
                if e is not None and key not in self._entries:
                    self._entries[key] = e

    def _earliest_after(self, workspace_id: str, seq: int) -> datetime | None:
        """The earliest timestamp among this workspace's events stored after `seq`."""
        row = self.analytics._one_row(
            "SELECT min(timestamp) AS t FROM events WHERE workspace_id = $ws AND seq > $seq",
            {"ws": workspace_id, "seq": seq},
        )
        return row.get("t")

    # -- computing ------------------------------------------------------------------------------

    def _compute(self, keys: list[Key]) -> None:
        a = self.analytics
        ws = keys[0][0]
        # the version is read first (events stored meanwhile count as new), and once
        keys = _in_order(keys)
        with a.at_one_moment(ws) as (seq, changes):
            latest = a._latest_event(ws)
            # DuckDB releases the GIL while it runs a query: the KPIs run side by side, each
            # in a copy of this context (which holds the moment).
            with ThreadPoolExecutor(max_workers=4) as pool:
                futures = {
                    key: pool.submit(copy_context().run, a.kpi, ws, key[1], key[2], key[3])
                    for key in keys
                }
                values = {key: f.result() for key, f in futures.items()}
        computed = {}
        for key, value in values.items():
            until = reads_until(BY_KEY[key[1]], key[2], key[3], key[4])
            final = latest is not None and latest >= until
            computed[key] = Entry(value, seq, changes, until, final)
        with self._lock:
            for key, entry in computed.items():
                self._entries[key] = entry
                self._entries.move_to_end(key)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)
        self._keep(ws, {k: e for k, e in computed.items() if e.final})

    def _keep(self, workspace_id: str, entries: dict[Key, Entry]) -> None:
        """Final values outlive the process; one not kept is only computed again."""
        if self._kept is None or not entries:
            return
        try:
            self._kept.save(workspace_id, {self._kept.key(k): e for k, e in entries.items()})
        except Exception:  # the StateStore busy or gone: the values are still right here
            log.warning("scorecard values not kept", exc_info=True)

    def _refresh_later(self, keys: list[Key]) -> None:
        with self._lock:
            todo = [k for k in keys if k not in self._refreshing]
            self._refreshing.update(todo)
        if not todo:
            return

        def run() -> None:
            try:
                self._compute(todo)
            finally:
                with self._lock:
                    self._refreshing.difference_update(todo)

        self._background.submit(run)

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)


def _in_order(keys: list[Key]) -> list[Key]:
    """The order to compute KPIs in, so the query slots stay busy to the end: the longest
    first, then the rest; last the KPIs that read a result another KPI computes (ten PLG
    KPIs read one), which would otherwise hold threads waiting for it."""
    first: set[tuple[str, DateRange]] = set()

    def rank(key: Key) -> tuple[int, int]:
        insight = BY_KEY[key[1]].insight
        shared = (insight, key[2]) in first
        first.add((insight, key[2]))
        return (1 if shared else 0, _LONGEST.get(insight, len(_LONGEST)))

    ranks = [rank(k) for k in keys]
    return [k for _, k in sorted(zip(ranks, keys, strict=True), key=lambda p: p[0])]


def reads_until(k: KPI, r: DateRange, config: KPIConfig, tz: str) -> datetime:
    """The UTC moment from which no event can change `k` over `r`."""
    _, end = day_bounds(r, tz)
    return end + timedelta(days=k.lookahead_days(config))
