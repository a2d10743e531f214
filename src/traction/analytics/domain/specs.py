"""Insight specs: what a user asks, as typed, validated objects.

The same models parse the HTTP API's JSON, the CLI's arguments and the dashboard's editor,
so an invalid spec fails the same way everywhere: a 422 that names the field. Unknown events
or properties are not errors (they match nothing and yield zeros); a wrong type, a negative
window, an unknown operator or a cap exceeded is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from traction.validation import check_regex

Name = Annotated[str, Field(min_length=1, max_length=200)]
Scalar = str | int | float | bool

MAX_SPAN_DAYS = 5 * 366
# Beyond these, date arithmetic (previous periods, windows, zones) overflows: a 422, not a 500.
MIN_DATE, MAX_DATE = date(1970, 1, 1), date(2199, 12, 31)
MAX_STEPS = 20


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        """A misspelt field is the commonest mistake: name it and list the right ones."""
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown field {unknown[0]!r}; allowed: {', '.join(cls.model_fields)}"
                )
        return data


Operator = Literal[
    "equals", "not_equals", "in", "not_in", "contains", "regex",
    "gt", "gte", "lt", "lte", "before", "after", "is_set", "is_not_set",
]  # fmt: skip
NUMERIC_OPS = frozenset({"gt", "gte", "lt", "lte"})
DATE_OPS = frozenset({"before", "after"})
LIST_OPS = frozenset({"in", "not_in"})
NO_VALUE_OPS = frozenset({"is_set", "is_not_set"})


class PropertyFilter(_Spec):
    """A condition on an event property, the person's traits or the account's traits (as
    they are now)."""

    property: Name
    source: Literal["event", "person", "account"] = "event"
    operator: Operator = "equals"
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> PropertyFilter:
        op, v = self.operator, self.value
        if op in NO_VALUE_OPS:
            if v is not None:
                raise ValueError(f"operator {op!r} takes no value")
        elif op in LIST_OPS:
            if not isinstance(v, list) or not v:
                raise ValueError(f"operator {op!r} needs a non-empty list value")
            if len(v) > 1000:
                raise ValueError(f"operator {op!r} takes at most 1000 values")
        elif isinstance(v, list) or v is None:
            raise ValueError(f"operator {op!r} needs a single value")
        elif op in NUMERIC_OPS and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ValueError(f"operator {op!r} needs a number")
        elif op in DATE_OPS:
            try:
                datetime.fromisoformat(str(v))
            except ValueError:
                raise ValueError(f"operator {op!r} needs an ISO date or time, got {v!r}") from None
        elif op == "regex":
            check_regex(str(v))
        for one in v if isinstance(v, list) else [v]:
            if isinstance(one, int | float) and not isinstance(one, bool):
                try:
                    if not math.isfinite(float(one)):
                        raise OverflowError
                except OverflowError:
                    raise ValueError("a number in value is too large (beyond ±1.8e308)") from None
        return self


class EventMatcher(_Spec):
    """One event name, optionally narrowed by property filters (all must hold)."""

    event: Name
    filters: list[PropertyFilter] = Field(default_factory=list, max_length=20)


RELATIVE_RANGES = {
    "today": "Today",
    "yesterday": "Yesterday",
    "last_7_days": "Last 7 days",
    "last_30_days": "Last 30 days",
    "last_90_days": "Last 90 days",
    "this_week": "This week",
    "this_month": "This month",
    "last_month": "Last month",
    "this_year": "This year",
}
# "Today" for relative ranges: the workspace's local day where the caller knows it (the
# dashboard sets it), else UTC's.
TODAY: ContextVar[date | None] = ContextVar("traction_today", default=None)


@contextmanager
def today_in(tz: str) -> Iterator[None]:
    token = TODAY.set(datetime.now(ZoneInfo(tz)).date())
    try:
        yield
    finally:
        TODAY.reset(token)


def resolve_relative(relative: str, today: date) -> tuple[date, date]:
    """The days a relative range covers on `today` (both ends included): what a saved
    insight or a dashboard tile shows when it is opened, not when it was saved."""
    if relative.startswith("since:"):
        try:
            start = date.fromisoformat(relative[6:])
        except ValueError:
            raise ValueError(f"relative 'since:' needs an ISO date, got {relative[6:]!r}") from None
        return start, today
    month_start = today.replace(day=1)
    match relative:
        case "today":
            return today, today
        case "yesterday":
            return today - timedelta(days=1), today - timedelta(days=1)
        case "last_7_days" | "last_30_days" | "last_90_days":
            n = int(relative.split("_")[1])
            return today - timedelta(days=n - 1), today
        case "this_week":
            return today - timedelta(days=today.weekday()), today
        case "this_month":
            return month_start, today
        case "last_month":
            end = month_start - timedelta(days=1)
            return end.replace(day=1), end
        case "this_year":
            return today.replace(month=1, day=1), today
    raise ValueError(
        f"unknown relative range {relative!r}; use one of {', '.join(RELATIVE_RANGES)} or since:YYYY-MM-DD"
    )


class DateRange(_Spec):
    """Whole days in the workspace's time zone, both ends included: fixed dates, or a
    `relative` range ("last_30_days", "since:2026-01-01", …) that sets them when the spec is
    read, so a saved insight or a dashboard moves with time."""

    date_from: date
    date_to: date
    relative: str | None = Field(None, max_length=40)

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("relative"), str):
            today = TODAY.get() or datetime.now(UTC).date()
            start, end = resolve_relative(data["relative"], today)
            data = {**data, "date_from": start, "date_to": end}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.date_to < self.date_from:
            raise ValueError("date_to must not be before date_from")
        if self.date_from < MIN_DATE or self.date_to > MAX_DATE:
            raise ValueError(f"dates must lie between {MIN_DATE} and {MAX_DATE}")
        if (self.date_to - self.date_from).days > MAX_SPAN_DAYS:
            raise ValueError(f"the date range may span at most {MAX_SPAN_DAYS} days")
        return self


class FunnelExclusion(_Spec):
    """Attempts where this event happens between step `from_step` and step `to_step`
    (0-based) do not count."""

    event: EventMatcher
    from_step: int = Field(0, ge=0)
    to_step: int = Field(1, ge=1)


class FunnelSpec(_Spec):
    kind: Literal["funnel"] = "funnel"
    steps: list[EventMatcher] = Field(min_length=2, max_length=MAX_STEPS)
    range: DateRange
    window_days: float = Field(
        14.0, gt=0, le=365, description="conversion window, from the first step"
    )
    mode: Literal["ordered", "strict", "unordered"] = "ordered"
    aggregate_by: Literal["person", "account"] = "person"
    exclusions: list[FunnelExclusion] = Field(default_factory=list, max_length=10)
    breakdown: Name | None = Field(None, description="an event property to split the funnel by")
    breakdown_attribution: Literal["first_touch", "last_touch", "step"] = "first_touch"
    breakdown_step: int | None = Field(None, ge=0, description="0-based, with attribution 'step'")
    breakdown_limit: int = Field(10, ge=1, le=25)

    @model_validator(mode="after")
    def _steps_in_range(self) -> FunnelSpec:
        n = len(self.steps)
        if self.mode == "unordered" and (self.exclusions or self.breakdown):
            raise ValueError("unordered funnels take no exclusions or breakdown")
        for i, x in enumerate(self.exclusions):
            if not x.from_step < x.to_step < n:
                raise ValueError(
                    f"exclusions[{i}]: need from_step < to_step < {n} (the number of steps)"
                )
        if self.breakdown_attribution == "step":
            if self.breakdown_step is None or self.breakdown_step >= n:
                raise ValueError(f"breakdown_attribution 'step' needs breakdown_step below {n}")
        elif self.breakdown_step is not None:
            raise ValueError("breakdown_step goes with breakdown_attribution 'step'")
        return self


Math = Literal[
    "total", "unique_persons", "unique_accounts", "sum", "avg", "min", "max", "p50", "p75", "p90", "p95", "p99",
]  # fmt: skip
PROPERTY_MATH = frozenset({"sum", "avg", "min", "max", "p50", "p75", "p90", "p95", "p99"})
MAX_BREAKDOWN = 25


class TrendSeries(_Spec):
    event: EventMatcher
    math: Math = "total"
    math_property: Name | None = None

    @model_validator(mode="after")
    def _property_for_math(self) -> TrendSeries:
        if self.math in PROPERTY_MATH and not self.math_property:
            raise ValueError(f"math {self.math!r} needs math_property (the numeric event property)")
        if self.math not in PROPERTY_MATH and self.math_property:
            raise ValueError(f"math {self.math!r} takes no math_property")
        return self


class TrendSpec(_Spec):
    kind: Literal["trend"] = "trend"
    series: list[TrendSeries] = Field(min_length=1, max_length=10)
    range: DateRange
    interval: Literal["hour", "day", "week", "month"] = "day"
    breakdown: Name | None = Field(None, description="an event property to split each series by")
    breakdown_limit: int = Field(
        10, ge=1, le=MAX_BREAKDOWN, description="top values; the rest is 'other'"
    )
    compare_previous: bool = False

    @model_validator(mode="after")
    def _hourly_span(self) -> TrendSpec:
        if self.interval == "hour" and (self.range.date_to - self.range.date_from).days > 31:
            raise ValueError("hourly trends may span at most 31 days")
        return self


class EventCount(_Spec):
    """At least `at_least` events matching `event` after the start event, within the window."""

    event: EventMatcher
    at_least: int = Field(1, ge=1, le=10_000)


class AllOf(_Spec):
    all: list[Criterion] = Field(min_length=1, max_length=20)


class AnyOf(_Spec):
    any: list[Criterion] = Field(min_length=1, max_length=20)


Criterion = EventCount | AllOf | AnyOf


def leaves(c: Criterion) -> list[EventCount]:
    if isinstance(c, EventCount):
        return [c]
    return [leaf for child in (c.all if isinstance(c, AllOf) else c.any) for leaf in leaves(child)]


class ActivationSpec(_Spec):
    """Activated = `criteria` hold within `window_days` of the actor's first `start_event`.
    The moment they first hold is when the actor reached first value (TTFV)."""

    kind: Literal["activation"] = "activation"
    start_event: EventMatcher
    criteria: Criterion
    window_days: float = Field(7.0, gt=0, le=365)
    range: DateRange
    interval: Literal["day", "week", "month"] = "week"
    aggregate_by: Literal["person", "account"] = "person"

    @model_validator(mode="after")
    def _not_too_many_conditions(self) -> ActivationSpec:
        if len(leaves(self.criteria)) > 20:
            raise ValueError("criteria may hold at most 20 event conditions")
        return self


class SessionsSpec(_Spec):
    """Sessions split at `gap_minutes` of inactivity; depth of each actor's first sessions."""

    kind: Literal["sessions"] = "sessions"
    range: DateRange
    gap_minutes: float = Field(30.0, gt=0, le=24 * 60)
    first_sessions: int = Field(3, ge=1, le=20, description="how many first sessions to describe")
    feature_events: list[Name] | None = Field(
        None,
        max_length=200,
        description="events that count as features (default: every track event)",
    )
    aggregate_by: Literal["person", "account"] = "person"
    actors: Literal["all", "new"] = Field(
        "all",
        description="'new': only actors whose first session began in the range (all the "
        "figures then describe them alone; faster when only first sessions matter)",
    )


