"""One way to say what is wrong with an input, everywhere (API, CLI, pages)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError


def describe(e: ValidationError, prefix: str = "") -> str:
    """'field.sub: problem; other: problem' from a pydantic error."""
    return "; ".join(
        f"{prefix}{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
    )


def check_timezone(name: str) -> str:
    """The name if it is an IANA time zone; ValueError saying what to use otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin'"
        ) from None
    return name
