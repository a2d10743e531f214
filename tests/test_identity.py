"""Identity resolution through the real pipeline, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from traction.context import Context
from traction.ingest.domain import normalize_segment


def send(ctx: Context, ws: str, *messages: dict[str, Any]) -> None:
    result = ctx.ingest.ingest_sync(ws, list(messages), normalize_segment)
    assert not result.rejected, result.rejected


def persons_of(ctx: Context, ws: str) -> dict[str, str]:
    """event_id -> the person it counts for now, straight from the event log."""
    return {e["event_id"]: e["person_id"] for e in ctx.events.recent(ws, limit=10_000)}


def test_anonymous_history_joins_the_identified_person(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(
        ctx,
        ws,
        {"type": "page", "anonymousId": "anon-1", "name": "home", "messageId": "p1"},
        {"type": "page", "anonymousId": "anon-1", "name": "pricing", "messageId": "p2"},
    )
    send(
        ctx,
        ws,
        {
            "type": "identify",
            "anonymousId": "anon-1",
            "userId": "alice",
            "traits": {"email": "a@x.io"},
            "messageId": "i1",
        },
    )
    send(ctx, ws, {"type": "track", "userId": "alice", "event": "signed_up", "messageId": "t1"})
    owners = persons_of(ctx, ws)
    assert len(set(owners.values())) == 1, owners
    person = ctx.persons.by_distinct_id(ws, "alice")
    assert person is not None and person.is_identified
    assert sorted(person.distinct_ids) == ["alice", "anon-1"]
    assert person.traits == {"email": "a@x.io"}
    assert {e["event_id"] for e in ctx.persons.events_of(ws, person.id)} == {"p1", "p2", "i1", "t1"}


def test_late_identify_merges_an_existing_anonymous_person(ctx: Context) -> None:
    """The user is known first (on another device); the anonymous person merges into them later."""
    ws = ctx.workspaces.create_workspace("A").id
    send(
        ctx, ws, {"type": "identify", "userId": "bob", "traits": {"plan": "pro"}, "messageId": "i0"}
    )
    send(
        ctx,
        ws,
        {"type": "page", "anonymousId": "phone", "messageId": "p1"},
        {"type": "track", "anonymousId": "phone", "event": "app_opened", "messageId": "t1"},
    )
    before = persons_of(ctx, ws)
    assert before["p1"] != before["i0"]
    send(
        ctx,
        ws,
        {
            "type": "identify",
            "anonymousId": "phone",
            "userId": "bob",
            "traits": {"name": "Bob"},
            "messageId": "i1",
        },
    )
    after = persons_of(ctx, ws)
    assert len(set(after.values())) == 1
    bob = ctx.persons.by_distinct_id(ws, "phone")
    assert bob is not None and bob.traits == {"plan": "pro", "name": "Bob"}
    # The merged-away id still resolves to the survivor.
    assert ctx.persons.get(ws, before["p1"]).id == bob.id  # type: ignore[union-attr]


def test_two_identified_people_are_not_merged_by_alias(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(
        ctx,
        ws,
        {"type": "identify", "userId": "carol", "messageId": "c"},
        {"type": "identify", "userId": "dave", "messageId": "d"},
    )
    send(ctx, ws, {"type": "alias", "userId": "carol", "previousId": "dave", "messageId": "a"})
    send(ctx, ws, {"type": "identify", "userId": "carol", "anonymousId": "dave", "messageId": "a2"})
    owners = persons_of(ctx, ws)
    assert owners["c"] != owners["d"]
    assert ctx.persons.by_distinct_id(ws, "dave").distinct_ids == ["dave"]  # type: ignore[union-attr]


def test_alias_merges_an_anonymous_previous_id(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, {"type": "track", "anonymousId": "cookie-7", "event": "viewed", "messageId": "v"})
    send(ctx, ws, {"type": "identify", "userId": "erin", "messageId": "e"})
    send(ctx, ws, {"type": "alias", "userId": "erin", "previousId": "cookie-7", "messageId": "al"})
    owners = persons_of(ctx, ws)
    assert owners["v"] == owners["e"] == owners["al"]


def test_shared_device_after_logout_does_not_merge(ctx: Context) -> None:
    """An anonymous id already identified as one user, then identified as another."""
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, {"type": "identify", "anonymousId": "kiosk", "userId": "frank", "messageId": "f"})
    send(ctx, ws, {"type": "identify", "anonymousId": "kiosk", "userId": "grace", "messageId": "g"})
    owners = persons_of(ctx, ws)
    assert owners["f"] != owners["g"]


def test_merges_within_one_commit_group(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(
        ctx,
        ws,
        {"type": "page", "anonymousId": "a1", "messageId": "1"},
        {"type": "identify", "userId": "hank", "messageId": "2"},
        {"type": "identify", "anonymousId": "a1", "userId": "hank", "messageId": "3"},
        {"type": "track", "userId": "hank", "event": "x", "messageId": "4"},
    )
    assert len(set(persons_of(ctx, ws).values())) == 1


def test_groups_make_accounts_and_tag_later_events(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    send(
        ctx,
        ws,
        {
            "type": "group",
            "userId": "ivy",
            "groupId": "acme",
            "traits": {"plan": "pro"},
            "messageId": "g1",
        },
    )
    send(ctx, ws, {"type": "group", "userId": "ivy", "groupId": "globex", "messageId": "g2"})
    send(
        ctx,
        ws,
        {"type": "track", "userId": "ivy", "event": "report_created", "messageId": "t1"},
        {
            "type": "track",
            "userId": "ivy",
            "event": "x",
            "context": {"groupId": "acme"},
            "messageId": "t2",
        },
    )
    ivy = ctx.persons.by_distinct_id(ws, "ivy")
    assert ivy is not None and sorted(ivy.accounts) == ["acme", "globex"]
    accounts = {e["event_id"]: e["account_id"] for e in ctx.events.recent(ws)}
    assert accounts == {"g1": "acme", "g2": "globex", "t1": "globex", "t2": "acme"}


def test_merging_two_members_of_one_account_keeps_one_membership(ctx: Context) -> None:
    """Both people joined acme before they were known to be one: the merge keeps acme once,
    joined when the first of them joined (it used to break the memberships' unique key and
    fail the whole commit group)."""
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, {"type": "group", "anonymousId": "laptop", "groupId": "acme",
                   "timestamp": "2026-11-02T10:00:00Z", "messageId": "g1"})  # fmt: skip
    send(ctx, ws, {"type": "group", "userId": "kim", "groupId": "acme",
                   "timestamp": "2026-11-05T10:00:00Z", "messageId": "g2"},
                  {"type": "group", "userId": "kim", "groupId": "globex",
                   "timestamp": "2026-11-04T10:00:00Z", "messageId": "g3"})  # fmt: skip
    send(ctx, ws, {"type": "identify", "userId": "kim", "anonymousId": "laptop", "messageId": "i1"})
    send(ctx, ws, {"type": "track", "anonymousId": "laptop", "event": "x", "messageId": "t1"})
    kim = ctx.persons.by_distinct_id(ws, "laptop")
    assert kim is not None and sorted(kim.distinct_ids) == ["kim", "laptop"]
    # in order of joining: acme (laptop's, on the 2nd) before globex (the 4th)
    assert kim.accounts == ["acme", "globex"]
    assert {e["event_id"] for e in ctx.events.recent(ws)} == {"g1", "g2", "g3", "i1", "t1"}
    # the person's latest account is globex: events that name none count for it
    assert {e["event_id"]: e["account_id"] for e in ctx.events.recent(ws)}["t1"] == "globex"


def test_set_once_traits(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("A").id
    from traction.ingest.domain import normalize_posthog

    r = ctx.ingest.ingest_sync(
        ws,
        [
            {
                "event": "x",
                "distinct_id": "jo",
                "properties": {"$set_once": {"first_source": "ads"}, "$set": {"plan": "free"}},
            },
            {
                "event": "y",
                "distinct_id": "jo",
                "properties": {"$set_once": {"first_source": "seo"}, "$set": {"plan": "pro"}},
            },
        ],
        normalize_posthog,
    )
    assert not r.rejected
    assert ctx.persons.by_distinct_id(ws, "jo").traits == {"first_source": "ads", "plan": "pro"}  # type: ignore[union-attr]


def test_workspaces_do_not_share_people(ctx: Context) -> None:
    a = ctx.workspaces.create_workspace("A").id
    b = ctx.workspaces.create_workspace("B").id
    send(ctx, a, {"type": "identify", "userId": "same", "traits": {"ws": "a"}, "messageId": "m"})
    send(ctx, b, {"type": "identify", "userId": "same", "traits": {"ws": "b"}, "messageId": "m"})
    pa, pb = ctx.persons.by_distinct_id(a, "same"), ctx.persons.by_distinct_id(b, "same")
    assert pa and pb and pa.id != pb.id and pa.traits == {"ws": "a"} and pb.traits == {"ws": "b"}
    assert ctx.persons.get(a, pb.id) is None
    assert ctx.events.count(a) == ctx.events.count(b) == 1


def test_merge_survives_a_restart(ctx: Context, settings) -> None:  # type: ignore[no-untyped-def]
    ws = ctx.workspaces.create_workspace("A").id
    send(ctx, ws, {"type": "identify", "userId": "kim", "messageId": "k"})
    send(ctx, ws, {"type": "page", "anonymousId": "c9", "messageId": "p"})
    send(ctx, ws, {"type": "identify", "anonymousId": "c9", "userId": "kim", "messageId": "k2"})
    ctx.close()
    reopened = Context.open(ctx.settings)
    try:
        owners = persons_of(reopened, ws)
        assert owners["p"] == owners["k"]
    finally:
        reopened.close()


def test_one_commit_group_of_several_requests_keeps_rows_and_people_together(
    ctx: Context,
) -> None:
    """The writer commits several requests at once: it drops repeats (the first wins) and
    erased ids, and each remaining row keeps its own event's person and its own place."""
    from traction.ingest.service import now_utc
    from traction.privacy.domain import id_hash

    ws = ctx.workspaces.create_workspace("A").id
    ctx.writer.suppressed.add(ws, [id_hash(ws, "erased")])
    now = now_utc()

    def batch(*msgs: tuple[str, str, str]) -> list[tuple[str, Any]]:
        return [
            (ws, normalize_segment({"type": "track", "event": "x", "messageId": m, kind: who}, now))
            for m, kind, who in msgs
        ]

    with ctx.writer.paused():  # queued meanwhile: committed together afterwards
        futures = [
            ctx.writer.submit(batch(("e0", "userId", "zed"))),
            ctx.writer.submit(
                batch(
                    ("e1", "userId", "alice"),
                    ("e2", "anonymousId", "bob"),
                    ("e3", "userId", "erased"),
                )
            ),
            ctx.writer.submit(batch(("e1", "userId", "mallory"), ("e4", "userId", "carol"))),
            ctx.writer.submit(batch(("e5", "userId", "alice"), ("e2", "anonymousId", "bob"))),
        ]
    for f in futures:
        f.result(timeout=30)
    stored = {e["event_id"]: e for e in ctx.events.recent(ws, limit=100)}
    assert sorted(stored) == ["e0", "e1", "e2", "e4", "e5"]
    expected = {"e0": "zed", "e1": "alice", "e2": "bob", "e4": "carol", "e5": "alice"}
    for event_id, who in expected.items():
        person = ctx.persons.by_distinct_id(ws, who)
        assert person is not None
        assert stored[event_id]["distinct_id"] == who
        assert stored[event_id]["person_id"] == person.id, event_id
    assert ctx.persons.by_distinct_id(ws, "mallory") is None
    assert len({stored[e]["seq"] for e in stored}) == 5


