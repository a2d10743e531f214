"""Result shapes and the arithmetic on them: pure, so the API, CLI and pages agree."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class FunnelStep:
    event: str
    entered: int
    conversion_from_previous: float | None  # entered / previous step's entered
    conversion_from_start: float | None
    dropped: int  # reached this step and went no further
    drop_off_rate: float | None
    median_seconds_from_previous: float | None
    mean_seconds_from_previous: float | None


@dataclass(frozen=True)
class FunnelResult:
    steps: list[FunnelStep]
    breakdown: list[tuple[str, FunnelResult]] | None = None  # (value, that value's funnel)

    @property
    def overall_conversion(self) -> float | None:
        return self.steps[-1].conversion_from_start

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "steps": [asdict(s) for s in self.steps],
            "overall_conversion": self.overall_conversion,
        }
        if self.breakdown is not None:
            out["breakdown"] = [{"value": v, **r.as_dict()} for v, r in self.breakdown]
        return out


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def funnel_result(events: list[str], row: dict[str, Any]) -> FunnelResult:
    """`row` is the funnel query's single row: entered_k, median_s_k, mean_s_k."""
    entered = [int(row[f"entered_{k}"] or 0) for k in range(len(events))]
    steps = []
    for k, event in enumerate(events):
        after = entered[k + 1] if k + 1 < len(entered) else entered[k]
        dropped = entered[k] - after
        steps.append(
            FunnelStep(
                event=event,
                entered=entered[k],
                conversion_from_previous=_ratio(entered[k], entered[k - 1]) if k else None,
                conversion_from_start=_ratio(entered[k], entered[0]) if k else None,
                dropped=dropped,
                drop_off_rate=_ratio(dropped, entered[k]),
                median_seconds_from_previous=_seconds(row.get(f"median_s_{k}")),
                mean_seconds_from_previous=_seconds(row.get(f"mean_s_{k}")),
            )
        )
    return FunnelResult(steps)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _seconds(v: Any) -> float | None:
    """A duration to the millisecond: SQL medians of microsecond epochs carry float noise
    (55807.12043750286) that no reader wants."""
    return None if v is None else round(float(v), 3)


@dataclass(frozen=True)
class Cohort:
    start: date
    size: int
    retained: list[int | None]  # index k: actors retained in period k; None = not observable yet
    # The first period still in progress when the data ends: its count may still rise, so it
    # is shown but not averaged. 0 means the cohort itself is still filling.
    open_from: int = 10**9
    # Its first day inside the range: a weekly cohort of a range starting on a Wednesday
    # begins (`start`) on the Monday before, but holds only people from the Wednesday on.
    first_day: date | None = None

    @property
    def rates(self) -> list[float | None]:
        return [
            None if r is None else (r / self.size if self.size else None) for r in self.retained
        ]

    @property
    def complete(self) -> list[bool]:
        return [r is not None and k < self.open_from for k, r in enumerate(self.retained)]


@dataclass(frozen=True)
class RetentionResult:
    interval: str
    cohorts: list[Cohort]

    @property
    def overall(self) -> list[float | None]:
        """Per period: retained / size over the cohorts where that period is complete. A period
        still in progress would pull the average down with counts that are not final."""
        width = max((len(c.retained) for c in self.cohorts), default=0)
        out: list[float | None] = []
        for k in range(width):
            seen = [c for c in self.cohorts if k < len(c.retained) and c.complete[k]]
            size = sum(c.size for c in seen)
            out.append(sum(c.retained[k] or 0 for c in seen) / size if size else None)
        return out

    @property
    def summary(self) -> dict[str, float | None]:
        """D1/D7/D30 (daily retention) from the overall curve, where the spec reaches them."""
        if self.interval != "day":
            return {}
        curve = self.overall
        return {f"d{k}": curve[k] for k in (1, 7, 30) if k < len(curve)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "summary": self.summary,
            "cohorts": [
                {
                    "start": c.start.isoformat(),
                    "first_day": (c.first_day or c.start).isoformat(),
                    "size": c.size,
                    "retained": c.retained,
                    "rates": c.rates,
                    "complete": c.complete,
                }
                for c in self.cohorts
            ],
            "overall": self.overall,
        }


