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
    MIN_DATE,
    ActivationSpec,
    ActiveUsersSpec,
    AllOf,
    DateRange,
    EventCount,
    EventMatcher,
    FeatureAdoptionSpec,
    FunnelSpec,
    PropertyFilter,
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
    paid_window_days: float = Field(30.0, gt=0, le=365)
    # the PLG revenue KPIs (docs/metrics.md)
    checkout_event: EventName = "checkout_started"
    expansion_signals: tuple[EventName, ...] = Field(
        ("$limit_approaching", "$limit_reached", "$feature_locked"), min_length=1, max_length=10
    )
    expansion_window_days: float = Field(90.0, gt=0, le=730)
    gross_margin: float = Field(0.8, gt=0, le=1)
    # what makes a person a product-qualified lead: an event (a lead-scoring rule can send
    # one); by default, activating
    pql_event: EventName | None = None

    def free_to_paid(self, r: DateRange) -> FunnelSpec:
        """Signed up, then a subscription change that made the account pay (billing's events
        carry `mrr_after`; the buyer's person is on them)."""
        paying = EventMatcher(
            event="$any",
            filters=[PropertyFilter(property="mrr_after", operator="gt", value=0),
                     PropertyFilter(property="mrr_before", operator="equals", value=0)],
        )  # fmt: skip
        return FunnelSpec(
            steps=[EventMatcher(event=self.signup_event), paying],
            range=r,
            window_days=self.paid_window_days,
        )

    def activation(self, r: DateRange) -> ActivationSpec:
        return ActivationSpec(
            start_event=EventMatcher(event=self.signup_event),
            criteria=AllOf(
                all=[EventCount(event=EventMatcher(event=e)) for e in self.activation_events]
            ),
            window_days=self.activation_window_days,
            range=r,
        )


@dataclass(frozen=True)
class RevenueSpec:
    """The PLG revenue KPIs' input: what they compute from is the workspace's whole history
    (see `billing.domain.plg`), read through this configuration, for one period."""

    config: KPIConfig
    range: DateRange


def _revenue(c: KPIConfig, r: DateRange) -> RevenueSpec:
    return RevenueSpec(c, r)


Unit = Literal["percent", "seconds", "count", "ratio", "events", "money"]


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
    # How many days after the range's end its value reads events (conversion windows, day-N
    # retention). Once the data reaches past that, the value is final: later events cannot
    # change it, only late ones (timestamped earlier) or merges can.
    lookahead_days: Callable[[KPIConfig], float] = lambda c: 0.0
    empty: str = "no events in the period"  # why the value can be unknown, for the reader
    group: str = "Growth"  # the scorecard's section


def _funnel(*events: str, window: float | str) -> Callable[[KPIConfig, DateRange], FunnelSpec]:
    """Steps and window given as KPIConfig field names (or literal values)."""

    def build(c: KPIConfig, r: DateRange) -> FunnelSpec:
        names = [getattr(c, e) if hasattr(c, e) else e for e in events]
        days = getattr(c, window) if isinstance(window, str) else window
        return FunnelSpec(steps=[EventMatcher(event=n) for n in names], range=r, window_days=days)

    return build


_WINDOWS: dict[str, Callable[[KPIConfig], float]] = {
    "paid": lambda c: c.paid_window_days,
    "expansion": lambda c: c.expansion_window_days,
    "checkout": lambda c: 1.0,
}


def _plg(key: str, name: str, definition: str, unit: Unit, *, direction: Literal["up", "down"] = "up",
         window: str | None = None, empty: str = "no events in the period") -> KPI:  # fmt: skip
    """A PLG revenue KPI: one field of `plg_revenue`'s result, read `window` days ahead."""
    return KPI(key, name, definition, unit, direction, "plg_revenue", _revenue,
               lambda r: getattr(r, key), lookahead_days=_WINDOWS[window] if window else (lambda c: 0.0),
               empty=empty, group="Revenue")  # fmt: skip


