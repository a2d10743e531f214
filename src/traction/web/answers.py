"""How a capability's API turns its service's errors into answers: the service raises its
own "bad input" error (422, or what `status` says) and its own "not found" (404), and the
route says which they are, so no route repeats the try/except."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException


def answer(
    fn: Callable[..., Any],
    *args: Any,
    invalid: type[Exception] | tuple[type[Exception], ...],
    missing: type[Exception] | tuple[type[Exception], ...],
    status: Callable[[Exception], int] = lambda e: 422,
    **kwargs: Any,
) -> Any:
    try:
        return fn(*args, **kwargs)
    except invalid as e:
        raise HTTPException(status(e), str(e)) from None
    except missing as e:
        raise HTTPException(404, str(e)) from None


def json_document(text: str, error: type[Exception]) -> Any:
    """A JSON document typed into an editor, or `error` saying where it stops being JSON."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
