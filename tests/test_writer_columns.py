"""The writer resolves a steady load's groups off the rows' columns (`resolve_cached`) rather
than an event object each: checked against the events' way on the same groups."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from traction.context import Context
from traction.identity.models import Identity, Person
from traction.identity.service import IdentityResolver
from traction.ingest import prepare, writer
from traction.settings import Settings

NOW = datetime(2026, 12, 1, 10)


@pytest.fixture(scope="module")
def shared_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    """One context for every example (each example makes its own two workspaces)."""
    c = Context.open(Settings(data_dir=tmp_path_factory.mktemp("columns"), log_json=False))
    try:
        yield c
    finally:
        c.close()


_users = st.sampled_from([None, "u1", "u2"])
_anons = st.sampled_from([None, "a1", "a2"])


@st.composite
def _message(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "track", "page", "identify", "group", "alias"]))
    m: dict[str, Any] = {"type": kind, "timestamp": "2026-12-01T09:00:00Z"}
    user, anon = draw(_users), draw(_anons)
    if user:
        m["userId"] = user
    if anon:
        m["anonymousId"] = anon
    if kind == "track":
        m["event"] = "used"
    if kind == "identify" and draw(st.booleans()):
        m["traits"] = {"plan": draw(st.sampled_from(["free", "pro"]))}
    if kind == "group":
        m["groupId"] = draw(st.sampled_from(["acme", "initech"]))
    if kind == "alias":
        m["previousId"] = draw(st.sampled_from(["a1", "a2", "old"]))
    if draw(st.integers(0, 3)) == 0:
        m["context"] = {"groupId": draw(st.sampled_from(["acme", "globex"]))}
    return m


def _commit(ctx: Context, ws: str, group: list[list[dict[str, Any]]]) -> None:
    """One commit group of prepared requests (as the writer thread would take them)."""
    pending = []
    for messages in group:
        body = orjson.dumps({"batch": messages})
        p = prepare.prepare_batch(prepare.segment_batch(body), None, NOW, 32_768, len(body), None, False)  # fmt: skip
        if p.rows.num_rows:
            pending.append(writer._Pending(prepared=p, workspace_id=ws))
    if pending:
        ctx.writer._commit(pending)
        for q in pending:
            q.future.result()


def _stored(ctx: Context, ws: str) -> list[tuple[Any, ...]]:
    """Each event with its person (as ids, traits and accounts: person ids differ between
    workspaces) and account, in the order they were stored."""
    out = []
    for e in sorted(ctx.events.recent(ws, limit=10_000), key=lambda e: e["event_id"]):
        p = ctx.persons.get(ws, e["person_id"])
        assert p is not None
        with ctx.state.session() as session:  # (the view counts anyone with a user id in)
            flagged = session.get(Person, p.id).is_identified  # type: ignore[union-attr]
        who = (sorted(p.distinct_ids), p.is_identified, flagged, p.traits, p.accounts)
        out.append((e["event_id"], who, e["account_id"]))
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(groups=st.lists(st.lists(st.lists(_message(), min_size=1, max_size=5), min_size=1, max_size=3), min_size=1, max_size=4))  # fmt: skip
def test_groups_resolved_by_columns_store_what_the_events_way_stores(
    shared_ctx: Context, groups: list[list[list[dict[str, Any]]]]
) -> None:
    ctx = shared_ctx
    groups[0][0].insert(0, {"type": "track", "event": "used", "userId": "u1",
                            "timestamp": "2026-12-01T09:00:00Z"})  # fmt: skip
    n = 0
    for g in groups:
        for r in g:
            for m in r:
                n += 1
                m["messageId"] = f"m{n:03}"
    groups[0][0].append({**groups[0][0][0]})  # an id twice in a group: the columns decline it

    taken = []
    real = IdentityResolver.resolve_cached

    def spy(self: IdentityResolver, *a: Any) -> Any:
        res = real(self, *a)
        taken.append(res is not None)
        return res

    by_columns = ctx.workspaces.create_workspace("columns").id
    with pytest.MonkeyPatch.context() as patch:  # (per example: not the fixture)
        patch.setattr(IdentityResolver, "resolve_cached", spy)
        for g in groups:
            _commit(ctx, by_columns, g)
    # then a plain track from each id known so far (its person is cached by now: this
    # group goes by columns), every other one naming an account
    with ctx.state.session() as session:
        known = session.execute(
            select(Identity.distinct_id, Identity.is_user_id)
            .where(Identity.workspace_id == by_columns)
            .order_by(Identity.distinct_id)
        ).all()
    ids = [("userId" if user else "anonymousId", did) for did, user in known]
    again = [{"type": "track", "event": "again", "timestamp": "2026-12-01T09:30:00Z",
              "messageId": f"again-{i}", key: value,
              **({"context": {"groupId": "acme"}} if i % 2 else {})}
             for i, (key, value) in enumerate(ids)]  # fmt: skip
    groups.append([again[: len(again) // 2], again[len(again) // 2 :]])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(IdentityResolver, "resolve_cached", spy)
        _commit(ctx, by_columns, groups[-1])
    assert taken[-1], "a group of cached people that changes nothing goes by columns"

    by_events = ctx.workspaces.create_workspace("events").id
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "_by_columns", lambda *a: None)
        for g in groups:
            _commit(ctx, by_events, g)

    assert _stored(ctx, by_columns) == _stored(ctx, by_events)
