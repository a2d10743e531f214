"""Privacy rules, pure: which events a workspace's consent policy keeps, when retention
deletes, and how an erased id is remembered without being kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_RETENTION_DAYS = 36_500


class ConsentPolicy(BaseModel):
    """What a workspace stores, by the consent each event carries.

    Segment's consent context (`context.consent.categoryPreferences`, e.g.
    `{"Analytics": true, "Advertising": false}`) is the common form; PostHog's browser SDK
    stops sending once a person opts out, so nothing reaches us to decide on."""

    model_config = ConfigDict(extra="forbid")

    required_categories: list[str] = Field(
        default_factory=list,
        description="an event whose preferences set any of these to false is dropped",
    )
    when_missing: Literal["store", "drop"] = Field(
        "store",
        description="events with no consent preferences at all (under an opt-in regime: drop)",
    )
    do_not_track: Literal["ignore", "drop"] = Field(
        "ignore",
        description="`drop`: requests a browser sends with `DNT: 1` or `Sec-GPC: 1` store nothing",
    )

    @field_validator("required_categories")
    @classmethod
    def _categories(cls, v: list[str]) -> list[str]:
        if len(v) > 50 or any(not c.strip() or len(c) > 100 for c in v):
            raise ValueError("at most 50 categories, each 1-100 characters")
        return sorted({c.strip() for c in v})

    @property
    def stores_everything(self) -> bool:
        return (
            not self.required_categories
            and self.when_missing == "store"
            and (self.do_not_track == "ignore")
        )


class PrivacyPolicy(BaseModel):
    """A workspace's privacy settings."""

    model_config = ConfigDict(extra="forbid")

    consent: ConsentPolicy = Field(default_factory=ConsentPolicy)
    retention_days: int | None = Field(
        None,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="raw events older than this many days are deleted (none: kept)",
    )
    suppress_erased_ids: bool = Field(
        True,
        description="after an erasure, events that still arrive for the person's ids are dropped",
    )


def consent_allows(
    policy: ConsentPolicy, context: Mapping[str, Any], do_not_track: bool = False
) -> bool:
    """Whether an event may be stored under the policy."""
    if do_not_track and policy.do_not_track == "drop":
        return False
    consent = context.get("consent") if isinstance(context, Mapping) else None
    prefs = consent.get("categoryPreferences") if isinstance(consent, Mapping) else None
    if not isinstance(prefs, Mapping) or not prefs:
        return policy.when_missing == "store"
    return not any(prefs.get(c) is False for c in policy.required_categories)


def retention_cutoff(now: datetime, retention_days: int | None) -> datetime | None:
    """Events before this time are past retention (whole days, counted from now)."""
    if retention_days is None:
        return None
    return now - timedelta(days=retention_days)


def id_hash(workspace_id: str, distinct_id: str) -> str:
    """How a suppressed id is kept: a keyed digest, so the list of erased people does not
    itself name them, yet a late event for one of their ids is recognised."""
    return hashlib.blake2b(
        distinct_id.encode(), key=workspace_id.encode()[:64], digest_size=16
    ).hexdigest()


class Suppressions:
    """The erased ids per workspace (as digests), checked for every event before it is
    stored. Empty for most workspaces, and then costs one dict lookup per event."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()) -> None:
        self._by_ws: dict[str, set[str]] = {}
        for ws, digest in entries:
            self._by_ws.setdefault(ws, set()).add(digest)

    def add(self, workspace_id: str, digests: Iterable[str]) -> None:
        self._by_ws.setdefault(workspace_id, set()).update(digests)

    def blocks(self, workspace_id: str, ids: Iterable[str | None]) -> bool:
        digests = self._by_ws.get(workspace_id)
        if not digests:
            return False
        return any(i is not None and id_hash(workspace_id, i) in digests for i in ids)

    def __bool__(self) -> bool:
        return any(self._by_ws.values())
