"""Key and token formats. Keys carry their scope in the prefix so a leaked key says what it can do."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

Scope = Literal["write", "admin"]
SCOPES: tuple[Scope, ...] = ("write", "admin")
_PREFIX = {"write": "tr_pub_", "admin": "tr_sec_"}


def new_key(scope: Scope) -> str:
    return _PREFIX[scope] + secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:12] + "…"


def scope_allows(have: str, need: Scope) -> bool:
    """admin can do everything a write key can; a write key can only ingest."""
    return have == "admin" or have == need


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
