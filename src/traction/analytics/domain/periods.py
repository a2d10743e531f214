"""Calendar interval arithmetic, the same rules the SQL uses (weeks start on Monday)."""

from __future__ import annotations

from datetime import date, datetime, timedelta


def interval_start(d: date, interval: str) -> date:
    if interval == "day":
        return d
    if interval == "week":
        return d - timedelta(days=d.weekday())
    if interval == "month":
        return d.replace(day=1)
    raise ValueError(f"unknown interval {interval!r}")


def periods_between(a: date, b: date, interval: str) -> int:
    """How many interval boundaries lie between the intervals holding a and b."""
    a, b = interval_start(a, interval), interval_start(b, interval)
    if interval == "day":
        return (b - a).days
    if interval == "week":
        return (b - a).days // 7
    return (b.year - a.year) * 12 + (b.month - a.month)


def last_observable_period(cohort: date, data_end: datetime | date, interval: str) -> int:
    """The last period whose interval has begun by the latest event. It is still in progress
    (open): only the periods before it are complete."""
    end = data_end.date() if isinstance(data_end, datetime) else data_end
    return max(0, periods_between(cohort, end, interval))


def bucket_end(start: datetime, interval: str) -> datetime:
    """Where the bucket that begins at `start` ends (the next one's start)."""
    if interval == "hour":
        return start + timedelta(hours=1)
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return datetime.combine(
        (start.date().replace(day=28) + timedelta(days=4)).replace(day=1), start.time()
    )


def is_complete(start: datetime, interval: str, horizon: datetime | None) -> bool:
    """A bucket is complete once the data reaches past its end. `horizon`: the latest event
    (local time); with no data nothing is complete."""
    return horizon is not None and bucket_end(start, interval) <= horizon


def buckets(first: datetime, last: datetime, interval: str) -> list[datetime]:
    """Every bucket start from the one holding `first` to the one holding `last` (local time)."""
    from datetime import timedelta

    if interval == "hour":
        cur = first.replace(minute=0, second=0, microsecond=0)
        step = timedelta(hours=1)
        out = []
        while cur <= last:
            out.append(cur)
            cur += step
        return out
    day = interval_start(first.date(), interval)
    end = interval_start(last.date(), interval)
    out = []
    while day <= end:
        out.append(datetime.combine(day, datetime.min.time()))
        if interval == "day":
            day += timedelta(days=1)
        elif interval == "week":
            day += timedelta(days=7)
        else:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out
