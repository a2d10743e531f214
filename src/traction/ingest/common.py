"""The common Segment message (a track, page or screen call with plain ids and a UTC
timestamp), checked by msgspec and encoded a column at a time.

Why: parsing, checking and encoding each event field by field in Python was ~16 µs an event,
the largest share of ingestion's time on the one interpreter (issue 10's profiles). Here the
type checks run in C (`msgspec.convert` over what orjson parsed, so the JSON is read exactly
as before), the few rules msgspec cannot say run once per event, and no `CanonicalEvent` is
made. Anything else (identify, alias, group, traits, odd times, junk ids, bad input) is left
for the rules in `domain.py`, which also word the errors: this module never rejects, it only
declines. A property test holds both to the same rows for every message this one accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from traction.ingest.domain import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    context_group,
    is_junk_id,
    utc_time,
)

_Id = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
_Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_LENGTH)]


class Common(msgspec.Struct, forbid_unknown_fields=True):
    """The keys a common message may have (a `traits`, `sentAt` or `originalTimestamp` key
    makes it uncommon: those change what is stored)."""

    type: Literal["track", "page", "screen"]
    messageId: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    timestamp: str
    userId: _Id | None = None
    anonymousId: _Id | None = None
    event: _Name | None = None
    name: _Name | None = None
    category: _Name | None = None
    properties: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    # Segment's keys that change nothing stored for these calls: accepted, ignored.
    receivedAt: Any = None
    writeKey: Any = None
    metadata: Any = msgspec.field(default=None, name="_metadata")
    channel: Any = None
    version: Any = None
    options: Any = None
    library: Any = None
    groupId: Any = None
    previousId: Any = None


_MANY = list[Common]


def _one(message: Any) -> Common | None:
    try:
        return msgspec.convert(message, Common)
    except Exception:  # (any refusal, whatever its kind, leaves the message to the rules)
        return None


def _all(messages: list[Any]) -> list[Common | None]:
    """Each message as a `Common`, or None; the whole list in one call when it can be."""
    try:
        return list(msgspec.convert(messages, _MANY))
    except Exception:
        return [_one(m) for m in messages]


_TIMESTAMP = pa.timestamp("us")
_STRING = pa.string()


def _same(values: list[Any]) -> bool:
    """Whether a non-empty column holds one value (a batch's `type`, often its `name` and
    timestamp): then it is repeated by Arrow, not converted value by value. (`list.count`
    runs in C: 0.1 µs for 100 equal strings, against 4-26 µs to convert them.)"""
    return bool(values) and values.count(values[0]) == len(values)


def _strings(values: list[Any]) -> pa.Array:
    if _same(values):
        return pa.repeat(pa.scalar(values[0], _STRING), len(values))
    return pa.array(values, _STRING)


def _timestamps(values: list[datetime]) -> pa.Array:
    """Naive datetimes as an Arrow column. (Inferred, not typed: `pa.array(values, type)`
    took 15 µs a datetime here, against 0.25 inferred.)"""
    if _same(values):
        return _repeat(values[0], len(values))
    column = pa.array(values)
    return column if column.type == _TIMESTAMP else column.cast(_TIMESTAMP)


def _repeat(value: datetime | None, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, _TIMESTAMP), n)


@dataclass
class CommonRows:
    """The rows of the common messages of a batch, and where each came from."""

    positions: list[int]  # each row's index in the batch
    rows: pa.Table  # in `prepare.ROW_SCHEMA`
    hints: dict[int, str]  # row -> the account `context.groupId` names


def common_rows(
    messages: list[Any],
    schema: pa.Schema,
    received_at: datetime,
    sent_at: datetime | None,
    batch_context: dict[str, Any] | None,
    client_ip: str | None,
    eligible: list[bool] | None = None,
) -> CommonRows:
    """The messages of the common shape as rows (`eligible`: which may be; all if None).
    Each row is what `normalize_segment` then `encode` make of that message. One pass picks
    the messages (the rules msgspec cannot say), then each column is one comprehension, or
    one value repeated when the whole column holds it."""
    pos: list[int] = []
    picked: list[Common] = []
    times: list[datetime] = []
    last: str | None = None
    last_ts: datetime | None = None
    for i, m in enumerate(_all(messages)):
        if m is None or (eligible is not None and not eligible[i]):
            continue
        if m.timestamp != last:  # (a batch's messages often share their timestamp)
            last, last_ts = m.timestamp, utc_time(m.timestamp)
        ts = last_ts
        user, anon = m.userId, m.anonymousId
        if ts is None or (user is None and anon is None) or (m.type == "track" and not m.event):
            continue
        if (user is not None and is_junk_id(user)) or (anon is not None and is_junk_id(anon)):
            continue
        pos.append(i)
        picked.append(m)
        times.append(ts)
    n = len(pos)
    dumps = orjson.dumps
    own = [m.context for m in picked]
    hints: dict[int, str] = {}
    try:
        props = [dumps(m.properties or {}) for m in picked]
        if not batch_context and own.count(None) == n:  # (one context for every row)
            encoded = pa.repeat(
                pa.scalar(dumps({"ip": client_ip} if client_ip else {}).decode(), _STRING), n
            )
        else:
            contexts = [c or {} for c in own]
            if batch_context:
                contexts = [{**batch_context, **c} for c in contexts]
            if client_ip:
                contexts = [c if "ip" in c else {**c, "ip": client_ip} for c in contexts]
            encoded = pa.array([dumps(c) for c in contexts], _STRING)
            hints = {r: h for r, c in enumerate(contexts) if "groupId" in c and (h := context_group(c))}  # fmt: skip
    except TypeError:  # (an integer beyond 64 bits somewhere: the rules say what to send)
        return common_rows(messages, schema, received_at, sent_at, batch_context, client_ip,
                           _one_by_one(messages, eligible))  # fmt: skip
    original = _timestamps(times)
    # Segment's clock-skew rule, as `correct_skew` (no overflow: both years are 1970-2200)
    skew = None if sent_at is None else pa.scalar(received_at - sent_at)
    timestamps = original if skew is None else pc.add(original, skew)
    users = [m.userId for m in picked]
    anons = [m.anonymousId for m in picked]
    user_ids, anonymous_ids = pa.array(users, _STRING), pa.array(anons, _STRING)
    if anons.count(None) == n:  # (the common ids are never empty: "" is a junk id)
        distinct = user_ids
    elif users.count(None) == n:
        distinct = anonymous_ids
    else:
        distinct = pa.array([u or a for u, a in zip(users, anons, strict=True)], _STRING)
    cols: dict[str, Any] = {
        "event_id": pa.array([m.messageId for m in picked], _STRING),
        "type": _strings([m.type for m in picked]),
        "name": _strings([m.event if m.type == "track" else m.name or m.category for m in picked]),
        "timestamp": timestamps,
        "original_timestamp": original,
        "sent_at": _repeat(sent_at, n),
        "received_at": _repeat(received_at, n),
        "anonymous_id": anonymous_ids,
        "user_id": user_ids,
        "distinct_id": distinct,
        "properties": pa.array(props, _STRING),
        "context": encoded,
    }
    return CommonRows(
        pos, pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema), hints
    )


def _one_by_one(messages: list[Any], eligible: list[bool] | None) -> list[bool]:
    """Which messages orjson can write back (a rare integer beyond 64 bits cannot)."""
    ok = []
    for i, m in enumerate(messages):
        try:
            orjson.dumps(m)
            ok.append(eligible is None or eligible[i])
        except TypeError:
            ok.append(False)
    return ok
