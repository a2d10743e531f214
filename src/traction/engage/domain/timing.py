"""When a message may go: quiet hours in the person's time zone, the next HH:00 for a wait,
frequency caps across journeys, and the stable hashes that pick holdouts and split paths.

Times are naive UTC (as the stores keep them); a person's zone is their `timezone` trait
(an IANA name), UTC when missing or unknown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from traction.engage.domain.journeys import WEEKDAYS, QuietHours, Schedule, minutes


def zone(name: object) -> ZoneInfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def _local(now: datetime, tz: ZoneInfo) -> datetime:
    return now.replace(tzinfo=UTC).astimezone(tz)


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC).replace(tzinfo=None)


def in_quiet_hours(now: datetime, quiet: QuietHours, tz: ZoneInfo) -> bool:
    t = _local(now, tz)
    m = t.hour * 60 + t.minute
    start, end = minutes(quiet.start), minutes(quiet.end)
    if start == end:
        return False
    return start <= m < end if start < end else (m >= start or m < end)


def next_allowed(now: datetime, quiet: QuietHours | None, tz: ZoneInfo) -> datetime:
    """`now` if a message may go now, else the end of the quiet period (the person's local
    `end` time, on the right day, through daylight-saving changes)."""
    if quiet is None or not in_quiet_hours(now, quiet, tz):
        return now
    local = _local(now, tz)
    end = minutes(quiet.end)
    candidate = local.replace(hour=end // 60, minute=end % 60, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(hour=end // 60, minute=end % 60,
                                                         second=0, microsecond=0)  # fmt: skip
    # re-attach the zone for that date (the offset can differ from today's)
    naive = candidate.replace(tzinfo=None)
    return _utc(naive.replace(tzinfo=tz))


def next_hour(after: datetime, hour: int, tz: ZoneInfo) -> datetime:
    """The first time after `after` that it is hour:00 for the person."""
    local = _local(after, tz)
    candidate = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(
            hour=hour, minute=0, second=0, microsecond=0
        )
    return _utc(candidate.replace(tzinfo=None).replace(tzinfo=tz))


def over_cap(sent_at: Sequence[datetime], now: datetime, per_day: int, per_week: int) -> bool:
    """Would one more non-transactional message break a cap? `sent_at`: this person's
    non-transactional messages (any journey), by when they went."""
    day = sum(1 for t in sent_at if now - t < timedelta(days=1))
    week = sum(1 for t in sent_at if now - t < timedelta(days=7))
    return day >= per_day or week >= per_week


def unit_hash(*parts: str) -> float:
    """A stable number in [0, 1) from the parts (the same person and journey: the same arm)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_holdout(journey: str, person: str, share: float) -> bool:
    return share > 0 and unit_hash("holdout", journey, person) < share


def pick_path(weights: Sequence[float], *parts: str) -> int:
    x, acc = unit_hash("split", *parts), 0.0
    for i, w in enumerate(weights):
        acc += w
        if x < acc:
            return i
    return len(weights) - 1


def last_occurrence(sc: Schedule, now: datetime) -> datetime:
    """The latest time the schedule fires at or before `now` (both naive UTC). Wall-clock
    times are in the schedule's zone: 09:00 stays 09:00 across daylight-saving changes (a
    time the change skips is read as zoneinfo reads it, shifted by the gap)."""
    tz = ZoneInfo(sc.timezone)
    at = minutes(sc.at)
    today = _local(now, tz).date()
    for back in range(63):  # two months back covers every kind
        d = today - timedelta(days=back)
        if sc.every == "week" and d.weekday() != WEEKDAYS.index(sc.weekday):
            continue
        if sc.every == "month" and d.day != sc.day:
            continue
        t = _utc(datetime(d.year, d.month, d.day, at // 60, at % 60, tzinfo=tz))
        if t <= now:
            return t
    raise AssertionError("a schedule fires at least every month")