def test_new_people_are_stored_as_the_orm_stores_them(ctx: Context) -> None:
    """New persons and identities go in as one JSON parameter each: every column reads back
    as the ORM would have written it (SQLite's text timestamps included), whole seconds and
    microseconds, identified or not, with traits or none."""
    from datetime import datetime

    from sqlalchemy import select, text

    from traction.identity.models import Identity, Person
    from traction.store.state import utcnow

    ws = ctx.workspaces.create_workspace("A").id
    before = utcnow()
    send(ctx, ws,
         {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "m1",
          "traits": {"plan": "pro", "seats": 3, "tags": ["x"], "ok": True, "none": None},
          "timestamp": "2026-01-01T10:00:00Z"},
         {"type": "track", "anonymousId": "a2", "event": "e", "messageId": "m2",
          "timestamp": "2026-01-01T10:00:00.000250Z"})  # fmt: skip
    with ctx.state.session() as s:
        people = {p.id: p for p in s.scalars(select(Person).where(Person.workspace_id == ws))}
        ids = {i.distinct_id: i for i in s.scalars(select(Identity).where(Identity.workspace_id == ws))}  # fmt: skip
        u1, a2 = people[ids["u1"].person_id], people[ids["a2"].person_id]
        assert ids["a1"].person_id == u1.id and len(people) == 2
        assert (ids["u1"].is_user_id, ids["a1"].is_user_id, ids["a2"].is_user_id) == (True, False, False)  # fmt: skip
        assert (u1.is_identified, a2.is_identified) == (True, False)
        assert u1.traits == {"plan": "pro", "seats": 3, "tags": ["x"], "ok": True, "none": None}
        assert a2.traits == {} and u1.merged_into is None
        assert (u1.first_seen_at, u1.last_seen_at) == (datetime(2026, 1, 1, 10),) * 2
        assert a2.first_seen_at == datetime(2026, 1, 1, 10, 0, 0, 250)
        assert before <= u1.created_at <= utcnow()
        by_seen = s.scalars(
            select(Person.id).where(Person.workspace_id == ws, Person.first_seen_at > datetime(2026, 1, 1, 10))
        ).all()  # fmt: skip
        assert by_seen == [a2.id]  # compared in the database as datetimes order
        if ctx.state.engine.dialect.name == "sqlite":  # SQLAlchemy's own text format
            raw = s.execute(text("SELECT first_seen_at, is_identified FROM persons WHERE id = :id"),
                            {"id": u1.id}).one()  # fmt: skip
            assert tuple(raw) == ("2026-01-01 10:00:00.000000", 1)
