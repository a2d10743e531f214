"""One way to say what is wrong with an input, everywhere (API, CLI, pages)."""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
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


def load_json(text: str | bytes) -> Any:
    """json.loads, refusing nesting too deep for Python's parser as bad JSON (a 4xx) instead
    of letting a RecursionError through (a 500)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", str(text)[:0], 0) from None


def check_timezone(name: str) -> str:
    """The name if it is an IANA time zone the query engine knows too (Python accepts a few,
    like 'posixrules', that DuckDB does not: every later query would fail); ValueError saying
    what to use otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        name_ok = False
    else:
        name_ok = name in _engine_timezones()
    if not name_ok:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin'")
    return name


def check_regex(pattern: str) -> str:
    """The pattern if both Python and the query engine (RE2: no look-arounds, no back
    references) accept it; ValueError with the engine's reason otherwise."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regex: {e}") from None
    with _engine_lock:
        try:
            _engine().execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
        except duckdb.Error as e:
            why = str(e).split("Error: ", 1)[-1]
            raise ValueError(f"invalid regex for the query engine (RE2 syntax): {why}") from None
    return pattern


_engine_lock = threading.Lock()


@functools.cache
def _engine() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB, only to ask it what it accepts."""
    return duckdb.connect()


@functools.cache
def _engine_timezones() -> frozenset[str]:
    with _engine_lock:
        rows = _engine().execute("SELECT name FROM pg_timezone_names()").fetchall()
    return frozenset(r[0] for r in rows)
