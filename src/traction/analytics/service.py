"""Runs specs on the EventStore. Results are cached by (workspace, spec, data version): a
dashboard refresh is a dictionary lookup until new events or merges arrive."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from traction.analytics.compile.activation import activation_query, activation_retention_query
from traction.analytics.compile.engagement import (
    active_users_query,
    compile_lifecycle,
    feature_adoption_query,
    sessions_query,
)
from traction.analytics.compile.funnel import compile_funnel_dropoffs, funnel_query
from traction.analytics.compile.peractor import PerActor
from traction.analytics.compile.retention import compile_retention
from traction.analytics.compile.revenue import (
    account_events_query,
    changes_query,
    people_query,
)
from traction.analytics.compile.trend import OTHER, compile_trend_people, compile_trend_series
from traction.analytics.domain.kpis import (
    BY_KEY,
    KPIConfig,
    RevenueSpec,
)
from traction.analytics.domain.periods import buckets, is_complete, last_observable_period
from traction.analytics.domain.results import (
    ActivationResult,
    ActivationRetentionResult,
    ActiveUsersResult,
    FeatureAdoptionResult,
    FunnelResult,
    LifecycleResult,
    RetentionResult,
    SessionsResult,
    TrendLine,
    TrendResult,
    activation_result,
    fill_series,
    funnel_breakdown,
    funnel_result,
    lifecycle_result,
    retention_result,
    sessions_result,
)
from traction.analytics.domain.specs import (
    MIN_DATE,
    ActivationSpec,
    ActiveUsersSpec,
    DateRange,
    EventMatcher,
    FeatureAdoptionSpec,
    FunnelSpec,
    LifecycleSpec,
    RetentionSpec,
    SessionsSpec,
    TrendSpec,
    day_bounds,
)
from traction.analytics.incremental import ActorRows
from traction.analytics.scorecard import Keeps, Scorecard
from traction.billing.domain import plg
from traction.billing.domain.revenue import Change
from traction.store.events import DuckDBEventStore
from traction.workspaces.service import WorkspaceService


class QueryTooExpensive(Exception):
    """A query over its time limit or row cap (HTTP 422: the user can narrow it)."""


class AnalyticsBusy(Exception):
    """Every analytics slot stayed taken for the whole time budget (HTTP 503, retry later)."""


log = logging.getLogger(__name__)

# The workspace whose insight is being computed, for its share of the query slots.
_WORKSPACE: ContextVar[str] = ContextVar("traction_analytics_workspace", default="")


@dataclass(frozen=True)
class _Moment:
    """One workspace's data version and zone, read once for everything computed at once (a
    result and its parts, or a scorecard's KPIs): each read costs a query otherwise."""

    workspace_id: str
    version: tuple[int, tuple[int, int]]
    tz: str


_MOMENT: ContextVar[_Moment | None] = ContextVar("traction_analytics_moment", default=None)


