"""CORS for the public tracking endpoints, on every answer they give.

Browser SDKs post from the customer's own origin. Chromium hides a response without
`Access-Control-Allow-Origin` from the script, so an SDK that gets a 404 or a 503 without
it sees a network error instead of a status, and its retry logic guesses. A middleware
(rather than headers set per route) covers every answer: 2xx, 4xx, the router's own 404
and 405, and the 503 of an overloaded writer.

Only the tracking paths get CORS. They authenticate with a key in the body or a header and
never with a cookie, so echoing the caller's origin exposes nothing. The dashboard and the
admin API are deliberately left out: the dashboard is cookie-authenticated.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The public surface: Segment (`/v1/...`), PostHog (capture, flags, remote config), and
# GrowthBook's SDK endpoints (a public client key in the path).
TRACKING_PREFIXES = ("/v1/", "/array/", "/api/features/", "/api/eval/", "/sub/")
TRACKING_EXACT = frozenset(
    path + slash
    for path in ("/batch", "/capture", "/e", "/i/v0/e", "/track", "/flags", "/decide")
    for slash in ("", "/")
)

# What the SDKs send: analytics-next adds `X-Retry-Count` to every retry; posthog-js and
# gzip clients send `Content-Encoding`. Anything else a preflight asks for is echoed back
# when it is a well-formed header name, so a newer SDK version does not start losing data.
DEFAULT_ALLOWED_HEADERS = ("Content-Type", "Authorization", "Content-Encoding", "X-Retry-Count")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


def is_tracking_path(path: str) -> bool:
    return path in TRACKING_EXACT or path.startswith(TRACKING_PREFIXES)


def allowed_headers(requested: str | None) -> str:
    """The preflight's allow list: our defaults plus every well-formed header asked for."""
    names = list(DEFAULT_ALLOWED_HEADERS)
    known = {n.lower() for n in names}
    for raw in (requested or "").split(","):
        name = raw.strip()
        if name and name.lower() not in known and _HEADER_NAME.match(name):
            names.append(name)
            known.add(name.lower())
    return ", ".join(names)


class TrackingCORS:
    """ASGI middleware: answers preflights and adds CORS headers on the tracking paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_tracking_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Expose-Headers"] = "Retry-After"
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _preflight(origin: str, headers: Headers, send: Send) -> None:
        out = MutableHeaders()
        out["Access-Control-Allow-Origin"] = origin
        out["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        out["Access-Control-Allow-Headers"] = allowed_headers(
            headers.get("access-control-request-headers")
        )
        out["Access-Control-Max-Age"] = "86400"
        out["Vary"] = "Origin, Access-Control-Request-Headers"
        out["Content-Length"] = "0"
        await send({"type": "http.response.start", "status": 204, "headers": out.raw})
        await send({"type": "http.response.body", "body": b""})