def retention_result(
    interval: str,
    periods: int,
    bounded: bool,
    rows: list[tuple[Any, int, int | None, int]],
    last_period: dict[date, int],
    range_start: date | None = None,
) -> RetentionResult:
    """`rows`: (cohort start, cohort size, period k or None, actors whose *furthest* (unbounded)
    or exact (bounded) return period is k). `last_period[c]`: the last observable period, the
    one in progress when the data ends (earlier ones are complete)."""
    sizes: dict[date, int] = {}
    counts: dict[date, dict[int, int]] = {}
    for start, size, k, n in rows:
        c = start.date() if hasattr(start, "date") else start
        sizes[c] = int(size)
        if k is not None:
            counts.setdefault(c, {})[int(k)] = int(n)
    cohorts = []
    for c in sorted(sizes):
        by_k = counts.get(c, {})
        seen = last_period.get(c, 0)
        retained: list[int | None] = [sizes[c]]
        for k in range(1, periods + 1):
            if k > seen:
                retained.append(None)
            elif bounded:
                retained.append(by_k.get(k, 0))
            else:  # rolling: came back in period k or any later one
                retained.append(sum(n for kk, n in by_k.items() if kk >= k))
        first = max(c, range_start) if range_start else c
        cohorts.append(Cohort(c, sizes[c], retained, open_from=seen, first_day=first))
    return RetentionResult(interval, cohorts)


@dataclass(frozen=True)
class TrendLine:
    label: str  # the series' event (and math), or the breakdown value
    series_index: int
    breakdown: str | None
    points: list[tuple[datetime, float]]
    previous: list[float] | None = None  # the same buckets one period earlier, if compared

    @property
    def total(self) -> float:
        return sum(v for _, v in self.points)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "series": self.series_index,
            "breakdown": self.breakdown,
            "x": [t.isoformat() for t, _ in self.points],
            "y": [v for _, v in self.points],
            "previous": self.previous,
        }


@dataclass(frozen=True)
class TrendResult:
    interval: str
    lines: list[TrendLine]
    # per bucket (the same x for every line): False while the data has not reached its end
    complete: list[bool] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "lines": [line.as_dict() for line in self.lines],
            "complete": self.complete,
        }


def fill_series(
    rows: list[tuple[Any, Any, Any]], bucket_starts: list[datetime]
) -> dict[str | None, list[tuple[datetime, float]]]:
    """SQL rows (bucket, breakdown, value) -> one zero-filled line per breakdown value."""
    by: dict[str | None, dict[datetime, float]] = {}
    for bucket, bd, value in rows:
        by.setdefault(bd, {})[bucket] = float(value or 0)
    if not by:
        by[None] = {}
    return {bd: [(b, vals.get(b, 0.0)) for b in bucket_starts] for bd, vals in by.items()}


@dataclass(frozen=True)
class ActivationCohort:
    start: date
    size: int
    activated: int
    window_open: bool = False  # someone's window has not closed by the latest event: may still rise
    closed_size: int | None = None  # actors whose window has closed (None: all of them)
    closed_activated: int | None = None

    @property
    def rate(self) -> float | None:
        return self.activated / self.size if self.size else None


@dataclass(frozen=True)
class ActivationResult:
    cohorts: list[ActivationCohort]
    ttfv_seconds: list[float]  # per activated actor, sorted

    @property
    def size(self) -> int:
        return sum(c.size for c in self.cohorts)

    @property
    def activated(self) -> int:
        return sum(c.activated for c in self.cohorts)

    @property
    def rate(self) -> float | None:
        """Over the actors whose window has closed: one still open may yet activate, and
        counting them as not activated would pull the rate down."""
        size = sum(c.size if c.closed_size is None else c.closed_size for c in self.cohorts)
        done = sum(
            c.activated if c.closed_activated is None else c.closed_activated for c in self.cohorts
        )
        return done / size if size else None

    def ttfv(self, q: float) -> float | None:
        """Quantile of time to first value, linear interpolation (as numpy's default)."""
        xs = self.ttfv_seconds
        if not xs:
            return None
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return _seconds(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "activated": self.activated,
            "rate": self.rate,
            "ttfv_seconds": {
                "median": self.ttfv(0.5),
                "p75": self.ttfv(0.75),
                "p90": self.ttfv(0.9),
            },
            "cohorts": [
                {
                    "start": c.start.isoformat(),
                    "size": c.size,
                    "activated": c.activated,
                    "rate": c.rate,
                    "window_open": c.window_open,
                    "complete": not c.window_open,
                }
                for c in self.cohorts
            ],
        }


