"""Validated events as Arrow rows, and the identity inputs the writer still needs.

Why: one interpreter parsing, validating and encoding every event, while the writer resolves
identities and appends, used one core of two (the GIL). Here is the part of ingestion that
needs no shared state: it turns a request body into rows in the EventStore's schema (all but
the columns only the writer can fill: workspace, sequence number, person, account), so it
can run in another process (`ingest.processes`). What crosses back is an Arrow IPC buffer
and, for the few events that change identities (identify, alias, group, traits), a small
dict: no Python object per event, which is what made passing events between processes cost
more than it saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import orjson
import pyarrow as pa

from traction.ingest.common import common_rows
from traction.ingest.domain import CanonicalEvent, EventError, normalize_segment, parse_time
from traction.privacy.domain import ConsentPolicy, consent_allows
from traction.store.events import EVENT_SCHEMA, as_python

# Filled by the writer (the workspace too: one column per commit group, not per request).
WRITER_COLUMNS = ("workspace_id", "seq", "person_id", "account_id")
ROW_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name not in WRITER_COLUMNS])

# The identity inputs beyond the row's own columns (type, ids, timestamp).
_EXTRA = (
    "traits_set",
    "traits_set_once",
    "previous_id",
    "group_key",
    "group_traits",
    "account_hint",
)
# an event's identity inputs when all it has is the account its context names
_HINT_ONLY = (None,) * (len(_EXTRA) - 1)
_NOTHING: dict[str, Any] = {}  # (never written to: identity does not read properties)

Normalizer = Callable[[Any, datetime], CanonicalEvent]


def stored_properties(ev: CanonicalEvent) -> dict[str, object]:
    """The properties column: traits sent with a track call are kept beside them, and an
    identify's or group's traits as `$set` (what the analytics read)."""
    props = ev.properties
    if ev.traits:
        props = {**props, "$traits": ev.traits}
    if ev.type in ("identify", "group") and (ev.traits_set or ev.group_traits):
        props = {**props, "$set": ev.traits_set or ev.group_traits}
    return props


def encode(evs: Sequence[CanonicalEvent]) -> pa.Table:
    """Canonical events -> rows in `ROW_SCHEMA`. Column by column: a list comprehension per
    column is several times faster than appending rows."""
    dumps = orjson.dumps
    cols: dict[str, list[object]] = {
        "event_id": [e.event_id for e in evs],
        "type": [e.type for e in evs],
        "name": [e.name for e in evs],
        "timestamp": [e.timestamp for e in evs],
        "original_timestamp": [e.original_timestamp for e in evs],
        "sent_at": [e.sent_at for e in evs],
        "received_at": [e.received_at for e in evs],
        "anonymous_id": [e.anonymous_id for e in evs],
        "user_id": [e.user_id for e in evs],
        "distinct_id": [e.user_id or e.anonymous_id for e in evs],
        "properties": [dumps(stored_properties(e)).decode() for e in evs],
        "context": [dumps(e.context).decode() for e in evs],
    }
    return pa.table(cols, schema=ROW_SCHEMA)


def identity_extras(evs: Sequence[CanonicalEvent]) -> dict[int, tuple[Any, ...]]:
    """The identity inputs of the events that have any, by position."""
    return {
        i: tuple(getattr(e, k) for k in _EXTRA)
        for i, e in enumerate(evs)
        if e.traits_set or e.traits_set_once or e.previous_id or e.group_key or e.account_hint
    }


def identity_events(rows: pa.Table, extras: dict[int, tuple[Any, ...]]) -> list[CanonicalEvent]:
    """What the identity resolver reads of each row, as canonical events without properties
    or context (those are already encoded in `rows`)."""
    cols = [
        as_python(rows.column(n))
        for n in ("event_id", "type", "timestamp", "anonymous_id", "user_id")
    ]
    evs = [
        CanonicalEvent(eid, typ, None, ts, None, None, ts, anon, uid, _NOTHING, _NOTHING)
        for eid, typ, ts, anon, uid in zip(*cols, strict=True)
    ]
    for i, values in extras.items():
        ev = evs[i]
        for k, v in zip(_EXTRA, values, strict=True):
            setattr(ev, k, v)
    return evs


@dataclass
class Prepared:
    """One request's events, validated and encoded (or the reason the request was refused)."""

    rows: pa.Table = field(default_factory=ROW_SCHEMA.empty_table)
    extras: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    no_consent: int = 0  # valid events the workspace's consent policy does not keep

    @property
    def accepted(self) -> int:
        return self.rows.num_rows + self.no_consent