class ActiveUsersSpec(_Spec):
    """DAU, WAU (7 days), MAU (30 days) for each day, and stickiness (DAU/MAU)."""

    kind: Literal["active_users"] = "active_users"
    range: DateRange
    active_event: EventMatcher | None = Field(
        None, description="what counts as active (default: any event)"
    )
    aggregate_by: Literal["person", "account"] = "person"


class LifecycleSpec(_Spec):
    """Per interval: new, returning, resurrecting and dormant actors."""

    kind: Literal["lifecycle"] = "lifecycle"
    range: DateRange
    interval: Literal["day", "week", "month"] = "week"
    active_event: EventMatcher | None = None
    aggregate_by: Literal["person", "account"] = "person"


class FeatureAdoptionSpec(_Spec):
    """For each feature event: the share of the period's active actors who used it."""

    kind: Literal["feature_adoption"] = "feature_adoption"
    range: DateRange
    features: list[EventMatcher] = Field(min_length=1, max_length=50)
    aggregate_by: Literal["person", "account"] = "person"


class RetentionSpec(_Spec):
    """Cohorts of actors and whether they come back (`return_event`, or anything) in later
    intervals. `first_time`: one cohort per actor, by the first time they did `start_event`
    (or anything), or by the moment they activated (`cohort_by: activation`). `recurring`: an
    actor is in the cohort of every interval in which they did the start event."""

    kind: Literal["retention"] = "retention"
    start_event: EventMatcher | None = None
    return_event: EventMatcher | None = None
    range: DateRange
    interval: Literal["day", "week", "month"] = "week"
    periods: int = Field(8, ge=1, le=90)
    bounded: bool = Field(
        True, description="True: returned in exactly period k; False: in k or later"
    )
    aggregate_by: Literal["person", "account"] = "person"
    retention_type: Literal["first_time", "recurring"] = "first_time"
    cohort_by: Literal["start_event", "activation"] = "start_event"
    activation_criteria: Criterion | None = None
    activation_window_days: float = Field(7.0, gt=0, le=365)

    @model_validator(mode="after")
    def _activation_fields(self) -> RetentionSpec:
        if self.cohort_by == "activation":
            if self.activation_criteria is None or self.start_event is None:
                raise ValueError("cohort_by 'activation' needs start_event and activation_criteria")
            if self.retention_type == "recurring":
                raise ValueError("cohort_by 'activation' is first-time retention only")
        elif self.activation_criteria is not None:
            raise ValueError("activation_criteria goes with cohort_by 'activation'")
        return self

    def activation(self) -> ActivationSpec:
        """The activation definition behind `cohort_by: activation`."""
        assert self.start_event is not None and self.activation_criteria is not None
        return ActivationSpec(
            start_event=self.start_event,
            criteria=self.activation_criteria,
            window_days=self.activation_window_days,
            range=self.range,
            interval=self.interval,
            aggregate_by=self.aggregate_by,
        )


def day_bounds(r: DateRange, tz: str) -> tuple[datetime, datetime]:
    """[start of date_from, start of the day after date_to) in the zone, as naive UTC."""
    zone = ZoneInfo(tz)
    start = datetime.combine(r.date_from, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(r.date_to + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    return start.replace(tzinfo=None), end.replace(tzinfo=None)


SPEC_KINDS: dict[str, type[_Spec]] = {
    "funnel": FunnelSpec,
    "trend": TrendSpec,
    "retention": RetentionSpec,
    "activation": ActivationSpec,
    "sessions": SessionsSpec,
    "active_users": ActiveUsersSpec,
    "lifecycle": LifecycleSpec,
    "feature_adoption": FeatureAdoptionSpec,
}


def event_names(spec: BaseModel) -> set[str]:
    """Every event name a spec matches on, wherever it sits (steps, series, criteria, ...):
    the names to check against what the workspace has received."""
    out: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, EventMatcher):
            out.add(value.event)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(spec)
    if isinstance(spec, SessionsSpec) and spec.feature_events:
        out |= set(spec.feature_events)
    return out
