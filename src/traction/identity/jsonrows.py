"""Many rows as one JSON parameter: the StateStore reads them back out in SQL (SQLite
`json_each`, PostgreSQL `jsonb_array_elements`), so a statement for thousands of rows costs
no per-value work in Python. Through SQLAlchemy, an `executemany` or an ORM bulk insert
processes every bound value (10% of the server's interpreter under the ingest bench when
its people were new, and a third of the reactors' time before `identity.seen` used this).

orjson writes datetimes itself ("2026-12-01T10:00:00", with ".ffffff" only when there are
microseconds; naive, as the StateStore keeps them). SQLite compares SQLAlchemy's text
format ("2026-12-01 10:00:00.000000"), so its SQL rewrites them to that.
"""

from __future__ import annotations

from typing import Any

import orjson

SOURCE = {
    "sqlite": "json_each(:rows)",
    "postgresql": "jsonb_array_elements(CAST(:rows AS jsonb)) AS e",
}


def param(rows: Any) -> dict[str, str]:
    """The statement's parameter: `rows` (lists of JSON values) as one JSON text."""
    return {"rows": orjson.dumps(rows).decode()}


def text_at(dialect: str, i: int) -> str:
    """The i-th value of a row, as text."""
    return f"value ->> {i}" if dialect == "sqlite" else f"e ->> {i}"


def json_at(dialect: str, i: int) -> str:
    """The i-th value of a row, as JSON (a JSON column's value)."""
    return f"json(value -> {i})" if dialect == "sqlite" else f"CAST(e -> {i} AS json)"


def bool_at(dialect: str, i: int) -> str:
    return f"value ->> {i}" if dialect == "sqlite" else f"CAST(e ->> {i} AS boolean)"


def time_at(dialect: str, i: int) -> str:
    """The i-th value of a row, a datetime as orjson wrote it, as the StateStore keeps it."""
    if dialect != "sqlite":
        return f"CAST(e ->> {i} AS timestamp)"
    iso = f"replace(value ->> {i}, 'T', ' ')"
    return f"CASE WHEN length({iso}) = 19 THEN {iso} || '.000000' ELSE {iso} END"
