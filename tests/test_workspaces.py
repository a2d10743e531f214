"""Workspaces, keys, users and sessions on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from traction.context import Context
from traction.workspaces.models import ApiKey, User
from traction.workspaces.service import AuthError, ScopeError


def test_keys_are_stored_hashed_with_scopes(ctx: Context) -> None:
    created = ctx.workspaces.create_workspace("Acme")
    assert created.write_key.startswith("tr_pub_") and created.secret_key.startswith("tr_sec_")
    with ctx.state.session() as s:
        rows = list(s.scalars(select(ApiKey)))
    assert {r.scope for r in rows} == {"write", "admin"}
    for r in rows:
        assert created.write_key not in (r.key_hash, r.prefix) and created.secret_key not in (
            r.key_hash,
            r.prefix,
        )
        assert len(r.key_hash) == 64
    assert ctx.workspaces.authenticate_key(created.write_key, "write").workspace_id == created.id
    assert ctx.workspaces.authenticate_key(created.secret_key, "write").scope == "admin"
    with pytest.raises(ScopeError):
        ctx.workspaces.authenticate_key(created.write_key, "admin")
    with pytest.raises(AuthError):
        ctx.workspaces.authenticate_key("tr_pub_unknown", "write")
    with pytest.raises(AuthError):
        ctx.workspaces.authenticate_key(None, "write")


def test_revocation_is_immediate_on_this_replica(ctx: Context) -> None:
    created = ctx.workspaces.create_workspace("Acme")
    key = ctx.workspaces.create_key(created.id, "write", "temp")
    ctx.workspaces.authenticate_key(key.key, "write")  # now cached
    assert ctx.workspaces.revoke_key(created.id, key.id)
    with pytest.raises(AuthError):
        ctx.workspaces.authenticate_key(key.key, "write")
    other = ctx.workspaces.create_workspace("Other")
    assert not ctx.workspaces.revoke_key(other.id, created.id)  # not B's to revoke


def test_passwords_are_argon2_and_sessions_expire(ctx: Context) -> None:
    ws = ctx.workspaces.create_workspace("Acme")
    ctx.workspaces.create_user("Ann@Example.com", "correct horse", [ws.id])
    with ctx.state.session() as s:
        user = s.scalars(select(User)).one()
    assert user.email == "ann@example.com" and user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.password_hash
    assert ctx.workspaces.verify_password("ann@example.com", "wrong") is None
    assert ctx.workspaces.verify_password("nobody@example.com", "correct horse") is None
    ok = ctx.workspaces.verify_password("ANN@example.com", "correct horse")
    assert ok is not None
    token = ctx.workspaces.start_session(ok.id)
    assert ctx.workspaces.session_user(token).id == ok.id  # type: ignore[union-attr]
    assert [w.id for w in ctx.workspaces.user_workspaces(ok.id)] == [ws.id]
    ctx.workspaces.end_session(token)
    assert ctx.workspaces.session_user(token) is None
    expired = ctx.workspaces.start_session(ok.id, days=-1)
    assert ctx.workspaces.session_user(expired) is None


@pytest.mark.parametrize(
    ("email", "password", "problem"),
    [("no-at", "long enough", "email"), ("a@b.c", "short", "8 characters")],
)
def test_user_validation(ctx: Context, email: str, password: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ctx.workspaces.create_user(email, password, [])


def test_duplicate_user_is_refused(ctx: Context) -> None:
    ctx.workspaces.create_user("a@b.c", "long enough", [])
    with pytest.raises(ValueError, match="exists"):
        ctx.workspaces.create_user("A@b.c", "long enough", [])


def test_migrations_are_idempotent(ctx: Context) -> None:
    ctx.state.migrate()
    with ctx.state.engine.connect() as c:
        current = c.execute(text("SELECT version_num FROM alembic_version")).scalar()
    from alembic.script import ScriptDirectory

    from traction.store.state import alembic_config

    assert (
        current == ScriptDirectory.from_config(alembic_config(ctx.state.engine)).get_current_head()
    )
    assert current == "0018"