def validate(
    messages: Sequence[Any],
    normalize: Normalizer,
    received_at: datetime,
    max_event_bytes: int,
    body_bytes: int | None = None,
) -> tuple[list[CanonicalEvent], list[dict[str, Any]]]:
    """Each message normalised, or its error by position. `body_bytes`: the request's size;
    when it is within the per-event limit no event can exceed it, and the per-event size
    check (a re-serialisation) is skipped."""
    _, evs, rejected = _validate_at(messages, range(len(messages)), normalize, received_at,
                                    max_event_bytes, _check_size(max_event_bytes, body_bytes))  # fmt: skip
    return evs, rejected


def _check_size(max_event_bytes: int, body_bytes: int | None) -> bool:
    return body_bytes is None or body_bytes > max_event_bytes


def _size_ok(raw: Any, max_event_bytes: int) -> bool:
    try:
        return len(orjson.dumps(raw)) <= max_event_bytes
    except orjson.JSONEncodeError:  # (nested deeper than orjson writes: an error it will get)
        return False


def _validate_at(
    messages: Sequence[Any],
    indices: Sequence[int],
    normalize: Normalizer,
    received_at: datetime,
    max_event_bytes: int,
    check_size: bool,
) -> tuple[list[int], list[CanonicalEvent], list[dict[str, Any]]]:
    """`validate` for the messages at `indices`: the good ones' indices and events, the
    errors of the others."""
    where: list[int] = []
    evs: list[CanonicalEvent] = []
    rejected: list[dict[str, Any]] = []
    for i in indices:
        raw = messages[i]
        try:
            if check_size and not _size_ok(raw, max_event_bytes):
                raise EventError(f"event is larger than {max_event_bytes // 1024} KB")
            evs.append(normalize(raw, received_at))
            where.append(i)
        except EventError as e:
            mid = raw.get("messageId") or raw.get("uuid") if isinstance(raw, dict) else None
            rejected.append({"index": i, "messageId": mid, "error": str(e)})
    return where, evs, rejected


def with_consent(
    evs: list[CanonicalEvent], policy: ConsentPolicy | None, do_not_track: bool
) -> list[CanonicalEvent]:
    """What the workspace's consent policy keeps. Dropped events are acknowledged like
    stored ones (a retry would be dropped again) and counted."""
    if policy is None or policy.stores_everything or not evs:
        return evs
    return [e for e in evs if consent_allows(policy, e.context, do_not_track)]


def prepare(
    messages: Sequence[Any],
    normalize: Normalizer,
    received_at: datetime,
    max_event_bytes: int,
    body_bytes: int | None,
    policy: ConsentPolicy | None,
    do_not_track: bool,
) -> Prepared:
    evs, rejected = validate(messages, normalize, received_at, max_event_bytes, body_bytes)
    kept = with_consent(evs, policy, do_not_track)
    return Prepared(encode(kept), identity_extras(kept), rejected, len(evs) - len(kept))


BATCH_KEYS = frozenset(
    {"batch", "sentAt", "context", "integrations", "writeKey", "_metadata", "metadata"}
)


@dataclass(frozen=True)
class SegmentBatch:
    messages: list[Any]
    sent_at: datetime | None
    context: dict[str, Any] | None
    write_key: str | None

    def normalizer(self, client_ip: str | None) -> Normalizer:
        """Each message normalised with what the batch says for all of them."""
        return partial(normalize_segment, batch_sent_at=self.sent_at,
                       batch_context=self.context, client_ip=client_ip)  # fmt: skip


