"""The dashboard session cookie and the CSRF token that goes with it.

Forms and htmx requests carry a token derived from the session cookie (an HMAC of it): a page
of another site can make the browser send the cookie, but cannot read it, so it cannot send
the token. This adds to the SameSite=Lax cookie and the Origin check rather than replacing
them. Nothing is stored: the token follows the session, and a new session means a new one.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request

COOKIE = "traction_session"
HEADER = "x-csrf-token"
FIELD = "csrf_token"


def csrf_token(session_cookie: str) -> str:
    return hmac.new(session_cookie.encode(), b"traction-csrf", hashlib.sha256).hexdigest()[:40]


def csrf_for(request: Request) -> str | None:
    cookie = request.cookies.get(COOKIE)
    return csrf_token(cookie) if cookie else None


async def csrf_protect(request: Request) -> None:
    """A dependency of every dashboard route: a POST made with a session cookie must carry the
    session's token, as the X-CSRF-Token header (htmx) or a csrf_token field (forms)."""
    if request.method != "POST" or request.url.path == "/login":
        return
    expected = csrf_for(request)
    if expected is None:
        return  # no session: nothing a forged request could use
    sent = request.headers.get(HEADER)
    if sent is None and "form" in request.headers.get("content-type", ""):
        sent = str((await request.form()).get(FIELD) or "")
    if not hmac.compare_digest(sent or "", expected):
        raise HTTPException(
            403, "this form is out of date or came from another site: reload the page"
        )
