"""Pure ingest logic: turn a Segment or PostHog payload into canonical events, or say why not.

No I/O here. Every rule that decides what is stored lives in this module, so it can be
tested exhaustively without a server.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SEGMENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})

# Keys a Segment message may carry. Anything else is a client bug worth hearing about.
SEGMENT_KEYS = frozenset(
    {
        "type", "messageId", "timestamp", "originalTimestamp", "sentAt", "receivedAt",
        "userId", "anonymousId", "event", "name", "category", "properties", "traits",
        "context", "integrations", "groupId", "previousId", "writeKey", "_metadata",
        "channel", "version", "options", "library",
    }
)  # fmt: skip
POSTHOG_KEYS = frozenset(
    {
        "event", "distinct_id", "properties", "timestamp", "uuid", "api_key", "token",
        "type", "offset", "$set", "$set_once", "sent_at", "library", "library_version",
    }
)  # fmt: skip

# Ids that broken clients send for "no user". Merging on them would glue strangers together.
JUNK_IDS = frozenset(
    {
        "", "undefined", "null", "none", "nil", "nan", "0", "-1", "anonymous", "guest",
        "distinctid", "distinct_id", "id", "user_id", "userid", "not_authenticated",
        "email", "true", "false", "[object object]", "unknown",
    }
)  # fmt: skip

MAX_ID_LENGTH = 200
MAX_NAME_LENGTH = 200


class EventError(ValueError):
    """A message that cannot be stored; the text says what is wrong and what to send instead."""


@dataclass(slots=True)
class CanonicalEvent:
    event_id: str
    type: str
    name: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    anonymous_id: str | None
    user_id: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    # Identity inputs, consumed by the identity resolver before the row is stored.
    traits_set: dict[str, Any] | None = None
    traits_set_once: dict[str, Any] | None = None
    previous_id: str | None = None  # alias: the id being merged into this person
    group_key: str | None = None  # group call: the account joined
    group_traits: dict[str, Any] | None = None
    account_hint: str | None = None  # the account this event is about, if it says
    traits: dict[str, Any] | None = None  # traits sent on a track/page call: kept, not applied

    @property
    def distinct_id(self) -> str:
        return self.user_id or self.anonymous_id or ""


_JUNK_LONGEST = max(map(len, JUNK_IDS))


def is_junk_id(value: str) -> bool:
    # (most ids are uuids or emails: longer than any junk word even with spaces around it,
    # which spares the strip and lower of each)
    if len(value) > _JUNK_LONGEST and not value[0].isspace() and not value[-1].isspace():
        return False
    return value.strip().lower() in JUNK_IDS


def parse_time(value: Any, field_name: str) -> datetime | None:
    """ISO-8601 string -> naive UTC datetime. Naive input is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{field_name} must be an ISO-8601 string, got {type(value).__name__}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(f"{field_name} is not an ISO-8601 date-time: {value[:40]!r}") from None
    if dt.tzinfo is UTC:  # "Z" or "+00:00", most SDKs' form: no conversion needed
        dt = dt.replace(tzinfo=None)
    elif dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    if not (1970 <= dt.year <= 2200):
        raise EventError(f"{field_name} is out of range: {value[:40]!r}")
    return dt


