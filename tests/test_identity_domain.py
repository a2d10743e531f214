"""The pure identity rules."""

from __future__ import annotations

import pytest

from traction.identity.domain import (
    Link,
    PersonState,
    apply_traits,
    decide_link,
    merge_traits,
    person_id_for,
)

ANON = PersonState("p-anon", False, {})
ANON_ID = PersonState("p-anon2", True, {})
USER = PersonState("p-user", True, {})


@pytest.mark.parametrize(
    ("anon", "user", "expected"),
    [
        (None, None, Link.CREATE_SHARED),
        (ANON, None, Link.ATTACH_USER),
        (ANON_ID, None, Link.SEPARATE_USER),
        (None, USER, Link.ATTACH_ANON),
        (USER, USER, Link.SAME),
        (ANON, USER, Link.MERGE),
        (ANON_ID, USER, Link.REFUSE),
    ],
)
def test_decide_link(anon: PersonState | None, user: PersonState | None, expected: Link) -> None:
    assert decide_link(anon, user) is expected


def test_set_overwrites_and_set_once_fills() -> None:
    t = apply_traits(
        {"plan": "free", "source": "ads"}, {"plan": "pro"}, {"source": "seo", "first_page": "/"}
    )
    assert t == {"plan": "pro", "source": "ads", "first_page": "/"}


def test_set_once_then_set_same_key_in_one_call() -> None:
    assert apply_traits({}, {"a": 2}, {"a": 1}) == {"a": 2}


def test_merge_keeps_identified_traits() -> None:
    assert merge_traits({"a": 1, "b": 1}, {"b": 2}) == {"a": 1, "b": 2}


def test_person_ids_are_deterministic_and_scoped() -> None:
    assert person_id_for("ws1", "u") == person_id_for("ws1", "u")
    assert person_id_for("ws1", "u") != person_id_for("ws2", "u")
