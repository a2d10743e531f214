"""Key and token formats. Keys carry their scope in the prefix so a leaked key says what it can do."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

Scope = Literal["write", "server", "admin"]
SCOPES: tuple[Scope, ...] = ("write", "server", "admin")
_PREFIX = {"write": "tr_pub_", "server": "tr_srv_", "admin": "tr_sec_"}
# What each scope may do beyond itself: a server key (a product's backend) ingests too, and
# checks and consumes entitlements; an admin key does everything.
_ALSO: dict[str, frozenset[str]] = {
    "write": frozenset(),
    "server": frozenset({"write"}),
    "admin": frozenset({"write", "server"}),
}


def new_key(scope: Scope) -> str:
    return _PREFIX[scope] + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:12] + "…"


def scope_allows(have: str, need: Scope) -> bool:
    """A write key only ingests; a server key ingests and uses entitlements; admin: all."""
    return have == need or need in _ALSO.get(have, frozenset())


# Dashboard roles: an admin manages keys, members and settings; a member uses the product
# (events, people, insights, dashboards) but cannot mint or revoke keys.
Role = Literal["admin", "member"]
ROLES: tuple[Role, ...] = ("admin", "member")


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > 320 or any(c.isspace() for c in email):
        raise ValueError(f"{email!r} is not an email address")
    return email


def check_password(password: str) -> None:
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
