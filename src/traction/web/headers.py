"""Security headers on every answer, and a Content-Security-Policy on every page.

The policy lets only our own scripts run: the files we serve (htmx, Plotly, the builder) and
the inline chart scripts that carry this response's nonce. htmx is told the nonce (a meta tag
in the layout), so the scripts of fragments it swaps in run with it; an injected
`<script>` has no nonce and does not run, and inline event handlers are not used at all
(`static/app.js` binds them). Styles may be inline: Plotly sets them.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
PAGES = {"X-Frame-Options": "DENY"}


def policy(nonce: str) -> str:
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])  # fmt: skip


class Nonce:
    """Drawn on first use (a page's template, or its policy header): most requests are API
    and ingest calls that never need one, and each draw is a system call."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: str | None = None

    def __str__(self) -> str:
        if self._value is None:
            self._value = secrets.token_urlsafe(16)
        return self._value


class SecurityHeaders:
    """Pure ASGI (no buffering): adds the headers as the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = Nonce()
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def start(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in ALWAYS.items():
                    headers.setdefault(k, v)
                if headers.get("content-type", "").startswith("text/html"):
                    for k, v in PAGES.items():
                        headers.setdefault(k, v)
                    headers.setdefault("Content-Security-Policy", policy(str(nonce)))
            await send(message)

        await self.app(scope, receive, start)