CATALOG: tuple[KPI, ...] = (
    KPI("visitor_to_signup", "Visitor-to-sign-up conversion",
        "Share of people who viewed a page in the period and signed up within 30 days of that visit.",
        "percent", "up", "funnel", _funnel("visit_event", "signup_event", window="visitor_window_days"),
        lambda r: r.overall_conversion, lookahead_days=lambda c: c.visitor_window_days, empty="nobody viewed a page in the period"),
    KPI("trial_signup_rate", "Trial sign-up rate",
        "Share of sign-ups in the period who started a trial within a day of signing up.",
        "percent", "up", "funnel", _funnel("signup_event", "trial_event", window=1),
        lambda r: r.overall_conversion, lookahead_days=lambda c: 1.0, empty="nobody signed up in the period"),
    KPI("activation_rate", "Activation rate",
        "Share of people who signed up in the period and met the activation criteria (default: created a project and invited a teammate) within 7 days.",
        "percent", "up", "activation", lambda c, r: c.activation(r), lambda r: r.rate,
        lookahead_days=lambda c: c.activation_window_days, empty="no sign-up in the period whose activation window has closed"),
    KPI("onboarding_dropoff", "Onboarding drop-off",
        "Share of sign-ups in the period who did not finish every onboarding step, in order, within the activation window.",
        "percent", "down", "onboarding",
        lambda c, r: c.activation(r),
        lambda r: None if r.overall_conversion is None else 1 - r.overall_conversion,
        lookahead_days=lambda c: c.activation_window_days, empty="no sign-up in the period whose activation window has closed"),
    KPI("time_to_first_value", "Time to first value (median)",
        "Median time from sign-up to activation, over the people who activated.",
        "seconds", "down", "activation", lambda c, r: c.activation(r), lambda r: r.ttfv(0.5),
        lookahead_days=lambda c: c.activation_window_days, empty="nobody who signed up in the period has activated"),
    KPI("engagement_depth", "Engagement depth (first 3 sessions)",
        "Mean events per session over the first three sessions of people new in the period (30-minute sessions).",
        "events", "up", "sessions", lambda c, r: SessionsSpec(range=r, actors="new"), lambda r: r.depth_events, empty="nobody had a first session in the period"),
    KPI("activation_retention_d7", "Activation cohort retention D7",
        "Share of people activated in the period who were active on the 7th day after activating.",
        "percent", "up", "activation_retention", lambda c, r: c.activation(r),
        lambda r: r.by_day.get(7), {"days": (7, 30)}, lambda c: c.activation_window_days + 31, empty="nobody activated in the period, or their 7th day is still to come"),
    KPI("activation_retention_d30", "Activation cohort retention D30",
        "Share of people activated in the period who were active on the 30th day after activating.",
        "percent", "up", "activation_retention", lambda c, r: c.activation(r),
        lambda r: r.by_day.get(30), {"days": (7, 30)}, lambda c: c.activation_window_days + 31, empty="nobody activated in the period, or their 30th day is still to come"),
    KPI("sharing_rate", "Product sharing rate",
        "Share of people active in the period who invited a teammate or shared a referral link.",
        "percent", "up", "feature_adoption",
        lambda c, r: FeatureAdoptionSpec(range=r, features=[EventMatcher(event=e) for e in c.share_events]),
        lambda r: r.any_share, empty="nobody was active in the period"),
    KPI("referral_link_shares", "Referral link shares",
        "Referral links shared in the period.",
        "count", "up", "trend",
        lambda c, r: TrendSpec(series=[TrendSeries(event=EventMatcher(event=c.referral_share_event))], range=r),
        lambda r: sum(line.total for line in r.lines)),
    KPI("free_to_paid", "Free-to-paid conversion (self-serve)",
        "Share of people who signed up in the period and bought a paid plan (their account went from no MRR to some) within 30 days.",
        "percent", "up", "funnel", lambda c, r: c.free_to_paid(r), lambda r: r.overall_conversion,
        lookahead_days=lambda c: c.paid_window_days, empty="nobody signed up in the period", group="Revenue"),
    KPI("stickiness", "Stickiness (DAU/MAU)",
        "Mean over the period's days of daily active people divided by the people active in the 30 days to that day.",
        "ratio", "up", "active_users", lambda c, r: ActiveUsersSpec(range=r), lambda r: r.stickiness,
        empty="nobody was active in the period"),
    # -- revenue (from billing's subscription events: billing.domain.plg) --
    _plg("free_to_paid_activated", "Free-to-paid, activated (self-serve)",
        "Of the people who signed up in the period and activated, the share who made their account pay within 30 days of signing up.", "percent",
         window="paid", empty="nobody who signed up in the period activated"),
    _plg("free_to_paid_not_activated", "Free-to-paid, not activated (self-serve)",
        "Of the people who signed up in the period and did not activate, the share who made their account pay within 30 days of signing up.", "percent",
         window="paid", empty="everyone who signed up in the period activated, or nobody signed up"),
    _plg("checkout_rate", "Self-serve checkout rate",
        "Share of the checkouts started in the period after which the account's MRR went up within a day.", "percent",
         window="checkout", empty="no checkout was started in the period"),
    _plg("upgrade_rate_post_activation", "Self-serve upgrade rate (post-activation)",
        "Of the people who activated in the period, the share who raised their account's MRR themselves (a purchase or an upgrade) within 30 days.", "percent",
         window="paid", empty="nobody activated in the period"),
    _plg("revenue_per_trial_user", "Revenue per trial user",
        "MRR added by the purchases that the people who started a trial in the period made within 30 days, over the number of those people.", "money",
         window="paid", empty="nobody started a trial in the period"),
    _plg("expansion_revenue", "Self-serve expansion revenue",
        "MRR added in the period by accounts already paying, through changes their own people made (upgrades, seats, add-ons).", "money"),
    _plg("upsell_revenue", "Self-serve upsell revenue",
        "The part of self-serve expansion revenue that came from moving to a higher plan.", "money"),
    _plg("activation_to_expansion", "Activation-to-expansion rate",
        "Of the people who activated in the period, the share whose paying account expanded within 90 days.", "percent",
         window="expansion", empty="nobody activated in the period"),
    _plg("time_to_expansion_signal", "Time to expansion signal (median)",
        "Median time from sign-up to the first upgrade trigger (a limit approached or reached, a locked feature) on the person's account, within 90 days.", "seconds",
         direction="down", window="expansion", empty="nobody who signed up in the period hit a limit or a locked feature"),
    _plg("converted_pql_ltv", "Converted PQL lifetime value",
        "Mean LTV (MRR x gross margin / monthly customer churn) of the accounts whose product-qualified lead of the period was followed by their first purchase within 30 days.", "money",
         window="paid", empty="no PQL of the period converted, or no churn yet to estimate a lifetime from"),
)  # fmt: skip
BY_KEY = {k.key: k for k in CATALOG}


