"""Workspaces, keys and users: the security boundary every other capability relies on."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from traction.audit.service import acting_as, record
from traction.store.state import StateStore, utcnow
from traction.validation import check_timezone
from traction.workspaces.domain import (
    ROLES,
    SCOPES,
    Role,
    Scope,
    check_password,
    display_prefix,
    hash_token,
    new_key,
    scope_allows,
)
from traction.workspaces.domain import (
    normalize_email as _email,
)
from traction.workspaces.models import ApiKey, Invite, User, UserSession, Workspace, WorkspaceMember

_hasher = PasswordHasher()


@dataclass(frozen=True)
class CreatedWorkspace:
    id: str
    name: str
    write_key: str
    secret_key: str


@dataclass(frozen=True)
class KeyInfo:
    id: str
    workspace_id: str
    scope: str


@dataclass(frozen=True)
class CreatedKey:
    id: str
    key: str
    scope: str


class AuthError(Exception):
    """Missing, unknown or revoked credentials (HTTP 401)."""


class ScopeError(Exception):
    """Valid credentials without the needed scope (HTTP 403)."""


class WorkspaceService:
    # Keys are checked on every tracking request; a short cache keeps that off the database.
    # Revoking a key therefore takes effect within this many seconds on every replica.
    KEY_CACHE_SECONDS = 5.0

    def __init__(self, state: StateStore, max_keys: int = 100) -> None:
        self.max_keys = max_keys
        self.state = state
        self._key_cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._cache_lock = threading.Lock()

    # -- workspaces and keys ---------------------------------------------------------------

    def create_workspace(self, name: str, timezone: str = "UTC") -> CreatedWorkspace:
        if not name.strip():
            raise ValueError("workspace name must not be empty")
        check_timezone(timezone)
        with self.state.session() as s:
            ws = Workspace(name=name.strip(), timezone=timezone)
            s.add(ws)
            s.flush()
            write = self._add_key(s, ws.id, "write", "default write key")
            secret = self._add_key(s, ws.id, "admin", "default secret key")
            record(s, ws.id, "workspace.created", ws.id, name=ws.name, timezone=timezone)
            return CreatedWorkspace(ws.id, ws.name, write.key, secret.key)

    def _add_key(self, s: Session, workspace_id: str, scope: Scope, name: str) -> CreatedKey:
        key = new_key(scope)
        row = ApiKey(
            workspace_id=workspace_id,
            name=name,
            scope=scope,
            prefix=display_prefix(key),
            key_hash=hash_token(key),
        )
        s.add(row)
        s.flush()
        return CreatedKey(row.id, key, scope)

    def create_key(
        self, workspace_id: str, scope: Scope, name: str = "", *, audited: bool = True
    ) -> CreatedKey:
        """`audited=False`: the CLI's short-lived key (created and deleted by each command
        while a server runs); the command's own changes are in the log under `cli`."""
        if scope not in SCOPES:
            raise ValueError("scope must be 'write', 'server' or 'admin'")
        with self.state.session() as s:
            active = s.scalar(
                select(func.count()).where(
                    ApiKey.workspace_id == workspace_id, ApiKey.revoked_at.is_(None)
                )
            )
            if (active or 0) >= self.max_keys:
                raise ValueError(
                    f"this workspace has {active} active keys, the most allowed: revoke unused ones first"
                )
            created = self._add_key(s, workspace_id, scope, name)
            if audited:
                record(s, workspace_id, "key.created", created.id, scope=scope, name=name)
            return created

    def list_keys(self, workspace_id: str) -> list[ApiKey]:
        with self.state.session() as s:
            return list(
                s.scalars(
                    select(ApiKey)
                    .where(ApiKey.workspace_id == workspace_id)
                    .order_by(ApiKey.created_at)
                )
            )

    def revoke_key(self, workspace_id: str, key_id: str) -> bool:
        with self.state.session() as s:
            row = s.get(ApiKey, key_id)
            if row is None or row.workspace_id != workspace_id:
                return False
            if row.revoked_at is None:
                record(s, workspace_id, "key.revoked", key_id, scope=row.scope, name=row.name)
            row.revoked_at = utcnow()
        with self._cache_lock:
            self._key_cache.clear()
        return True

    def delete_key(self, workspace_id: str, key_id: str) -> None:
        """Gone without a trace: for the CLI's temporary keys, never shown to anyone."""
        with self.state.session() as s:
            s.execute(
                delete(ApiKey).where(ApiKey.id == key_id, ApiKey.workspace_id == workspace_id)
            )
        with self._cache_lock:
            self._key_cache.clear()

    def update_workspace(
        self, workspace_id: str, *, name: str | None = None, timezone: str | None = None
    ) -> Workspace:
        """Rename, or set the time zone every day/week/month boundary is computed in."""
        if timezone is not None:
            check_timezone(timezone)
        if name is not None and not name.strip():
            raise ValueError("workspace name must not be empty")
        with self.state.session() as s:
            ws = s.get(Workspace, workspace_id)
            if ws is None:
                raise ValueError(f"no workspace {workspace_id}")
            before = {"name": ws.name, "timezone": ws.timezone}
            if name is not None:
                ws.name = name.strip()
            if timezone is not None:
                ws.timezone = timezone
            after = {"name": ws.name, "timezone": ws.timezone}
            if before != after:
                record(
                    s, workspace_id, "workspace.updated", workspace_id, before=before, after=after
                )
            return ws

    def get_workspace(self, workspace_id: str) -> Workspace | None:
        with self.state.session() as s:
            return s.get(Workspace, workspace_id)

    def list_workspaces(self) -> list[Workspace]:
        with self.state.session() as s:
            return list(s.scalars(select(Workspace).order_by(Workspace.created_at)))

    def find_workspace(self, name: str) -> Workspace | None:
        with self.state.session() as s:
            return s.scalars(select(Workspace).where(Workspace.name == name)).first()

    def authenticate_key(self, key: str | None, need: Scope) -> KeyInfo:
        if not key:
            raise AuthError(
                "missing API key: send it as the HTTP Basic user name or a Bearer token"
            )
        info = self.key_info(key)
        if info is None:
            raise AuthError("invalid or revoked API key")
        if not scope_allows(info.scope, need):
            raise ScopeError(f"this key has scope '{info.scope}'; this endpoint needs '{need}'")
        return info

    def key_info(self, key: str) -> KeyInfo | None:
        """The key's workspace and scope (None: unknown or revoked), cached briefly."""
        digest = hash_token(key)
        now = time.monotonic()
        with self._cache_lock:
            hit = self._key_cache.get(digest)
        if hit and hit[0] > now:
            info = hit[1]
        else:
            with self.state.session() as s:
                row = s.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
                info = (
                    KeyInfo(row.id, row.workspace_id, row.scope)
                    if row is not None and row.revoked_at is None
                    else None
                )
            with self._cache_lock:
                if len(self._key_cache) > 10_000:
                    self._key_cache.clear()
                self._key_cache[digest] = (now + self.KEY_CACHE_SECONDS, info)
        return info

    # -- users and sessions ------------------------------------------------------------------

    def create_user(
        self, email: str, password: str, workspace_ids: list[str], role: Role = "admin"
    ) -> User:
        email = _email(email)
        check_password(password)
        with self.state.session() as s:
            if s.scalars(select(User).where(User.email == email)).first():
                raise ValueError(f"a user {email} exists already")
            user = User(email=email, password_hash=_hasher.hash(password))
            s.add(user)
            s.flush()
            for ws in workspace_ids:
                s.add(WorkspaceMember(workspace_id=ws, user_id=user.id, role=role))
                record(s, ws, "member.added", email, role=role)
            return user

    def find_user(self, email: str) -> User | None:
        with self.state.session() as s:
            return s.scalars(select(User).where(User.email == _email(email))).first()

    def list_users(self) -> list[tuple[User, list[tuple[str, str]]]]:
        """Every user with their (workspace id, role) pairs."""
        with self.state.session() as s:
            users = list(s.scalars(select(User).order_by(User.created_at)))
            rows = s.execute(
                select(WorkspaceMember.user_id, WorkspaceMember.workspace_id, WorkspaceMember.role)
            ).all()
        access: dict[str, list[tuple[str, str]]] = {}
        for user_id, ws, role in rows:
            access.setdefault(user_id, []).append((ws, role))
        return [(u, access.get(u.id, [])) for u in users]

    def add_member(self, email: str, workspace_id: str, role: Role = "admin") -> bool:
        """Give an existing user access (or change their role). True when it is new access."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        with self.state.session() as s:
            user = s.scalars(select(User).where(User.email == _email(email))).first()
            if user is None:
                raise ValueError(
                    f"no user {email}: create it with `traction user add {email} --workspace …`"
                )
            if s.get(Workspace, workspace_id) is None:
                raise ValueError(f"no workspace {workspace_id}")
            row = s.scalars(
                select(WorkspaceMember).where(
                    WorkspaceMember.user_id == user.id, WorkspaceMember.workspace_id == workspace_id
                )
            ).first()
            if row is None:
                s.add(WorkspaceMember(workspace_id=workspace_id, user_id=user.id, role=role))
                record(s, workspace_id, "member.added", user.email, role=role)
                return True
            if row.role != role:
                record(
                    s, workspace_id, "member.role_changed", user.email, before=row.role, after=role
                )
            row.role = role
            return False

    def remove_member(self, user_id: str, workspace_id: str) -> bool:
        with self.state.session() as s:
            done = s.execute(
                delete(WorkspaceMember).where(
                    WorkspaceMember.user_id == user_id, WorkspaceMember.workspace_id == workspace_id
                )
            )
            removed = bool(done.rowcount)  # type: ignore[attr-defined]
            if removed:
                user = s.get(User, user_id)
                record(s, workspace_id, "member.removed", user.email if user else user_id)
            return removed

    def members(self, workspace_id: str) -> list[tuple[User, str]]:
        with self.state.session() as s:
            return [
                (u, role)
                for u, role in s.execute(
                    select(User, WorkspaceMember.role)
                    .join(WorkspaceMember, WorkspaceMember.user_id == User.id)
                    .where(WorkspaceMember.workspace_id == workspace_id)
                    .order_by(User.email)
                ).all()
            ]

    def role(self, user_id: str, workspace_id: str) -> str | None:
        """The user's role in the workspace; None when they are not a member."""
        with self.state.session() as s:
            return s.scalars(
                select(WorkspaceMember.role).where(
                    WorkspaceMember.user_id == user_id, WorkspaceMember.workspace_id == workspace_id
                )
            ).first()

    def invite(self, email: str, workspace_id: str, role: Role = "member", days: int = 7) -> str:
        """A one-time token for someone without an account (an existing user is simply added:
        see `add_member`). Only its hash is stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        email = _email(email)
        token = secrets.token_urlsafe(32)
        with self.state.session() as s:
            s.add(
                Invite(
                    token_hash=hash_token(token), workspace_id=workspace_id, email=email,
                    role=role, expires_at=utcnow() + timedelta(days=days),
                )
            )  # fmt: skip
            record(s, workspace_id, "member.invited", email, role=role, days=days)
        return token

    def pending_invite(self, token: str) -> Invite | None:
        with self.state.session() as s:
            row = s.get(Invite, hash_token(token))
            return row if row is not None and row.expires_at >= utcnow() else None

    def accept_invite(self, token: str, password: str) -> User:
        """Create the invited user and spend the token. If the email has an account already
        (made since the invitation), its own password is required: the link alone must never
        sign anyone in to an existing account."""
        check_password(password)
        with self.state.session() as s:
            row = s.get(Invite, hash_token(token))
            if row is None or row.expires_at < utcnow():
                raise ValueError("this invitation has expired or was used: ask for a new one")
            user = s.scalars(select(User).where(User.email == row.email)).first()
            if user is None:
                user = User(email=row.email, password_hash=_hasher.hash(password))
                s.add(user)
                s.flush()
            else:
                try:
                    _hasher.verify(user.password_hash, password)
                except (VerificationError, InvalidHashError):
                    raise ValueError(
                        f"{row.email} has an account already: enter its password"
                    ) from None
            member = s.scalars(
                select(WorkspaceMember).where(
                    WorkspaceMember.user_id == user.id,
                    WorkspaceMember.workspace_id == row.workspace_id,
                )
            ).first()
            if member is None:
                s.add(
                    WorkspaceMember(workspace_id=row.workspace_id, user_id=user.id, role=row.role)
                )
                with acting_as(f"user:{user.email}"):
                    record(s, row.workspace_id, "member.joined", user.email, role=row.role)
            s.delete(row)
            return user

    def pending_invites(self, workspace_id: str) -> list[Invite]:
        with self.state.session() as s:
            return list(
                s.scalars(
                    select(Invite)
                    .where(Invite.workspace_id == workspace_id, Invite.expires_at >= utcnow())
                    .order_by(Invite.created_at)
                )
            )

    def verify_password(self, email: str, password: str) -> User | None:
        with self.state.session() as s:
            user = s.scalars(select(User).where(User.email == email.strip().lower())).first()
            if user is None:
                _hasher.hash(password)  # same work either way: no user enumeration by timing
                return None
            try:
                _hasher.verify(user.password_hash, password)
            except (VerificationError, InvalidHashError):
                return None
            return user

    def start_session(self, user_id: str, days: int = 14) -> str:
        token = secrets.token_urlsafe(32)
        with self.state.session() as s:
            s.add(
                UserSession(
                    token_hash=hash_token(token),
                    user_id=user_id,
                    expires_at=utcnow() + timedelta(days=days),
                )
            )
        return token

    def session_user(self, token: str | None, idle_minutes: float | None = None) -> User | None:
        """The session's user, unless it expired or (with `idle_minutes`) went unused that
        long: a laptop left open does not stay signed in for the session's whole life."""
        if not token:
            return None
        now = utcnow()
        with self.state.session() as s:
            row = s.get(UserSession, hash_token(token))
            if row is None or row.expires_at < now:
                return None
            used = row.last_used_at or row.created_at
            if idle_minutes is not None and used < now - timedelta(minutes=idle_minutes):
                s.delete(row)
                return None
            if used < now - timedelta(minutes=1):
                row.last_used_at = now
            return s.get(User, row.user_id)

    def end_session(self, token: str) -> None:
        with self.state.session() as s:
            s.execute(delete(UserSession).where(UserSession.token_hash == hash_token(token)))

    def user_workspaces(self, user_id: str) -> list[Workspace]:
        with self.state.session() as s:
            return list(
                s.scalars(
                    select(Workspace)
                    .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
                    .where(WorkspaceMember.user_id == user_id)
                    .order_by(Workspace.created_at)
                )
            )
