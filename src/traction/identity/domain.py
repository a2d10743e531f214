"""Pure identity rules: what linking two distinct ids does to the people behind them.

These follow PostHog/Segment semantics. An anonymous person who identifies becomes the
identified person (their earlier events come along). Two people who are both already
identified are never merged: that is almost always a shared device or a bad `alias` call,
and an unwanted merge cannot be undone.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

_PERSON_NS = uuid.UUID("8f0e6c1e-4a54-4d4b-9d3c-7a1f5e0c2b11")


def person_id_for(workspace_id: str, distinct_id: str) -> str:
    """Deterministic, so replaying a batch after a crash creates the same person."""
    return str(uuid.uuid5(_PERSON_NS, f"{workspace_id}\x00{distinct_id}"))


@dataclass(slots=True)
class PersonState:
    id: str
    is_identified: bool
    traits: dict[str, Any]


class Link(enum.Enum):
    CREATE_SHARED = "create_shared"  # neither id known: one new identified person for both
    ATTACH_USER = "attach_user"  # user id joins the anonymous person, who becomes identified
    SEPARATE_USER = "separate_user"  # anonymous id belongs to someone else identified: new person
    ATTACH_ANON = "attach_anon"  # anonymous id joins the identified person
    SAME = "same"  # already one person
    MERGE = "merge"  # anonymous person merges into the identified person
    REFUSE = "refuse"  # both identified and different: never merged


def decide_link(anon: PersonState | None, user: PersonState | None) -> Link:
    """`anon` is the person of the id being absorbed (anonymousId or alias previousId),
    `user` the person of the identifying id (userId)."""
    if anon is None and user is None:
        return Link.CREATE_SHARED
    if user is None:
        assert anon is not None
        return Link.SEPARATE_USER if anon.is_identified else Link.ATTACH_USER
    if anon is None:
        return Link.ATTACH_ANON
    if anon.id == user.id:
        return Link.SAME
    if anon.is_identified:
        return Link.REFUSE
    return Link.MERGE


def apply_traits(
    current: dict[str, Any], set_: dict[str, Any] | None, set_once: dict[str, Any] | None
) -> dict[str, Any]:
    """`$set` overwrites, `$set_once` only fills what is missing. Returns a new dict."""
    out = dict(current)
    if set_once:
        for k, v in set_once.items():
            out.setdefault(k, v)
    if set_:
        out.update(set_)
    return out


def merge_traits(absorbed: dict[str, Any], survivor: dict[str, Any]) -> dict[str, Any]:
    """The identified person's own traits win; the anonymous one's fill the gaps."""
    return {**absorbed, **survivor}
