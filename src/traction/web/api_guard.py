"""The admin API's front door: the key is checked and the body capped before any work.

FastAPI reads and parses a JSON body before the route's dependencies run, so without this an
unauthenticated 200 MB POST was read whole (and parsed) before its 401. Here a request to
`/api/` that carries a body is refused at once without a valid key (401) or when it
announces more than `api_max_body_bytes` (413); otherwise its body is read up to the cap
(413 past it) and handed on. Scopes are still the routes' business: a write key passes here
and gets its 403 there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.cookies import SimpleCookie

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from traction.ingest.api import Problem, key_from_headers
from traction.web.session import COOKIE

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What an operator may want private (`protect_meta_endpoints`): the schema and the metrics.
META_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# GrowthBook's remote evaluation: a public SDK client key in the path is its credential
PUBLIC_PREFIXES = ("/api/eval/",)


class ApiGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body: Callable[[], int],
        key_ok: Callable[[str], bool],
        protect_meta: Callable[[], bool] = lambda: False,
        session_ok: Callable[[str], bool] = lambda cookie: False,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.key_ok = key_ok
        self.protect_meta = protect_meta
        self.session_ok = session_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        meta = scope["type"] == "http" and scope["path"] in META_PATHS and self.protect_meta()
        if meta and not await self._meta_allowed(Headers(scope=scope)):
            await _answer(send, 401, "sign in, or send a secret key, to read this")
            return
        if (
            scope["type"] != "http"
            or not scope["path"].startswith("/api/")
            or scope["method"] not in BODY_METHODS
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            token = key_from_headers(headers)
        except Problem as p:
            await _answer(send, 401, p.message)
            return
        public = scope["path"].startswith(PUBLIC_PREFIXES)  # the client key is in the path
        if not public and (not token or not await anyio.to_thread.run_sync(self.key_ok, token)):
            await _answer(
                send,
                401,
                "missing or invalid API key: send it as the HTTP Basic user name or a Bearer token",
            )
            return
        cap = self.max_body()
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await _answer(send, 413, f"request body is larger than {cap // 1024} KB")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await _answer(send, 413, f"request body is larger than {cap // 1024} KB")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _meta_allowed(self, headers: Headers) -> bool:
        try:
            token = key_from_headers(headers)
        except Problem:
            return False
        if token:
            key: str = token
            if await anyio.to_thread.run_sync(self.key_ok, key):
                return True
        cookie = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        return cookie is not None and await anyio.to_thread.run_sync(self.session_ok, cookie.value)


async def _answer(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