def correct_skew(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's rule: the device clock may be wrong, but the gap between the event and the
    send is right, so timestamp = receivedAt - (sentAt - timestamp)."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


def _opt_id(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value.__class__ is str and len(value) <= MAX_ID_LENGTH:  # the common case, first
        return value  # type: ignore[no-any-return]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError(f"{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise EventError(f"{key} is longer than {MAX_ID_LENGTH} characters")
    return text


def _opt_obj(raw: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EventError(f"{key} must be an object, got {type(value).__name__}")
    return value


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{key} must be a string, got {type(value).__name__}")
    if len(value) > MAX_NAME_LENGTH:
        raise EventError(f"{key} is longer than {MAX_NAME_LENGTH} characters")
    return value


def _clean_ids(user_id: str | None, anonymous_id: str | None) -> tuple[str | None, str | None]:
    if user_id is not None and is_junk_id(user_id):
        if anonymous_id is None or is_junk_id(anonymous_id):
            raise EventError(
                f"userId {user_id!r} is not a real id; send the user's id or an anonymousId"
            )
        user_id = None
    if anonymous_id is not None and is_junk_id(anonymous_id):
        if user_id is None:
            raise EventError(
                f"anonymousId {anonymous_id!r} is not a real id; generate a random one"
            )
        anonymous_id = None
    if user_id is None and anonymous_id is None:
        raise EventError("userId or anonymousId is required")
    return user_id, anonymous_id


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> list[IPNetwork]:
    """ "10.0.0.0/8, 127.0.0.1" -> networks; ValueError naming the bad entry."""
    nets: list[IPNetwork] = []
    for part in spec.split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address or CIDR range") from None
    return nets


def _in(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def from_trusted_proxy(peer: str | None, trusted_proxies: Sequence[IPNetwork]) -> bool:
    """Whether the connection comes from a proxy whose forwarded headers are believed."""
    return peer is not None and bool(trusted_proxies) and _in(peer, trusted_proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[IPNetwork]
) -> str | None:
    """The address of the device that sent the request. `X-Forwarded-For` is believed only
    when the connection comes from a trusted proxy, and then only up to the first hop that
    is not one (walking from the right: everything left of it could be forged by the
    client)."""
    if peer is None or not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted_proxies):
            return hop if _valid_ip(hop) else peer
    return hops[0] if hops and _valid_ip(hops[0]) else peer


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def new_event_id() -> str:
    return str(uuid.uuid4())


def _timed_event(
    event_id: str,
    kind: str,
    timestamp: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
    user_id: str | None,
    anonymous_id: str | None,
    properties: dict[str, Any],
    context: dict[str, Any],
) -> CanonicalEvent:
    """The event with its clock-skew-corrected time; both wire formats build it here."""
    return CanonicalEvent(
        event_id=event_id,
        type=kind,
        name=None,
        timestamp=correct_skew(timestamp, sent_at, received_at),
        original_timestamp=timestamp,
        sent_at=sent_at,
        received_at=received_at,
        anonymous_id=anonymous_id,
        user_id=user_id,
        properties=properties,
        context=context,
    )


def normalize_segment(
    raw: Any,
    received_at: datetime,
    *,
    default_type: str | None = None,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> CanonicalEvent:
    """One Segment message -> CanonicalEvent, or EventError naming the first problem.
    `client_ip`: the sender's address, stored as `context.ip` when the message has none
    (browsers cannot know their own address; Segment fills it the same way)."""
    common = _common_segment(raw, received_at, default_type, batch_sent_at, batch_context,
                             client_ip)  # fmt: skip
    if common is not None:
        return common
    return _segment_by_the_rules(
        raw, received_at, default_type, batch_sent_at, batch_context, client_ip
    )


_COMMON_KINDS = frozenset({"track", "page", "screen"})


def _plain_id(value: Any) -> bool:
    return value.__class__ is str and len(value) <= MAX_ID_LENGTH and not is_junk_id(value)


def _plain_name(value: Any) -> bool:
    return value is None or (value.__class__ is str and len(value) <= MAX_NAME_LENGTH)


def utc_time(text: Any) -> datetime | None:
    """ "2026-03-01T10:00:00.123Z" (or "+00:00") as naive UTC, or None for anything else.
    Parsing it without its zone is 0.24 µs; with it, then dropping it, 1.4 µs."""
    if text.__class__ is not str or text[10:11] != "T":
        return None
    if text[-1:] == "Z":
        text = text[:-1]
    elif text[-6:] == "+00:00":
        text = text[:-6]
    else:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    if ts.tzinfo is not None or not 1970 <= ts.year <= 2200:
        return None
    return ts


def _common_segment(
    raw: Any,
    received_at: datetime,
    default_type: str | None,
    batch_sent_at: datetime | None,
    batch_context: dict[str, Any] | None,
    client_ip: str | None,
) -> CanonicalEvent | None:
    """The shape nearly every message has (a track, page or screen call with plain string
    ids, a UTC timestamp, no traits and no times of its own besides it) checked and built
    in one pass: under half the time of the rules below, which ingestion spends on every
    event.
    None for anything else, which the rules then decide. Both give the same event for every
    message this one accepts (a property test compares them)."""
    if raw.__class__ is not dict or not SEGMENT_KEYS.issuperset(raw):
        return None
    get = raw.get
    kind = get("type", default_type)
    if kind.__class__ is not str or kind not in _COMMON_KINDS:
        return None
    if (default_type is not None and kind != default_type) or (
        "traits" in raw or "sentAt" in raw or "originalTimestamp" in raw
    ):
        return None
    user_id, anonymous_id, message_id = get("userId"), get("anonymousId"), get("messageId")
    if user_id is not None and not _plain_id(user_id):
        return None
    if anonymous_id is not None and not _plain_id(anonymous_id):
        return None
    if (user_id is None and anonymous_id is None) or not (
        message_id.__class__ is str and 0 < len(message_id) <= MAX_ID_LENGTH
    ):
        return None
    ts = utc_time(get("timestamp"))
    if ts is None:
        return None
    properties, context = get("properties"), get("context")
    if properties is None:
        properties = {}
    elif properties.__class__ is not dict:
        return None
    if context is None:
        context = {}
    elif context.__class__ is not dict:
        return None
    integrations = get("integrations")
    if integrations is not None and integrations.__class__ is not dict:
        return None
    if kind == "track":
        name = get("event")
        if name.__class__ is not str or not name or len(name) > MAX_NAME_LENGTH:
            return None
    else:
        name, category = get("name"), get("category")
        if not (_plain_name(name) and _plain_name(category)):
            return None
        name = name or category
    if batch_context:
        context = {**batch_context, **context}
    if client_ip and "ip" not in context:
        context = {**context, "ip": client_ip}
    return CanonicalEvent(
        message_id, kind, name, correct_skew(ts, batch_sent_at, received_at), ts,
        batch_sent_at, received_at, anonymous_id, user_id, properties, context,
        account_hint=context_group(context),
    )  # fmt: skip


def context_group(context: dict[str, Any]) -> str | None:
    """The account an event says it is about in `context.groupId` (Segment's convention)."""
    hint = context.get("groupId")
    if isinstance(hint, str | int) and not isinstance(hint, bool) and str(hint):
        return str(hint)
    return None


def _segment_by_the_rules(
    raw: Any,
    received_at: datetime,
    default_type: str | None,
    batch_sent_at: datetime | None,
    batch_context: dict[str, Any] | None,
    client_ip: str | None,
) -> CanonicalEvent:
    if not isinstance(raw, dict):
        raise EventError(f"each message must be a JSON object, got {type(raw).__name__}")
    if not SEGMENT_KEYS.issuperset(raw):  # (no set built in the common case)
        raise EventError(f"unknown field {sorted(raw.keys() - SEGMENT_KEYS)[0]!r}")
    kind = raw.get("type", default_type)
    if not isinstance(kind, str) or kind not in SEGMENT_TYPES:  # (a list is not hashable)
        raise EventError(
            f"type must be one of {', '.join(sorted(SEGMENT_TYPES))}, got {str(kind)[:40]!r}"
        )
    if default_type is not None and "type" in raw and kind != default_type:
        raise EventError(f"type {kind!r} sent to the /v1/{default_type} endpoint")
    user_id, anonymous_id = _clean_ids(_opt_id(raw, "userId"), _opt_id(raw, "anonymousId"))
    message_id = _opt_id(raw, "messageId") or new_event_id()
    properties = _opt_obj(raw, "properties") or {}
    traits = _opt_obj(raw, "traits")
    context = _opt_obj(raw, "context") or {}
    if batch_context:
        context = {**batch_context, **context}
    if client_ip and "ip" not in context:
        context = {**context, "ip": client_ip}
    timestamp = parse_time(raw.get("timestamp"), "timestamp")
    sent_at = parse_time(raw.get("sentAt"), "sentAt") or batch_sent_at
    original = parse_time(raw.get("originalTimestamp"), "originalTimestamp")
    if timestamp is None and original is not None:
        timestamp = original
    _opt_obj(raw, "integrations")

    name: str | None = None
    event = _timed_event(
        message_id,
        kind,
        timestamp,
        sent_at,
        received_at,
        user_id,
        anonymous_id,
        properties,
        context,
    )
    if kind == "track":
        name = _opt_str(raw, "event")
        if not name:
            raise EventError("event is required for track calls (the name of the action)")
    elif kind in ("page", "screen"):
        name = _opt_str(raw, "name") or _opt_str(raw, "category")
    elif kind == "identify":
        if traits is None:
            traits = _opt_obj(context, "traits")
        event.traits_set = traits or {}
    elif kind == "group":
        group_id = _opt_id(raw, "groupId")
        if not group_id or is_junk_id(group_id):
            raise EventError("groupId is required for group calls")
        event.group_key = group_id
        event.group_traits = traits or {}
        event.account_hint = group_id
    elif kind == "alias":
        previous = _opt_id(raw, "previousId")
        if not previous or is_junk_id(previous):
            raise EventError("previousId is required for alias calls")
        if not user_id:
            raise EventError("userId is required for alias calls")
        event.previous_id = previous
    event.name = name
    if traits is not None and kind != "identify" and kind != "group":
        event.traits = traits
    if event.account_hint is None:
        event.account_hint = context_group(context)
    return event


_POSTHOG_TYPES = {"$pageview": "page", "$screen": "screen", "$identify": "identify"}


def _posthog_context(properties: dict[str, Any], client_ip: str | None) -> dict[str, Any]:
    """PostHog keeps device facts among the properties; Segment keeps them in `context`.
    Map them, so one query reads both SDKs' events the same way."""
    context: dict[str, Any] = {}
    ip = properties.get("$ip") or client_ip
    if ip:
        context["ip"] = ip
    user_agent = properties.get("$user_agent") or properties.get("$raw_user_agent")
    if user_agent:
        context["userAgent"] = user_agent
    if "$lib" in properties:
        context["library"] = {"name": properties["$lib"], "version": properties.get("$lib_version")}
    for src, dst in (("utm_source", "source"), ("utm_medium", "medium"), ("utm_campaign", "name")):
        if src in properties:
            context.setdefault("campaign", {})[dst] = properties[src]
    if "$current_url" in properties:
        referrer = properties.get("$referrer")
        context["page"] = {
            "url": properties["$current_url"],
            "path": properties.get("$pathname"),
            "title": properties.get("title"),
            # posthog-js writes "$direct" when there is no referrer.
            "referrer": None if referrer == "$direct" else referrer,
        }
    return context


def normalize_posthog(
    raw: Any,
    received_at: datetime,
    *,
    batch_sent_at: datetime | None = None,
    client_ip: str | None = None,
) -> CanonicalEvent:
    """One PostHog capture event -> CanonicalEvent (the same row a Segment call makes)."""
    if not isinstance(raw, dict):
        raise EventError(f"each event must be a JSON object, got {type(raw).__name__}")
    if not POSTHOG_KEYS.issuperset(raw):
        raise EventError(f"unknown field {sorted(raw.keys() - POSTHOG_KEYS)[0]!r}")
    name = _opt_str(raw, "event")
    if not name:
        raise EventError("event is required (e.g. '$pageview' or your action's name)")
    properties = dict(_opt_obj(raw, "properties") or {})
    distinct = _opt_id(raw, "distinct_id")
    if distinct is None:
        distinct = _opt_id(properties, "distinct_id")
    if distinct is None:
        raise EventError("distinct_id is required")
    properties.pop("distinct_id", None)
    timestamp = parse_time(raw.get("timestamp"), "timestamp")
    sent_at = parse_time(raw.get("sent_at"), "sent_at") or batch_sent_at
    offset = raw.get("offset")
    if timestamp is None and offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, int | float) or offset < 0:
            raise EventError("offset must be a non-negative number of milliseconds")
        timestamp = received_at - timedelta(milliseconds=offset)
        sent_at = None
    event_id = _opt_id(raw, "uuid") or new_event_id()

    kind = _POSTHOG_TYPES.get(name, "track")
    identified = kind == "identify" or properties.get("$is_identified") is not False
    user_id, anonymous_id = (distinct, None) if identified else (None, distinct)
    user_id, anonymous_id = _clean_ids(user_id, anonymous_id)
    traits_set = _opt_obj(raw, "$set") or _opt_obj(properties, "$set")
    traits_once = _opt_obj(raw, "$set_once") or _opt_obj(properties, "$set_once")
    properties.pop("$set", None)
    properties.pop("$set_once", None)
    context = _posthog_context(properties, client_ip)
    event = _timed_event(
        event_id, kind, timestamp, sent_at, received_at, user_id, anonymous_id, properties, context
    )
    event.name = None if kind == "identify" else name
    event.traits_set, event.traits_set_once = traits_set, traits_once
    if kind == "page":
        event.name = _opt_str(properties, "title") or _opt_str(properties, "$pathname")
    if name == "$identify":
        anon = _opt_id(properties, "$anon_distinct_id")
        if anon and not is_junk_id(anon) and anon != distinct:
            event.anonymous_id = anon
        event.traits_set = traits_set or {}
    elif name == "$create_alias":
        alias = _opt_id(properties, "alias")
        if not alias or is_junk_id(alias):
            raise EventError("$create_alias needs properties.alias")
        event.type = "alias"
        event.name = None
        event.previous_id = alias
    elif name == "$groupidentify":
        key = _opt_id(properties, "$group_key")
        if not key or is_junk_id(key):
            raise EventError("$groupidentify needs properties.$group_key")
        event.type = "group"
        event.name = None
        event.group_key = key
        event.group_traits = _opt_obj(properties, "$group_set") or {}
        event.account_hint = key
    groups = _opt_obj(properties, "$groups")
    if groups and event.account_hint is None:
        first = next(iter(groups.values()))
        if isinstance(first, str | int) and not isinstance(first, bool):
            event.account_hint = str(first)
    return event
