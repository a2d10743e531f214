"""When metered usage starts again from zero: calendar periods in UTC, or the subscription's
own billing period."""

from __future__ import annotations

from datetime import datetime, timedelta

FOREVER = (datetime(1970, 1, 1), datetime(9999, 12, 31))


def add_months(t: datetime, months: int) -> datetime:
    """The same day and time `months` later; a day that month lacks becomes its last day
    (Jan 31 + 1 month = Feb 28 or 29), as Stripe anchors billing periods."""
    y, m = divmod(t.month - 1 + months, 12)
    year, month = t.year + y, m + 1
    nxt = datetime(year + (month == 12), month % 12 + 1, 1)
    last = (nxt - timedelta(days=1)).day
    return t.replace(year=year, month=month, day=min(t.day, last))


def usage_window(
    reset: str, at: datetime, billing: tuple[datetime, datetime] | None = None
) -> tuple[datetime, datetime]:
    """The [start, end) of the usage period `at` falls in (naive UTC)."""
    if reset == "hour":
        start = at.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    if reset == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if reset == "week":  # ISO weeks: Monday to Monday
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if reset == "month":
        start = datetime(at.year, at.month, 1)
        return start, add_months(start, 1)
    if reset == "year":
        return datetime(at.year, 1, 1), datetime(at.year + 1, 1, 1)
    if reset == "never":
        return FOREVER
    if reset == "billing_period":
        if billing is None:  # no subscription period (a free account): calendar months
            return usage_window("month", at)
        return billing
    raise ValueError(f"unknown reset period {reset!r}")


def period_containing(anchor: datetime, months: int, at: datetime) -> tuple[datetime, datetime]:
    """The billing period of `months` months, anchored at `anchor` (each boundary computed
    from the anchor, so Jan 31 gives Feb 28 then Mar 31), that `at` falls in."""
    k = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    k -= k % months
    while add_months(anchor, k) > at:
        k -= months
    while add_months(anchor, k + months) <= at:
        k += months
    return add_months(anchor, k), add_months(anchor, k + months)
