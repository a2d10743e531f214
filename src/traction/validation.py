"""One way to say what is wrong with an input, everywhere (API, CLI, pages)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

# pydantic's prefixes on messages our validators raise: the user needs only what follows.
_PREFIXES = ("Value error, ", "Assertion failed, ")


def message(err: Mapping[str, Any]) -> str:
    """One pydantic error's message in our words."""
    msg = str(err["msg"])
    for p in _PREFIXES:
        if msg.startswith(p):
            return msg[len(p) :]
    if err.get("type") == "extra_forbidden":
        return "unknown field"
    return msg


def problems(
    errors: Sequence[Mapping[str, Any]], skip: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """JSON-safe error details (pydantic's own carry exception objects in `ctx`, which broke
    the API's error answer): where, what, and the error type."""
    return [
        {
            "loc": [x for x in err["loc"] if x not in skip],
            "msg": message(err),
            "type": err.get("type"),
        }
        for err in errors
    ]


def describe(e: ValidationError, prefix: str = "") -> str:
    """'field.sub: problem; other: problem' from a pydantic error."""
    return join(problems(e.errors()), prefix)


def join(details: Sequence[Mapping[str, Any]], prefix: str = "") -> str:
    parts = []
    for d in details:
        where = ".".join(str(x) for x in d["loc"])
        parts.append(f"{prefix}{where}: {d['msg']}" if where else f"{prefix}{d['msg']}".strip())
    return "; ".join(parts)


def check_timezone(name: str) -> str:
    """The name if it is an IANA time zone; ValueError saying what to use otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin'"
        ) from None
    return name
