"""The KPI catalog: each KPI defined once, used by the API, the CLI, the dashboard and tests.

A KPI is a spec built from the workspace's KPI configuration and a date range, plus how to
read one number off that spec's result. Which events mean "signed up", "activated" or
"shared" is configuration; the defaults match the simulator's product.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from traction.analytics.domain.specs import (
    ActivationSpec,
    ActiveUsersSpec,
    AllOf,
    DateRange,
    EventCount,
    EventMatcher,
    FeatureAdoptionSpec,
    FunnelSpec,
    SessionsSpec,
    TrendSeries,
    TrendSpec,
)

EventName = Annotated[str, Field(min_length=1, max_length=200)]


class KPIConfig(BaseModel):
    """Which events mean what, per workspace; the defaults match the simulator's product."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    visit_event: EventName = "$page"
    signup_event: EventName = "signed_up"
    trial_event: EventName = "trial_started"
    activation_events: tuple[EventName, ...] = Field(
        ("project_created", "teammate_invited"), min_length=1, max_length=10
    )
    activation_window_days: float = Field(7.0, gt=0, le=365)
    onboarding_steps: tuple[EventName, ...] = Field(
        ("project_created", "data_source_connected", "teammate_invited", "report_created"),
        min_length=1,
        max_length=19,
    )
    share_events: tuple[EventName, ...] = Field(
        ("teammate_invited", "referral_link_shared"), min_length=1, max_length=10
    )
    referral_share_event: EventName = "referral_link_shared"
    visitor_window_days: float = Field(30.0, gt=0, le=365)

    def activation(self, r: DateRange) -> ActivationSpec:
        return ActivationSpec(
            start_event=EventMatcher(event=self.signup_event),
            criteria=AllOf(
                all=[EventCount(event=EventMatcher(event=e)) for e in self.activation_events]
            ),
            window_days=self.activation_window_days,
            range=r,
        )


Unit = Literal["percent", "seconds", "count", "ratio", "events"]


@dataclass(frozen=True)
class KPI:
    key: str
    name: str
    definition: str
    unit: Unit
    direction: Literal["up", "down"]
    insight: str  # the AnalyticsService method that computes it
    spec: Callable[[KPIConfig, DateRange], Any]
    value: Callable[[Any], float | None]
    extra: dict[str, Any] = field(default_factory=dict)  # arguments for the insight method


def _funnel(*events: str, window: float | str) -> Callable[[KPIConfig, DateRange], FunnelSpec]:
    """Steps and window given as KPIConfig field names (or literal values)."""

    def build(c: KPIConfig, r: DateRange) -> FunnelSpec:
        names = [getattr(c, e) if hasattr(c, e) else e for e in events]
        days = getattr(c, window) if isinstance(window, str) else window
        return FunnelSpec(steps=[EventMatcher(event=n) for n in names], range=r, window_days=days)

    return build


CATALOG: tuple[KPI, ...] = (
    KPI("visitor_to_signup", "Visitor-to-sign-up conversion",
        "Share of people who viewed a page in the period and signed up within 30 days of that visit.",
        "percent", "up", "funnel", _funnel("visit_event", "signup_event", window="visitor_window_days"),
        lambda r: r.overall_conversion),
    KPI("trial_signup_rate", "Trial sign-up rate",
        "Share of sign-ups in the period who started a trial within a day of signing up.",
        "percent", "up", "funnel", _funnel("signup_event", "trial_event", window=1),
        lambda r: r.overall_conversion),
    KPI("activation_rate", "Activation rate",
        "Share of people who signed up in the period and met the activation criteria (default: created a project and invited a teammate) within 7 days.",
        "percent", "up", "activation", lambda c, r: c.activation(r), lambda r: r.rate),
    KPI("onboarding_dropoff", "Onboarding drop-off",
        "Share of sign-ups in the period who did not finish every onboarding step, in order, within the activation window.",
        "percent", "down", "onboarding",
        lambda c, r: c.activation(r),
        lambda r: None if r.overall_conversion is None else 1 - r.overall_conversion),
    KPI("time_to_first_value", "Time to first value (median)",
        "Median time from sign-up to activation, over the people who activated.",
        "seconds", "down", "activation", lambda c, r: c.activation(r), lambda r: r.ttfv(0.5)),
    KPI("engagement_depth", "Engagement depth (first 3 sessions)",
        "Mean events per session over the first three sessions of people new in the period (30-minute sessions).",
        "events", "up", "sessions", lambda c, r: SessionsSpec(range=r), lambda r: r.depth_events),
    KPI("activation_retention_d7", "Activation cohort retention D7",
        "Share of people activated in the period who were active on the 7th day after activating.",
        "percent", "up", "activation_retention", lambda c, r: c.activation(r),
        lambda r: r.by_day.get(7), {"days": (7, 30)}),
    KPI("activation_retention_d30", "Activation cohort retention D30",
        "Share of people activated in the period who were active on the 30th day after activating.",
        "percent", "up", "activation_retention", lambda c, r: c.activation(r),
        lambda r: r.by_day.get(30), {"days": (7, 30)}),
    KPI("sharing_rate", "Product sharing rate",
        "Share of people active in the period who invited a teammate or shared a referral link.",
        "percent", "up", "feature_adoption",
        lambda c, r: FeatureAdoptionSpec(range=r, features=[EventMatcher(event=e) for e in c.share_events]),
        lambda r: r.any_share),
    KPI("referral_link_shares", "Referral link shares",
        "Referral links shared in the period.",
        "count", "up", "trend",
        lambda c, r: TrendSpec(series=[TrendSeries(event=EventMatcher(event=c.referral_share_event))], range=r),
        lambda r: sum(line.total for line in r.lines)),
    KPI("stickiness", "Stickiness (DAU/MAU)",
        "Mean over the period's days of daily active people divided by the people active in the 30 days to that day.",
        "ratio", "up", "active_users", lambda c, r: ActiveUsersSpec(range=r), lambda r: r.stickiness),
)  # fmt: skip
BY_KEY = {k.key: k for k in CATALOG}


def previous_range(r: DateRange) -> DateRange:
    """The period of the same length just before."""
    days = (r.date_to - r.date_from).days + 1
    return DateRange(
        date_from=date.fromordinal(r.date_from.toordinal() - days),
        date_to=date.fromordinal(r.date_to.toordinal() - days),
    )


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change; None when there is nothing to compare with."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def format_value(kpi: KPI, v: float | None) -> str:
    if v is None:
        return "—"
    if kpi.unit == "percent":
        return f"{v:.1%}"
    if kpi.unit == "seconds":
        hours = v / 3600
        return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"
    if kpi.unit == "ratio":
        return f"{v:.3f}"
    if kpi.unit == "count":
        return f"{v:,.0f}"
    return f"{v:,.1f}"
