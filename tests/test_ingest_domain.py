"""The pure ingest rules: what each Segment/PostHog message becomes, and what is refused."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traction.ingest.common import common_rows
from traction.ingest.domain import (
    CanonicalEvent,
    EventError,
    _common_segment,
    _segment_by_the_rules,
    client_address,
    correct_skew,
    is_junk_id,
    normalize_posthog,
    normalize_segment,
    parse_networks,
    parse_time,
)
from traction.ingest.prepare import ROW_SCHEMA, Prepared, SegmentBatch, prepare, prepare_batch

NOW = datetime(2026, 3, 1, 12, 0, 0)


def seg(**kw: object):  # type: ignore[no-untyped-def]
    return normalize_segment(kw, NOW)


def test_track_keeps_fields() -> None:
    ev = seg(
        type="track", userId="u1", event="Signed Up", properties={"plan": "pro"}, messageId="m1"
    )
    assert (ev.type, ev.name, ev.user_id, ev.event_id, ev.properties) == (
        "track",
        "Signed Up",
        "u1",
        "m1",
        {"plan": "pro"},
    )
    assert ev.distinct_id == "u1"
    assert ev.timestamp == NOW  # no timestamp: received time


def test_numeric_user_id_becomes_string() -> None:
    assert seg(type="track", userId=42, event="x").user_id == "42"


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # The device clock is 1 hour behind: it says sent at 10:00 for an event at 09:59:30.
    ev = seg(
        type="track",
        anonymousId="a",
        event="x",
        timestamp="2026-03-01T10:59:30Z",
        sentAt="2026-03-01T11:00:00Z",
    )
    # Received at 12:00 (server time): the event happened 30 s before the send.
    assert ev.timestamp == NOW - timedelta(seconds=30)
    assert ev.original_timestamp == datetime(2026, 3, 1, 10, 59, 30)


def test_batch_sent_at_applies_to_each_message() -> None:
    ev = normalize_segment(
        {
            "type": "track",
            "anonymousId": "a",
            "event": "x",
            "timestamp": "2026-03-01T08:00:00+00:00",
        },
        NOW,
        batch_sent_at=datetime(2026, 3, 1, 8, 0, 10),
    )
    assert ev.timestamp == NOW - timedelta(seconds=10)


def test_correct_skew_rules() -> None:
    assert correct_skew(None, None, NOW) == NOW
    t = datetime(2020, 1, 1)
    assert correct_skew(t, None, NOW) == t
    assert correct_skew(t, t + timedelta(minutes=5), NOW) == NOW - timedelta(minutes=5)


def test_time_zone_offsets_become_utc() -> None:
    assert parse_time("2026-03-01T14:00:00+02:00", "t") == datetime(2026, 3, 1, 12)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"type": "track", "event": "x"}, "userId or anonymousId is required"),
        ({"type": "track", "userId": "u"}, "event is required"),
        ({"type": "launch", "userId": "u"}, "type must be one of"),
        (
            {"type": "track", "userId": "u", "event": "x", "properties": [1]},
            "properties must be an object",
        ),
        ({"type": "track", "userId": {"a": 1}, "event": "x"}, "userId must be a string"),
        ({"type": "track", "userId": True, "event": "x"}, "userId must be a string"),
        ({"type": "track", "userId": "u", "event": 5}, "event must be a string"),
        (
            {"type": "track", "userId": "u", "event": "x", "timestamp": 1700000000},
            "timestamp must be an ISO-8601 string",
        ),
        (
            {"type": "track", "userId": "u", "event": "x", "timestamp": "yesterday"},
            "not an ISO-8601",
        ),
        ({"type": "track", "userId": "u", "event": "x", "colour": "red"}, "unknown field 'colour'"),
        ({"type": "group", "userId": "u"}, "groupId is required"),
        ({"type": "alias", "userId": "u"}, "previousId is required"),
        ({"type": "alias", "previousId": "p", "anonymousId": "a"}, "userId is required"),
        ({"type": "track", "userId": "undefined", "event": "x"}, "not a real id"),
        ({"type": "track", "userId": "u", "event": "x" * 201}, "longer than 200"),
        ("just a string", "must be a JSON object"),
        ({"type": ["track"], "userId": "u", "event": "x"}, "type must be one of"),
        ({"type": {}, "userId": "u", "event": "x"}, "type must be one of"),
    ],
)
def test_bad_messages_are_named(message: object, problem: str) -> None:
    with pytest.raises(EventError, match=problem):
        normalize_segment(message, NOW)


def test_endpoint_type_must_match() -> None:
    with pytest.raises(EventError, match="sent to the /v1/track endpoint"):
        normalize_segment({"type": "identify", "userId": "u"}, NOW, default_type="track")
    ev = normalize_segment({"userId": "u", "traits": {"a": 1}}, NOW, default_type="identify")
    assert ev.type == "identify" and ev.traits_set == {"a": 1}


def test_junk_user_id_falls_back_to_anonymous_id() -> None:
    ev = seg(type="track", userId="null", anonymousId="anon-1", event="x")
    assert ev.user_id is None and ev.distinct_id == "anon-1"


@pytest.mark.parametrize(
    "value", ["undefined", "NULL", " 0 ", "anonymous", "[object Object]", "guest", ""]
)
def test_junk_ids(value: str) -> None:
    assert is_junk_id(value)


def test_real_ids_are_not_junk() -> None:
    assert not is_junk_id("user_0") and not is_junk_id("10")


def test_group_and_alias_identity_inputs() -> None:
    g = seg(type="group", userId="u", groupId="acme", traits={"plan": "pro"})
    assert (g.group_key, g.group_traits, g.account_hint) == ("acme", {"plan": "pro"}, "acme")
    a = seg(type="alias", userId="new", previousId="old")
    assert a.previous_id == "old"


def test_batch_context_merges_under_message_context() -> None:
    ev = normalize_segment(
        {"type": "track", "userId": "u", "event": "x", "context": {"ip": "1.1.1.1"}},
        NOW,
        batch_context={"ip": "9.9.9.9", "library": {"name": "l"}},
    )
    assert ev.context == {"ip": "1.1.1.1", "library": {"name": "l"}}


def test_posthog_event_maps_to_canonical_row() -> None:
    ev = normalize_posthog(
        {
            "event": "report_created",
            "distinct_id": "u1",
            "uuid": "0190-1",
            "properties": {
                "$groups": {"company": "acme"},
                "utm_source": "google",
                "$set": {"email": "a@b.c"},
            },
            "timestamp": "2026-03-01T11:00:00Z",
        },
        NOW,
    )
    assert (ev.type, ev.name, ev.user_id, ev.event_id, ev.account_hint) == (
        "track",
        "report_created",
        "u1",
        "0190-1",
        "acme",
    )
    assert ev.traits_set == {"email": "a@b.c"} and "$set" not in ev.properties
    assert ev.context["campaign"] == {"source": "google"}


def test_posthog_identify_links_anonymous_id() -> None:
    ev = normalize_posthog(
        {
            "event": "$identify",
            "distinct_id": "u1",
            "properties": {"$anon_distinct_id": "anon-9"},
            "$set": {"name": "Ann"},
        },
        NOW,
    )
    assert (ev.type, ev.user_id, ev.anonymous_id, ev.traits_set) == (
        "identify",
        "u1",
        "anon-9",
        {"name": "Ann"},
    )


def test_posthog_alias_group_and_pageview() -> None:
    a = normalize_posthog(
        {"event": "$create_alias", "distinct_id": "u1", "properties": {"alias": "old-id"}}, NOW
    )
    assert (a.type, a.previous_id, a.user_id) == ("alias", "old-id", "u1")
    g = normalize_posthog(
        {
            "event": "$groupidentify",
            "distinct_id": "u1",
            "properties": {
                "$group_type": "company",
                "$group_key": "acme",
                "$group_set": {"seats": 5},
            },
        },
        NOW,
    )
    assert (g.type, g.group_key, g.group_traits) == ("group", "acme", {"seats": 5})
    p = normalize_posthog(
        {
            "event": "$pageview",
            "distinct_id": "x",
            "properties": {"$is_identified": False, "$pathname": "/pricing"},
        },
        NOW,
    )
    assert (p.type, p.name, p.anonymous_id, p.user_id) == ("page", "/pricing", "x", None)


def test_posthog_offset_sets_timestamp() -> None:
    ev = normalize_posthog({"event": "x", "distinct_id": "u", "offset": 1500}, NOW)
    assert ev.timestamp == NOW - timedelta(milliseconds=1500)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"distinct_id": "u"}, "event is required"),
        ({"event": "x"}, "distinct_id is required"),
        ({"event": "x", "distinct_id": "u", "extra": 1}, "unknown field"),
        ({"event": "$create_alias", "distinct_id": "u", "properties": {}}, "alias"),
        ({"event": "x", "distinct_id": "u", "offset": -5}, "offset"),
    ],
)
def test_posthog_bad_events(message: dict[str, object], problem: str) -> None:
    with pytest.raises(EventError, match=problem):
        normalize_posthog(message, NOW)


# -- what browser SDKs leave out: device facts and the sender's address ---------------------


def test_posthog_js_device_properties_map_to_segment_context() -> None:
    ev = normalize_posthog(
        {
            "event": "$pageview",
            "distinct_id": "anon-1",
            "properties": {
                "$is_identified": False,
                "$raw_user_agent": "Mozilla/5.0 (X11)",
                "$lib": "web",
                "$lib_version": "1.449.2",
                "$current_url": "https://acme.io/pricing?x=1",
                "$pathname": "/pricing",
                "title": "Pricing",
                "$referrer": "$direct",
            },
        },
        NOW,
        client_ip="203.0.113.7",
    )
    assert ev.context == {
        "ip": "203.0.113.7",
        "userAgent": "Mozilla/5.0 (X11)",
        "library": {"name": "web", "version": "1.449.2"},
        "page": {
            "url": "https://acme.io/pricing?x=1",
            "path": "/pricing",
            "title": "Pricing",
            "referrer": None,  # "$direct" is posthog-js's word for none
        },
    }


def test_posthog_own_ip_and_user_agent_win() -> None:
    ev = normalize_posthog(
        {
            "event": "x",
            "distinct_id": "u",
            "properties": {
                "$ip": "198.51.100.1",
                "$user_agent": "UA-1",
                "$raw_user_agent": "UA-2",
                "$current_url": "https://a.io/",
                "$referrer": "https://news.example/",
            },
        },
        NOW,
        client_ip="203.0.113.7",
    )
    assert ev.context["ip"] == "198.51.100.1" and ev.context["userAgent"] == "UA-1"
    assert ev.context["page"]["referrer"] == "https://news.example/"


def test_segment_takes_the_connection_address_only_when_it_has_none() -> None:
    bare = normalize_segment(
        {"type": "track", "userId": "u", "event": "e"}, NOW, client_ip="1.2.3.4"
    )
    assert bare.context == {"ip": "1.2.3.4"}
    own = normalize_segment(
        {"type": "track", "userId": "u", "event": "e", "context": {"ip": "5.6.7.8"}},
        NOW,
        client_ip="1.2.3.4",
    )
    assert own.context == {"ip": "5.6.7.8"}
    batch_ctx = {"library": {"name": "l"}}
    normalize_segment(
        {"type": "track", "userId": "u", "event": "e"},
        NOW,
        batch_context=batch_ctx,
        client_ip="1.2.3.4",
    )
    assert batch_ctx == {"library": {"name": "l"}}  # the shared batch context is not written to


PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1")


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.7", None, PROXIES, "203.0.113.7"),  # direct
        ("203.0.113.7", "1.1.1.1", PROXIES, "203.0.113.7"),  # untrusted peer: header ignored
        ("203.0.113.7", "1.1.1.1", [], "203.0.113.7"),  # no proxies configured
        ("127.0.0.1", "1.1.1.1", [], "127.0.0.1"),
        ("10.0.0.5", "198.51.100.9", PROXIES, "198.51.100.9"),
        # the client forged a first hop; the right-most untrusted hop is the real one
        ("10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.4", PROXIES, "198.51.100.9"),
        ("10.0.0.5", "10.0.0.3, 10.0.0.4", PROXIES, "10.0.0.3"),  # all proxies: the first
        ("10.0.0.5", "not-an-ip", PROXIES, "10.0.0.5"),
        ("10.0.0.5", "", PROXIES, "10.0.0.5"),
        ("10.0.0.5", "2001:db8::1", PROXIES, "2001:db8::1"),
        (None, "1.1.1.1", PROXIES, None),
    ],
)
def test_client_address(
    peer: str | None,
    forwarded: str | None,
    trusted: list,
    expected: str | None,  # type: ignore[type-arg]
) -> None:
    assert client_address(peer, forwarded, trusted) == expected


def test_parse_networks_names_the_bad_entry() -> None:
    assert [str(n) for n in parse_networks(" 10.0.0.0/8 ,::1,")] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        parse_networks("10.0.0.1, 10.0.0.300")


# -- the common shape's one-pass path gives what the full rules give ---------------------

_anything = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5), st.lists(st.none(), max_size=1),
    st.dictionaries(st.sampled_from(["groupId", "ip", "k"]), st.none() | st.text(max_size=3), max_size=2),
)  # fmt: skip
_ids = st.one_of(
    st.sampled_from(["u-1", "anon-7f3c", " null ", "undefined", "", "x" * 200, "x" * 201]),
    _anything,
)
_TIME_FORMS = (
        "2026-03-01T10:00:00Z", "2026-03-01T10:00:00.123456+00:00", "2026-03-01T12:00:00+02:00",
        "2026-03-01T10:00:00", "1969-12-31T23:59:59Z", "2201-01-01T00:00:00Z", "2026-03-01",
        "not a time", "2026-02-30T00:00:00Z", "2026-03-01Z", "2026-03-01T10:00:00+02:00Z",
        "2026-03-01T10:00:00+00:00", "2026-03-01T10:00:00-00:00", "20260301T100000Z",
        "2026-03-01 10:00:00Z", "2026-03-01T25:00:00Z", "2026-03-01T10:00:00.123456789Z",
        "2026-03-01T10Z", "2026-03-01T10:00:00+00:00Z", "Z", "1970-01-01T00:00:00Z",
        "2200-12-31T23:59:59.999999+00:00", "2026-03-01T10:00:00+01:00", "2026-03-01T10:00:00+00:30",
)  # fmt: skip
_times = st.one_of(st.sampled_from(_TIME_FORMS), _anything)
_fields = {
    "type": st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "TRACK"])
    | _anything,
    "messageId": _ids, "timestamp": _times, "userId": _ids, "anonymousId": _ids,
    "event": st.sampled_from(["signed_up", "", "e" * 201]) | _anything,
    "name": st.sampled_from(["home", "", "n" * 201]) | _anything,
    "category": st.sampled_from(["docs", ""]) | _anything,
    "properties": st.sampled_from([{}, {"plan": "pro"}]) | _anything,
    "context": st.sampled_from([{}, {"groupId": "acme"}, {"groupId": 7}, {"groupId": True},
                                {"groupId": ""}, {"ip": "203.0.113.9"}]) | _anything,
    "integrations": st.sampled_from([{}, {"All": True}]) | _anything,
    "traits": st.sampled_from([{"plan": "pro"}]) | _anything,
    "sentAt": _times, "originalTimestamp": _times, "groupId": _ids, "previousId": _ids,
    "writeKey": _anything, "colour": _anything,
}  # fmt: skip
_common_keys = ["type", "messageId", "timestamp", "userId", "anonymousId", "event", "name",
                "properties", "context"]  # fmt: skip


@st.composite
def _messages(draw: st.DrawFn) -> object:
    """Mostly the common shape, each field now and then replaced or removed, other fields
    now and then added: both paths see the edges of what the fast one accepts."""
    if draw(st.integers(0, 30)) == 0:
        return draw(_anything)
    msg: dict[str, object] = {"type": "track", "messageId": "m-1",
                              "timestamp": "2026-03-01T10:00:00Z", "userId": "u-1",
                              "anonymousId": "anon-7f3c", "event": "signed_up",
                              "properties": {"plan": "pro"}, "context": {"ip": "203.0.113.9"}}  # fmt: skip
    for key in draw(st.lists(st.sampled_from(_common_keys), max_size=3)):
        msg.pop(key, None)
    for key in draw(st.lists(st.sampled_from(sorted(_fields)), max_size=3)):
        msg[key] = draw(_fields[key])
    if draw(st.booleans()):  # the timestamp's forms, often (the fast path parses its own)
        msg["timestamp"] = draw(_times)
    return msg


@settings(max_examples=3000, deadline=None)
@given(
    raw=_messages(),
    default_type=st.sampled_from([None, "track", "page", "identify"]),
    batch_sent_at=st.sampled_from([None, NOW - timedelta(seconds=30)]),
    batch_context=st.sampled_from([None, {}, {"ip": "198.51.100.1", "locale": "fr"}]),
    client_ip=st.sampled_from([None, "192.0.2.4"]),
)
def test_the_common_shape_path_gives_what_the_rules_give(
    raw: object,
    default_type: str | None,
    batch_sent_at: datetime | None,
    batch_context: dict[str, object] | None,
    client_ip: str | None,
) -> None:
    _assert_both_paths_agree(raw, default_type, batch_sent_at, batch_context, client_ip)


def _assert_both_paths_agree(
    raw: object,
    default_type: str | None = None,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, object] | None = None,
    client_ip: str | None = None,
) -> None:
    """What the fast path accepts, the rules give the same; the rules raise nothing else."""
    args = (raw, NOW, default_type, batch_sent_at, batch_context, client_ip)
    fast = _common_segment(*args)
    try:
        ruled: CanonicalEvent | EventError = _segment_by_the_rules(*args)
    except EventError as e:
        ruled = e
    assert fast is None or fast == ruled


def test_the_common_shape_path_takes_the_common_messages() -> None:
    """The fast path is not a no-op: the usual calls go through it."""
    track = {"type": "track", "messageId": "m", "timestamp": "2026-03-01T10:00:00Z",
             "userId": "u-1", "event": "signed_up", "properties": {"plan": "pro"},
             "context": {"groupId": "acme"}}  # fmt: skip
    page = {"type": "page", "messageId": "p", "timestamp": "2026-03-01T10:00:00.5+00:00",
            "anonymousId": "a-1", "name": "", "category": "docs"}  # fmt: skip
    for msg in (track, page):
        fast = _common_segment(msg, NOW, None, None, {"locale": "fr"}, "192.0.2.4")
        assert fast is not None
        assert fast == _segment_by_the_rules(msg, NOW, None, None, {"locale": "fr"}, "192.0.2.4")
    assert _common_segment(track, NOW, None, None, None, None).account_hint == "acme"  # type: ignore[union-attr]


@pytest.mark.parametrize("text", _TIME_FORMS)
def test_the_common_shape_path_reads_every_time_form_as_the_rules_do(text: str) -> None:
    msg = {"type": "track", "messageId": "m", "timestamp": text, "userId": "u-1", "event": "e"}
    _assert_both_paths_agree(msg)


# -- a batch's common messages by columns give the rows the rules give -------------------


def _counted() -> Iterator[uuid.UUID]:
    return (uuid.UUID(int=i) for i in itertools.count())


def _by_the_rules(batch: SegmentBatch, ip: str | None, body_bytes: int | None) -> Prepared:
    return prepare(batch.messages, batch.normalizer(ip), NOW, 200, body_bytes, None, False)


@settings(max_examples=1500, deadline=None)
@given(
    messages=st.lists(_messages(), max_size=6),
    sent_at=st.sampled_from([None, NOW - timedelta(seconds=30)]),
    context=st.sampled_from([None, {}, {"ip": "198.51.100.1", "groupId": "acme"}]),
    ip=st.sampled_from([None, "192.0.2.4"]),
    body_bytes=st.sampled_from([None, 100, 10_000]),  # (the per-event limit here is 200 bytes)
)
def test_a_batch_by_columns_gives_the_rows_the_rules_give(
    messages: list[object],
    sent_at: datetime | None,
    context: dict[str, object] | None,
    ip: str | None,
    body_bytes: int | None,
) -> None:
    batch = SegmentBatch(messages, sent_at, context, None)
    # (a message without an id gets a random one: the same sequence for both here)
    with patch("traction.ingest.domain.uuid.uuid4", side_effect=_counted()):
        fast = prepare_batch(batch, ip, NOW, 200, body_bytes, None, False)
    with patch("traction.ingest.domain.uuid.uuid4", side_effect=_counted()):
        ruled = _by_the_rules(batch, ip, body_bytes)
    assert fast.rows.schema == ruled.rows.schema
    assert fast.rows.to_pylist() == ruled.rows.to_pylist()
    assert (fast.extras, fast.rejected, fast.no_consent) == (
        ruled.extras, ruled.rejected, ruled.no_consent,
    )  # fmt: skip


def test_a_batch_by_columns_takes_the_common_messages_and_keeps_their_order() -> None:
    """Not a no-op: common rows come from columns (a mixed batch too), in the batch's order."""
    track = {"type": "track", "messageId": "t", "timestamp": "2026-03-01T10:00:00Z",
             "userId": "u-1", "event": "signed_up", "context": {"groupId": "acme"}}  # fmt: skip
    identify = {"type": "identify", "messageId": "i", "userId": "u-1", "traits": {"a": 1}}
    page = {"type": "page", "messageId": "p", "timestamp": "2026-03-01T10:00:00.5+00:00",
            "anonymousId": "a-1", "name": "", "category": "docs"}  # fmt: skip
    batch = SegmentBatch([identify, track, {"type": "nope"}, dict(track, messageId="t2"), page],
                         None, None, None)  # fmt: skip
    common = common_rows(batch.messages, ROW_SCHEMA, NOW, None, None, None)
    assert common.positions == [1, 3, 4]
    fast = prepare_batch(batch, None, NOW, 32_000, None, None, False)
    assert fast.rows.column("event_id").to_pylist() == ["i", "t", "t2", "p"]
    assert fast.rows.column("name").to_pylist()[1:] == ["signed_up", "signed_up", "docs"]
    assert [r["index"] for r in fast.rejected] == [2]
    assert fast.extras[1][-1] == fast.extras[2][-1] == "acme"
    assert fast.rows.to_pylist() == _by_the_rules(batch, None, None).rows.to_pylist()