def segment_batch(data: bytes) -> SegmentBatch:
    """A `/v1/batch` body, or an EventError saying what is wrong with it (a 400)."""
    if not data:
        raise EventError("request body is empty; send a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise EventError(f"body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise EventError('body must be an object like {"batch": [...]}')
    unknown = body.keys() - BATCH_KEYS
    if unknown:
        raise EventError(f"unknown field {sorted(unknown)[0]!r} in batch body")
    messages = body.get("batch")
    if not isinstance(messages, list):
        raise EventError("batch must be a list of messages")
    sent_at = parse_time(body.get("sentAt"), "sentAt")
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise EventError("context must be an object")
    key = body.get("writeKey")
    return SegmentBatch(messages, sent_at, context, key if isinstance(key, str) else None)


def prepare_batch(
    batch: SegmentBatch,
    client_ip: str | None,
    received_at: datetime,
    max_event_bytes: int,
    body_bytes: int | None,
    policy: ConsentPolicy | None,
    do_not_track: bool,
) -> Prepared:
    """`prepare` for a `/v1/batch` body: its common messages by columns (`common.py`), the
    rest by the rules, the rows in the batch's order (identity reads them in that order)."""
    messages, norm = batch.messages, batch.normalizer(client_ip)
    if policy is not None and not policy.stores_everything:  # (it reads each event's context)
        return prepare(messages, norm, received_at, max_event_bytes, body_bytes, policy,
                       do_not_track)  # fmt: skip
    check_size = _check_size(max_event_bytes, body_bytes)
    fits = [_size_ok(m, max_event_bytes) for m in messages] if check_size else None
    common = common_rows(messages, ROW_SCHEMA, received_at, batch.sent_at, batch.context,
                         client_ip, fits)  # fmt: skip
    extras = {r: (*_HINT_ONLY, hint) for r, hint in common.hints.items()}
    if len(common.positions) == len(messages):
        return Prepared(common.rows, extras)
    taken = set(common.positions)
    rest = [i for i in range(len(messages)) if i not in taken]
    where, evs, rejected = _validate_at(messages, rest, norm, received_at, max_event_bytes,
                                        check_size)  # fmt: skip
    positions = common.positions + where
    rows = pa.concat_tables([common.rows, encode(evs)])
    order = sorted(range(len(positions)), key=positions.__getitem__)
    if order != list(range(len(order))):
        rows = rows.take(pa.array(order, pa.int64()))
    rank = {p: r for r, p in enumerate(sorted(positions))}
    extras = {rank[common.positions[r]]: v for r, v in extras.items()}
    extras.update((rank[where[j]], v) for j, v in identity_extras(evs).items())
    return Prepared(rows, extras, rejected)


@dataclass(frozen=True)
class SegmentJob:
    """What an ingest process needs to prepare one `/v1/batch` request (all picklable)."""

    body: bytes
    received_at: datetime
    client_ip: str | None
    max_event_bytes: int
    policy: ConsentPolicy | None
    do_not_track: bool


# (rows as Arrow IPC, extras, rejected, no_consent) or the request's 400 message
Wire = tuple[bytes, dict[int, tuple[Any, ...]], list[dict[str, Any]], int] | str


def prepare_segment_batch(job: SegmentJob) -> Wire:
    """Runs in an ingest process: the body to what the writer needs, or why it is refused."""
    try:
        batch = segment_batch(job.body)
    except EventError as e:
        return str(e)
    p = prepare_batch(batch, job.client_ip, job.received_at, job.max_event_bytes,
                      len(job.body), job.policy, job.do_not_track)  # fmt: skip
    return to_wire(p)


def to_wire(p: Prepared) -> Wire:
    """What crosses between processes: the rows as one Arrow IPC buffer, the rest as is."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ROW_SCHEMA) as w:
        w.write_table(p.rows)
    return sink.getvalue().to_pybytes(), p.extras, p.rejected, p.no_consent


def from_wire(wire: Wire) -> Prepared:
    """The other side of `prepare_segment_batch` (a refusal raises EventError)."""
    if isinstance(wire, str):
        raise EventError(wire)
    buf, extras, rejected, no_consent = wire
    return Prepared(pa.ipc.open_stream(buf).read_all(), extras, rejected, no_consent)