def previous_range(r: DateRange) -> DateRange:
    """The period of the same length just before (never before the earliest date a range may
    have: a period starting in January 1970 is compared with its own first day)."""
    days = (r.date_to - r.date_from).days + 1
    return DateRange(
        date_from=max(MIN_DATE, date.fromordinal(r.date_from.toordinal() - days)),
        date_to=max(MIN_DATE, date.fromordinal(r.date_to.toordinal() - days)),
    )


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change; None when there is nothing to compare with."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def change_points(kpi: KPI, current: float | None, previous: float | None) -> float | None:
    """A rate's change in percentage points: 40% -> 44% is +4 pp, which is what a reader of a
    rate means by "up 4"; the relative +10% would read as 40% -> 50%."""
    if kpi.unit != "percent" or current is None or previous is None:
        return None
    return (current - previous) * 100


def format_change(kpi: KPI, current: float | None, previous: float | None) -> str:
    """`+4.0 pp` for rates, `+12.5%` for the rest; no sign when it rounds to zero (never
    "-0.0%"); an em dash when there is nothing to compare with."""
    points = change_points(kpi, current, previous)
    if points is not None:
        return _signed(points, " pp")
    rel = change(current, previous)
    return "—" if rel is None else _signed(rel * 100, "%")


def _signed(v: float, suffix: str) -> str:
    text = f"{abs(v):.1f}"
    if text.strip("0.") == "":
        return "0.0" + suffix
    return ("+" if v > 0 else "-") + text + suffix


def scorecard_row(kpi: KPI, now: float | None, before: float | None) -> dict[str, Any]:
    """One KPI's line on the scorecard, the same in the API, the CLI and the dashboard."""
    rel = change(now, before)
    points = change_points(kpi, now, before)
    moved = points if points is not None else rel
    return {
        "key": kpi.key, "name": kpi.name, "group": kpi.group, "value": now, "previous": before, "change": rel,
        "change_points": points, "unit": kpi.unit, "direction": kpi.direction,
        "definition": kpi.definition, "formatted": format_value(kpi, now),
        "formatted_previous": format_value(kpi, before),
        "formatted_change": format_change(kpi, now, before),
        # better or worse, once the change shows in the rounded figure
        "trend": None if moved is None or format_change(kpi, now, before).startswith("0.0")
        else ("good" if (moved > 0) == (kpi.direction == "up") else "bad"),
        "empty": None if now is not None else kpi.empty,
        "empty_previous": None if before is not None else kpi.empty,
    }  # fmt: skip


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
    if kpi.unit == "money":
        return f"{v:,.2f}"
    return f"{v:,.1f}"