class AnalyticsService:
    CACHE_SIZE = 512

    def __init__(
        self,
        events: DuckDBEventStore,
        workspaces: WorkspaceService,
        *,
        timeout_seconds: float = 30.0,
        max_rows: int = 200_000,
        kpi_config: Callable[[str], KPIConfig] | None = None,
        max_concurrent: int = 2,
        max_concurrent_per_workspace: int = 2,
        lent: int = 0,
        ingest_idle: Callable[[], bool] = lambda: False,
        kept: Keeps | None = None,
    ) -> None:
        """`lent`: slots beyond `max_concurrent` a query may take while `ingest_idle()`;
        `kept`: where the scorecard's final values outlive the process."""
        self.events = events
        self.workspaces = workspaces
        # where a workspace's KPI configuration comes from (the stored one, in the server)
        self.kpi_config = kpi_config or (lambda _ws: KPIConfig())
        self.timeout_seconds = timeout_seconds
        self.max_rows = max_rows
        self._cache: OrderedDict[tuple[str, str, str, tuple[int, tuple[int, int]]], Any] = (
            OrderedDict()
        )
        self._lock = threading.Lock()
        # each workspace's latest event time, with the data version it was read at
        self._latest: dict[str, tuple[tuple[int, tuple[int, int]], datetime | None]] = {}
        self._running: dict[Any, Future[Any]] = {}  # results being computed (one at a time)
        # Analytics queries take all the cores they get; a bounded number run at once (and
        # fewer per workspace), so ingestion and other tenants keep theirs.
        self._slots = threading.BoundedSemaphore(max_concurrent)
        # the cores kept for ingestion, lent while it is idle (taken only then, never waited for)
        self._lent = threading.BoundedSemaphore(lent) if lent else None
        self._ingest_idle = ingest_idle
        self._per_workspace = max_concurrent_per_workspace
        self._ws_slots: dict[str, threading.BoundedSemaphore] = {}
        self._scorecard = Scorecard(self, kept)
        self._actor_rows = ActorRows(self._arrow)

    def data_version(self, workspace_id: str) -> tuple[int, tuple[int, int]]:
        """What a cached result depends on: the log's head, and the workspace's merges and
        deletions (either can change a past result without moving the head)."""
        moment = _MOMENT.get()
        if moment is not None and moment.workspace_id == workspace_id:
            return moment.version
        with self.events.reading() as cur:
            row = cur.execute(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events), "
                "(SELECT COUNT(*) FROM person_overrides WHERE workspace_id = ?), "
                "(SELECT COUNT(*) FROM deletions WHERE workspace_id = ?)",
                [workspace_id, workspace_id],
            ).fetchone()
        assert row is not None
        return int(row[0]), (int(row[1]), int(row[2]))

    def close(self) -> None:
        self._scorecard.close()

    def default_range(self, workspace_id: str) -> DateRange:
        """The last 30 days of data, up to the latest event's day (today when there is none):
        what the scorecard and `traction report` show unless told otherwise."""
        tz = self._timezone(workspace_id)
        latest = self._latest_event(workspace_id, tz)
        end = latest.date() if latest else datetime.now(ZoneInfo(tz)).date()
        return DateRange(date_from=end - timedelta(days=29), date_to=end)

    def _timezone(self, workspace_id: str) -> str:
        moment = _MOMENT.get()
        if moment is not None and moment.workspace_id == workspace_id:
            return moment.tz
        ws = self.workspaces.get_workspace(workspace_id)
        return ws.timezone if ws else "UTC"

    @contextmanager
    def at_one_moment(self, workspace_id: str) -> Iterator[tuple[int, tuple[int, int]]]:
        """Within this block (and in the threads started with its context), the workspace's
        data version and zone are read once. Events stored meanwhile count as new next time."""
        moment = _MOMENT.get()
        if moment is not None and moment.workspace_id == workspace_id:
            yield moment.version
            return
        version = self.data_version(workspace_id)
        token = _MOMENT.set(_Moment(workspace_id, version, self._timezone(workspace_id)))
        try:
            yield version
        finally:
            _MOMENT.reset(token)

    def _cached(self, workspace_id: str, key: str, compute: Any) -> Any:
        with self.at_one_moment(workspace_id):
            return self._cached_now(workspace_id, key, compute)

    def _cached_now(self, workspace_id: str, key: str, compute: Any) -> Any:
        # the zone is part of the key: changing it moves every day/week/month boundary
        full = (workspace_id, key, self._timezone(workspace_id), self.data_version(workspace_id))
        with self._lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
            running = self._running.get(full)
            if running is None:  # compute it here; whoever asks meanwhile waits for this one
                self._running[full] = mine = Future[Any]()
        if running is not None:
            return running.result()
        token = _WORKSPACE.set(workspace_id)
        try:
            value = compute()
        except BaseException as e:
            with self._lock:
                self._running.pop(full, None)
            mine.set_exception(e)
            raise
        finally:
            _WORKSPACE.reset(token)
        with self._lock:
            self._running.pop(full, None)
            self._cache[full] = value
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        mine.set_result(value)
        return value

    def _query(
        self, sql: str, params: dict[str, object]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Every analytics query goes through here: a slot (global and per workspace), a time
        limit (DuckDB is interrupted) and a row cap, each with an error that says what to do."""
        with self._slot():
            return self._execute(sql, params)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        ws = _WORKSPACE.get()
        with self._lock:
            mine = self._ws_slots.setdefault(ws, threading.BoundedSemaphore(self._per_workspace))
        deadline = time.monotonic() + self.timeout_seconds
        if not mine.acquire(timeout=self.timeout_seconds):
            raise AnalyticsBusy(
                "this workspace's analytics queries are all busy: try again shortly"
            )
        try:
            slots = self._slots
            if not slots.acquire(blocking=False):
                if self._lent is not None and self._ingest_idle() and self._lent.acquire(False):
                    slots = self._lent
                elif not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    raise AnalyticsBusy("every analytics slot is busy: try again shortly")
            try:
                yield
            finally:
                slots.release()
        finally:
            mine.release()

    def _execute(
        self, sql: str, params: dict[str, object]
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self.events.reading() as cur, self._time_limited(cur):
            cur.execute(sql, params)
            rows = cur.fetchmany(self.max_rows + 1)
            columns = [d[0] for d in cur.description or []]
        self._check_rows(len(rows))
        return columns, rows

    @contextmanager
    def _time_limited(self, cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """DuckDB is interrupted at the time limit, and the error says what to do."""
        timer = threading.Timer(self.timeout_seconds, cur.interrupt)
        timer.start()
        try:
            yield
        except duckdb.InterruptException:
            raise QueryTooExpensive(
                f"the query ran longer than {self.timeout_seconds:g} s: narrow the date range or add filters"
            ) from None
        finally:
            timer.cancel()

    def _check_rows(self, n: int) -> None:
        if n > self.max_rows:
            raise QueryTooExpensive(
                f"the result has more than {self.max_rows:,} rows: narrow the date range or use a longer interval"
            )

    def _rows(self, sql: str, params: dict[str, object]) -> list[tuple[Any, ...]]:
        return self._query(sql, params)[1]

    def _arrow(self, sql: str, params: dict[str, object], tables: dict[str, pa.Table]) -> pa.Table:
        """A query answered as Arrow (per-actor rows), with `tables` registered by name; in a
        slot and under the time limit like every analytics query."""
        with self._slot(), self.events.reading() as cur, self._time_limited(cur):
            try:
                for name, table in tables.items():
                    cur.register(name, table)
                return cur.sql(sql, params=params).to_arrow_table()
            finally:
                for name in tables:
                    cur.unregister(name)

    def _per_actor(self, workspace_id: str, q: PerActor) -> pa.Table:
        """`q`'s per-actor rows, patched from the last ones kept (`analytics.incremental`)."""
        return self._actor_rows.rows(workspace_id, q, self.data_version(workspace_id))

    def _aggregate(self, q: PerActor, rows: pa.Table) -> tuple[list[str], list[tuple[Any, ...]]]:
        """`q`'s aggregate over its per-actor rows (again only if they changed)."""
        sql = q.aggregate_sql("__actor_rows")
        params = q.params(sql)

        def compute() -> tuple[list[str], list[tuple[Any, ...]]]:
            table = self._arrow(sql, params, {"__actor_rows": rows})
            self._check_rows(table.num_rows)
            return table.column_names, _tuples(table)

        rows_sql = q.rows_sql()  # two queries can aggregate alike (two 2-step funnels)
        key = ("aggregate", rows_sql, repr(sorted(q.values.items())), sql)
        return self._actor_rows.derived(key, (rows,), compute)

    def _per_actor_result(
        self, workspace_id: str, q: PerActor
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        return self._aggregate(q, self._per_actor(workspace_id, q))

    def _latest_event(self, workspace_id: str, tz: str = "UTC") -> datetime | None:
        """The time of the workspace's latest event (naive, in `tz`): later periods and windows
        have not been observed yet."""
        last = self._cached(workspace_id, "latest", lambda: self._latest_utc(workspace_id))
        if last is None or tz == "UTC":
            return last  # type: ignore[no-any-return]
        local = last.replace(tzinfo=UTC).astimezone(ZoneInfo(tz))
        return local.replace(tzinfo=None)  # type: ignore[no-any-return]

    def _latest_utc(self, workspace_id: str) -> datetime | None:
        """Read from the events stored since it was last read, unless events were deleted
        meanwhile (the latest may have gone): a scan of the whole log's times costs tens of
        milliseconds at the start of every computation after a new event."""
        version = self.data_version(workspace_id)
        with self._lock:
            hit = self._latest.get(workspace_id)
        ws: dict[str, object] = {"ws": workspace_id}
        if hit is None or hit[0][1][1] != version[1][1] or hit[0][0] > version[0]:
            latest = self._one_row(
                "SELECT max(timestamp) AS t FROM events WHERE workspace_id = $ws", ws
            ).get("t")
        elif hit[0][0] == version[0]:
            latest = hit[1]
        else:
            newer = self._one_row(
                "SELECT max(timestamp) AS t FROM events "
                "WHERE workspace_id = $ws AND seq > $since AND seq <= $head",
                {**ws, "since": hit[0][0], "head": version[0]},
            ).get("t")
            latest = max((t for t in (hit[1], newer) if t is not None), default=None)
        with self._lock:
            self._latest[workspace_id] = (version, latest)
        return latest

    def _one_row(self, sql: str, params: dict[str, object]) -> dict[str, Any]:
        cols, rows = self._query(sql, params)
        return dict(zip(cols, rows[0], strict=True)) if rows else {}

    def funnel(self, workspace_id: str, spec: FunnelSpec) -> FunnelResult:
        def compute() -> FunnelResult:
            start, end = day_bounds(spec.range, self._timezone(workspace_id))
            events = [s.event for s in spec.steps]
            plain = spec.model_copy(update={"breakdown": None})
            q = funnel_query(spec, workspace_id, start, end)
            rows = self._per_actor(workspace_id, q)
            plain_select = funnel_query(plain, workspace_id, start, end).select  # the totals
            cols, one = self._aggregate(q.with_select(plain_select), rows)
            total = funnel_result(events, dict(zip(cols, one[0], strict=True)))
            if not spec.breakdown:
                return total
            cols, by = self._aggregate(q, rows)
            by_value = [dict(zip(cols, r, strict=True)) for r in by]
            return FunnelResult(
                total.steps, funnel_breakdown(events, by_value, spec.breakdown_limit)
            )

        return self._cached(workspace_id, "funnel:" + spec.model_dump_json(), compute)  # type: ignore[no-any-return]

    def funnel_dropoffs(
        self, workspace_id: str, spec: FunnelSpec, step: int, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Who reached `step` and stopped there, earliest first (page with `offset`)."""
        if not 0 <= step < len(spec.steps) - 1:
            raise ValueError(f"step must be between 0 and {len(spec.steps) - 2}")
        start, end = day_bounds(spec.range, self._timezone(workspace_id))
        sql, params = compile_funnel_dropoffs(spec, workspace_id, start, end, step, limit, offset)
        return [{"actor": r[0], "started_at": r[1]} for r in self._rows(sql, params)]

    def retention(self, workspace_id: str, spec: RetentionSpec) -> RetentionResult:
        def compute() -> RetentionResult:
            tz = self._timezone(workspace_id)
            start, end = day_bounds(spec.range, tz)
            sql, params = compile_retention(spec, workspace_id, tz, start, end)
            rows = self._rows(sql, params)
            last = self._latest_event(workspace_id, tz)
            cohorts = {r[0].date() if hasattr(r[0], "date") else r[0] for r in rows}
            observable = {
                c: (last_observable_period(c, last, spec.interval) if last else 0) for c in cohorts
            }
            return retention_result(
                spec.interval, spec.periods, spec.bounded, rows, observable, spec.range.date_from
            )

        return self._cached(workspace_id, "retention:" + spec.model_dump_json(), compute)  # type: ignore[no-any-return]

    def trend(self, workspace_id: str, spec: TrendSpec) -> TrendResult:
        def compute() -> TrendResult:
            tz = self._timezone(workspace_id)
            start, end = day_bounds(spec.range, tz)
            span = end - start
            first = datetime.combine(spec.range.date_from, datetime.min.time())
            last = datetime.combine(spec.range.date_to, datetime.max.time())
            starts = buckets(first, last, spec.interval)
            lines: list[TrendLine] = []
            for i, series in enumerate(spec.series):
                current = self._series(spec, series, workspace_id, tz, start, end, starts)
                previous: dict[str | None, list[tuple[datetime, float]]] = {}
                if spec.compare_previous:
                    earlier = buckets(first - span, last - span, spec.interval)[: len(starts)]
                    previous = self._series(
                        spec, series, workspace_id, tz, start - span, end - span, earlier
                    )
                base = (
                    series.event.event
                    if series.math == "total"
                    else f"{series.event.event} ({series.math})"
                )
                for bd, points in sorted(
                    current.items(), key=lambda kv: (kv[0] == OTHER, -sum(v for _, v in kv[1]))
                ):
                    label = base if bd is None else f"{base}: {'other' if bd == OTHER else bd}"
                    prev = [v for _, v in previous.get(bd, [])] if spec.compare_previous else None
                    if prev is not None and len(prev) < len(points):
                        prev = prev + [0.0] * (len(points) - len(prev))
                    lines.append(TrendLine(label, i, bd, points, prev))
            horizon = self._latest_event(workspace_id, tz)
            complete = [is_complete(b, spec.interval, horizon) for b in starts]
            return TrendResult(spec.interval, lines, complete)

        return self._cached(workspace_id, "trend:" + spec.model_dump_json(), compute)  # type: ignore[no-any-return]

    def trend_people(
        self,
        workspace_id: str,
        spec: TrendSpec,
        series_index: int,
        bucket: datetime,
        breakdown: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The people behind one point of a trend: who did it in that bucket (local time)."""
        if not 0 <= series_index < len(spec.series):
            raise ValueError(f"series must be between 0 and {len(spec.series) - 1}")
        tz = self._timezone(workspace_id)
        start, end = day_bounds(spec.range, tz)
        sql, params = compile_trend_people(
            spec, spec.series[series_index], workspace_id, tz, start, end, bucket, breakdown,
            limit, offset,
        )  # fmt: skip
        return [{"actor": r[0], "events": int(r[1])} for r in self._rows(sql, params)]

    def _series(
        self,
        spec: TrendSpec,
        series: Any,
        workspace_id: str,
        tz: str,
        start: datetime,
        end: datetime,
        starts: list[datetime],
    ) -> dict[str | None, list[tuple[datetime, float]]]:
        sql, params = compile_trend_series(spec, series, workspace_id, tz, start, end)
        return fill_series(self._rows(sql, params), starts)

    def activation(self, workspace_id: str, spec: ActivationSpec) -> ActivationResult:
        def compute() -> ActivationResult:
            tz = self._timezone(workspace_id)
            start, end = day_bounds(spec.range, tz)
            rows = self._per_actor(
                workspace_id, activation_query(spec, workspace_id, tz, start, end)
            )
            last = self._latest_event(workspace_id)
            open_after = last - timedelta(days=spec.window_days) if last else None
            return self._actor_rows.derived(
                ("activation", workspace_id, spec.model_dump_json(), open_after),
                (rows,),
                lambda: activation_result(_tuples(rows), open_after),
            )

        return self._cached(workspace_id, "activation:" + spec.model_dump_json(), compute)  # type: ignore[no-any-return]

    def onboarding(
        self, workspace_id: str, spec: ActivationSpec, steps: list[EventMatcher]
    ) -> FunnelResult:
        """The onboarding checklist as a funnel from the start event, in the activation window."""
        funnel = FunnelSpec(
            steps=[spec.start_event, *steps],
            range=spec.range,
            window_days=spec.window_days,
            aggregate_by=spec.aggregate_by,
        )
        return self.funnel(workspace_id, funnel)

    def _run(
        self, workspace_id: str, spec: Any, compiler: Any, shape: Any, one_row: bool = False
    ) -> Any:
        """The common path: zone, day bounds, compile, fetch, shape; cached. A compiler that
        answers a `PerActor` query is run from its kept per-actor rows."""

        def compute() -> Any:
            tz = self._timezone(workspace_id)
            start, end = day_bounds(spec.range, tz)
            q = compiler(spec, workspace_id, tz, start, end)
            if isinstance(q, PerActor):
                cols, rows = self._per_actor_result(workspace_id, q)
            else:
                cols, rows = self._query(*q)
            if one_row:
                return shape(dict(zip(cols, rows[0], strict=True)) if rows else {})
            return shape(rows)

        return self._cached(workspace_id, f"{spec.kind}:{spec.model_dump_json()}", compute)

    def sessions(self, workspace_id: str, spec: SessionsSpec) -> SessionsResult:
        return self._run(
            workspace_id,
            spec,
            sessions_query,
            lambda row: sessions_result(row, spec.first_sessions),
            one_row=True,
        )  # type: ignore[no-any-return]

    def active_users(self, workspace_id: str, spec: ActiveUsersSpec) -> ActiveUsersResult:
        return self._run(  # type: ignore[no-any-return]
            workspace_id, spec, active_users_query,
            lambda rows: ActiveUsersResult([(d, int(a), int(w), int(m)) for d, a, w, m in rows]),
        )  # fmt: skip

    def lifecycle(self, workspace_id: str, spec: LifecycleSpec) -> LifecycleResult:
        return self._run(
            workspace_id,
            spec,
            compile_lifecycle,
            lambda rows: lifecycle_result(spec.interval, rows),
        )  # type: ignore[no-any-return]

    def feature_adoption(
        self, workspace_id: str, spec: FeatureAdoptionSpec
    ) -> FeatureAdoptionResult:
        def shape(rows: list[tuple[Any, ...]]) -> FeatureAdoptionResult:
            active, any_feature, *per_feature = rows[0]
            features = [(f.event, int(n)) for f, n in zip(spec.features, per_feature, strict=True)]
            return FeatureAdoptionResult(int(active), features, int(any_feature))

        return self._run(workspace_id, spec, feature_adoption_query, shape)  # type: ignore[no-any-return]

    def activation_retention(
        self, workspace_id: str, spec: ActivationSpec, days: tuple[int, ...] = (7, 30)
    ) -> ActivationRetentionResult:
        """Day-N retention of activation cohorts: active (any event) on the Nth local day after
        the day of activation. Actors whose day N is still ahead are left out of that day's base."""

        def compute() -> ActivationRetentionResult:
            tz = self._timezone(workspace_id)
            start, end = day_bounds(spec.range, tz)
            last = self._latest_event(workspace_id, tz)
            q = activation_retention_query(
                spec, workspace_id, tz, start, end, days, last.date() if last else None
            )
            cols, rows = self._per_actor_result(workspace_id, q)
            row = dict(zip(cols, rows[0], strict=True))
            by_day = {
                d: (row[f"kept_{d}"] / row[f"base_{d}"] if row[f"base_{d}"] else None) for d in days
            }
            return ActivationRetentionResult(int(row["activated"] or 0), by_day)

        return self._cached(
            workspace_id, f"activation_retention:{days}:{spec.model_dump_json()}", compute
        )  # type: ignore[no-any-return]

    def plg_revenue(self, workspace_id: str, spec: RevenueSpec) -> plg.PLGRevenue:
        """The PLG revenue KPIs for one period (each KPI of the group reads one field)."""
        c = spec.config

        def compute() -> plg.PLGRevenue:
            start, end = day_bounds(spec.range, self._timezone(workspace_id))
            windows = plg.Windows(
                paid_days=c.paid_window_days,
                expansion_days=c.expansion_window_days,
                gross_margin=Decimal(str(c.gross_margin)),
            )
            facts = self._plg_facts(workspace_id, c)
            derived = self._actor_rows.derived
            index = derived(("plg_index", workspace_id, c.model_dump_json()), (facts.changes,),
                            lambda: plg.ChangeIndex(facts.changes))  # fmt: skip
            return derived(
                ("plg_revenue", workspace_id, start, end, windows), (facts,),
                lambda: plg.plg_revenue(facts, start, end, windows, index),
            )  # fmt: skip

        key = f"plg_revenue:{c.model_dump_json()}:{spec.range.model_dump_json()}"
        return self._cached(workspace_id, key, compute)  # type: ignore[no-any-return]

    def _plg_facts(self, workspace_id: str, c: KPIConfig) -> plg.Facts:
        """Every period's PLG revenue KPIs read the same facts: fetched once per data version."""

        def compute() -> plg.Facts:
            ws = workspace_id
            activation = c.activation(DateRange(date_from=MIN_DATE, date_to=MIN_DATE))
            queries = (
                people_query(c, ws),
                activation_query(activation, ws, "UTC", datetime(1970, 1, 1), datetime(2200, 1, 1)),
                changes_query(ws),
                account_events_query(ws, (c.checkout_event,), True),
                account_events_query(ws, c.expansion_signals, False),
            )
            # side by side (each in this context): they are the longest chain of a scorecard
            with ThreadPoolExecutor(max_workers=len(queries)) as pool:
                futures = [pool.submit(copy_context().run, self._per_actor, ws, q) for q in queries]
                people, activated, changes, checkouts, signals = (f.result() for f in futures)
            # each part again only when its rows changed (a sign-up changes no subscription)
            derived, key = self._actor_rows.derived, ("plg_facts", ws, c.model_dump_json())
            parts = (
                derived(
                    (*key, "people"), (people, activated), lambda: _people(c, people, activated)
                ),
                derived((*key, "changes"), (changes,), lambda: _changes(changes)),
                derived((*key, "checkouts"), (checkouts,), lambda: _checkouts(checkouts)),
                derived((*key, "signals"), (signals,), lambda: _signals(signals)),
            )
            return derived(key, parts, lambda: plg.Facts(*parts))

        return self._cached(workspace_id, "plg_facts:" + c.model_dump_json(), compute)  # type: ignore[no-any-return]

    def kpi(
        self, workspace_id: str, key: str, r: DateRange, config: KPIConfig | None = None
    ) -> float | None:
        k = BY_KEY[key]
        c = config or self.kpi_config(workspace_id)
        spec = k.spec(c, r)
        if k.insight == "onboarding":
            result = self.onboarding(
                workspace_id, spec, [EventMatcher(event=e) for e in c.onboarding_steps]
            )
        else:
            result = getattr(self, k.insight)(workspace_id, spec, **k.extra)
        return k.value(result)

    def scorecard(
        self,
        workspace_id: str,
        r: DateRange,
        config: KPIConfig | None = None,
        *,
        wait: bool = True,
    ) -> list[dict[str, Any]]:
        """Every KPI for the period and the one before it, with the change and its definition
        (kept warm: see `analytics.scorecard`)."""
        return self._scorecard.rows(workspace_id, r, config, wait=wait)

    def warm(self) -> None:
        """Every workspace's scorecard over its default range, computed now: the server runs
        this as it starts and then every minute, so the dashboard's first view is warm and a
        refresh only patches what new events changed."""
        for ws in self.workspaces.list_workspaces():
            try:
                self.scorecard(ws.id, self.default_range(ws.id))
            except (QueryTooExpensive, AnalyticsBusy):
                log.warning("scorecard not warmed", extra={"workspace_id": ws.id})

    def kpi_series(
        self, workspace_id: str, key: str, ranges: list[DateRange], *, wait: bool = True
    ) -> list[float | None]:
        """One KPI over several periods, from the scorecard's cache (sparklines)."""
        found, _ = self._scorecard.values(workspace_id, [key], ranges, wait=wait)
        return [found[(key, r)] for r in ranges]


def _tuples(table: pa.Table) -> list[tuple[Any, ...]]:
    """Arrow rows as tuples, the shape the result functions take."""
    return list(zip(*(_values(col) for col in table.columns), strict=True))


def _values(col: pa.ChunkedArray) -> Any:
    t = col.type
    if pa.types.is_timestamp(t) and t.tz is None and t.unit in ("s", "ms", "us"):
        # datetimes made by numpy in C: 6x faster than to_pylist, nulls as NaT (-> None).
        # numpy reads Arrow's buffers itself: pyarrow's `to_numpy` imports pandas (~0.45 s
        # of a cold scorecard).
        ints = pc.cast(col, pa.int64())
        parts = [_int64s(c) for c in ints.chunks if len(c)]
        values = np.concatenate(parts) if parts else np.empty(0, np.int64)
        return values.view(f"datetime64[{t.unit}]").astype(object)
    return col.to_pylist()


def _int64s(chunk: pa.Array) -> np.ndarray:
    """An int64 Arrow array as numpy, nulls as the smallest int64 (numpy's NaT), read from
    its buffers (no Python scalar goes to Arrow: that would import pandas too)."""
    values = np.frombuffer(chunk.buffers()[1], np.int64, len(chunk), chunk.offset * 8)
    if not chunk.null_count:
        return values
    valid = np.unpackbits(np.frombuffer(chunk.buffers()[0], np.uint8), bitorder="little")
    present = valid[chunk.offset : chunk.offset + len(chunk)].astype(bool)
    return np.where(present, values, np.iinfo(np.int64).min)


_IN_ORDER = [("ts", "ascending"), ("seq", "ascending")]


def _people(c: KPIConfig, people: pa.Table, activation: pa.Table) -> list[plg.Person]:
    """Each person's PLG moments, from their per-actor rows and their activation rows."""
    activated = {r[0]: r[3] for r in _tuples(activation) if r[3] is not None}
    return [
        plg.Person(person, account, signed, trial,
                   activated.get(person), pql if c.pql_event else activated.get(person))
        for person, account, signed, trial, pql in _tuples(people.sort_by("actor"))
    ]  # fmt: skip


def _changes(changes: pa.Table) -> list[Change]:
    return [
        Change(account, sub or "", at, Decimal(before), Decimal(after), name, person)
        for account, sub, at, before, after, name, person, _ in _tuples(changes.sort_by(_IN_ORDER))
    ]


def _checkouts(checkouts: pa.Table) -> list[plg.Checkout]:
    return [
        plg.Checkout(person, account, at)
        for account, at, person, _ in _tuples(checkouts.sort_by(_IN_ORDER))
    ]


def _signals(signals: pa.Table) -> list[tuple[str, datetime]]:
    return [(account, at) for account, at, _ in _tuples(signals.sort_by(_IN_ORDER))]