def activation_result(
    rows: list[tuple[Any, Any, datetime, datetime | None]], open_after: datetime | None = None
) -> ActivationResult:
    """`rows`: (actor, cohort start, first start time, activation time or None). An actor who
    started after `open_after` (latest event minus the window) is still in their window: their
    cohort is marked open, and the overall rate leaves them out."""
    sizes: dict[date, int] = {}
    done: dict[date, int] = {}
    closed: dict[date, list[int]] = {}  # cohort -> [closed actors, closed and activated]
    ttfv: list[float] = []
    for _, cohort, first, at in rows:
        c = cohort.date() if hasattr(cohort, "date") else cohort
        sizes[c] = sizes.get(c, 0) + 1
        tally = closed.setdefault(c, [0, 0])
        is_closed = open_after is None or first <= open_after
        tally[0] += is_closed
        if at is not None:
            done[c] = done.get(c, 0) + 1
            tally[1] += is_closed
            ttfv.append((at - first).total_seconds())
    cohorts = [
        ActivationCohort(
            c, sizes[c], done.get(c, 0), closed[c][0] < sizes[c], closed[c][0], closed[c][1]
        )
        for c in sorted(sizes)
    ]
    return ActivationResult(cohorts, sorted(ttfv))


@dataclass(frozen=True)
class SessionsResult:
    sessions: int  # sessions that began in the range
    avg_duration_seconds: float | None
    avg_events: float | None
    first_sessions: list[dict[str, Any]]  # k-th session of actors new in the range
    depth_events: float | None  # mean events per session over those first sessions
    depth_features: float | None  # mean distinct features per session over them

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def sessions_result(row: dict[str, Any], first_n: int) -> SessionsResult:
    """`row`: the sessions query's aggregates (see compile_sessions)."""
    per_k = [
        {
            "session": k,
            "actors": int(row[f"actors_{k}"] or 0),
            "avg_events": _num(row[f"events_{k}"]),
            "avg_features": _num(row[f"features_{k}"]),
        }
        for k in range(1, first_n + 1)
    ]
    return SessionsResult(
        sessions=int(row["sessions"] or 0),
        avg_duration_seconds=_seconds(row["avg_duration"]),
        avg_events=_num(row["avg_events"]),
        first_sessions=per_k,
        depth_events=_num(row["depth_events"]),
        depth_features=_num(row["depth_features"]),
    )


@dataclass(frozen=True)
class ActiveUsersResult:
    days: list[tuple[date, int, int, int]]  # (day, DAU, WAU, MAU)

    @property
    def stickiness(self) -> float | None:
        """Mean over the days of DAU/MAU."""
        return _mean([dau / mau for _, dau, _, mau in self.days if mau])

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": [
                {"day": d.isoformat(), "dau": a, "wau": w, "mau": m} for d, a, w, m in self.days
            ],
            "stickiness": self.stickiness,
        }


LIFECYCLE = ("new", "returning", "resurrecting", "dormant")


@dataclass(frozen=True)
class LifecycleResult:
    interval: str
    buckets: list[tuple[date, dict[str, int]]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "buckets": [{"start": b.isoformat(), **c} for b, c in self.buckets],
        }


def lifecycle_result(interval: str, rows: list[tuple[Any, str, int]]) -> LifecycleResult:
    by: dict[date, dict[str, int]] = {}
    for bucket, status, n in rows:
        b = bucket.date() if hasattr(bucket, "date") else bucket
        by.setdefault(b, dict.fromkeys(LIFECYCLE, 0))[status] = int(n)
    return LifecycleResult(interval, sorted(by.items()))


@dataclass(frozen=True)
class FeatureAdoptionResult:
    active: int
    features: list[tuple[str, int]]
    any: int = 0  # used at least one of the features

    @property
    def any_share(self) -> float | None:
        return self.any / self.active if self.active else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "any": self.any,
            "any_share": self.any_share,
            "features": [
                {"event": e, "actors": n, "share": (n / self.active if self.active else None)}
                for e, n in self.features
            ],
        }


@dataclass(frozen=True)
class ActivationRetentionResult:
    """Of the actors activated in the range: the share active on day N after activating."""

    activated: int
    by_day: dict[int, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {"activated": self.activated, "by_day": {str(k): v for k, v in self.by_day.items()}}


def funnel_breakdown(
    events: list[str], rows: list[dict[str, Any]], limit: int
) -> list[tuple[str, FunnelResult]]:
    """Rows per breakdown value -> the top `limit` values by entries, the rest as `$other`
    (counts summed; its times are unknown, since medians do not add up)."""
    ranked = sorted(rows, key=lambda r: (-int(r["entered_0"] or 0), str(r["bd"])))
    top, rest = ranked[:limit], ranked[limit:]
    out = [(str(r["bd"]), funnel_result(events, r)) for r in top]
    if rest:
        merged = {
            f"entered_{k}": sum(int(r[f"entered_{k}"] or 0) for r in rest)
            for k in range(len(events))
        }
        out.append(("$other", funnel_result(events, merged)))
    return out
