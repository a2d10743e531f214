"""HTTP routes of the tracking APIs: Segment (`/v1/*`) and PostHog (`/batch/`, `/capture/`, ...).

These are plain Starlette endpoints rather than FastAPI ones: they parse with orjson and
validate per event themselves, because per-event errors (keep the good, list the bad) do
not fit one request model, and the hot path should not pay for dependency injection.
"""

from __future__ import annotations

import base64
import binascii
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from traction.context import Context
from traction.ingest.domain import (
    SEGMENT_TYPES,
    EventError,
    client_address,
    normalize_posthog,
    normalize_segment,
    parse_time,
)
from traction.ingest.prepare import segment_batch
from traction.ingest.processes import IngestProcessDied
from traction.ingest.sdk_config import (
    posthog_flags,
    posthog_remote_config,
    posthog_remote_config_js,
    segment_settings,
)
from traction.ingest.service import IngestResult
from traction.ingest.writer import WriterOverloaded, WriterStopped
from traction.throttle import RateLimited
from traction.workspaces.service import AuthError, KeyInfo, ScopeError

log = logging.getLogger(__name__)


class Problem(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """CORS headers are added to every tracking answer by `cors.TrackingCORS`."""
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def read_body(request: Request, limit: int, inflate_limit: int) -> bytes:
    """The body, decompressed, or a Problem. Never reads more than `limit` bytes off the wire
    nor inflates past `inflate_limit` (so a gzip bomb costs us nothing)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"request body is larger than {limit // 1024} KB; send smaller batches")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(
                413, f"request body is larger than {limit // 1024} KB; send smaller batches"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").lower()
    compression = request.query_params.get("compression", "")
    if encoding == "gzip" or compression == "gzip-js" or body[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=47)  # gzip or zlib header
        try:
            body = d.decompress(body, inflate_limit + 1)
        except zlib.error:
            raise Problem(400, "body is not valid gzip") from None
        if len(body) > inflate_limit or d.unconsumed_tail:
            raise Problem(413, f"decompressed body is larger than {inflate_limit // 1024} KB")
    elif encoding not in ("", "identity"):
        raise Problem(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    if compression == "lz64":
        raise Problem(415, "compression 'lz64' is not supported; use gzip-js, base64 or none")
    return body


def posthog_payload(request: Request, body: bytes) -> bytes:
    """posthog-js's body forms -> JSON bytes: plain or gzip JSON (already inflated by
    `read_body`), a form field `data` holding JSON or base64 JSON (what `sendBeacon` sends
    at page exit, with `?compression=base64`), or a bare base64 body."""
    base64_hint = request.query_params.get("compression") == "base64"
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"))
        body = (form.get("data") or [""])[0].encode()
    stripped = body.lstrip()
    if not stripped or stripped[:1] in (b"{", b"["):
        return body
    try:
        # A form decoder turns "+" into " "; base64 has no spaces, so put them back.
        return base64.b64decode(stripped.replace(b" ", b"+"), validate=True)
    except (binascii.Error, ValueError):
        if base64_hint:
            raise Problem(400, "body is not valid base64 (sent with compression=base64)") from None
        return body


def parse_json(body: bytes) -> Any:
    if not body:
        raise Problem(400, "request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Problem(400, f"body is not valid JSON: {e}") from None


def do_not_track(request: Request) -> bool:
    """The browser's Do Not Track or Global Privacy Control signal (sent on every request,
    beacons included, when the person turned it on)."""
    return request.headers.get("dnt") == "1" or request.headers.get("sec-gpc") == "1"


def basic_user(request: Request) -> str | None:
    return key_from_headers(request.headers)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: the Basic-auth user name, or a Bearer token."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value, validate=True).decode().split(":", 1)[0] or None
        except (binascii.Error, UnicodeDecodeError):
            raise Problem(401, "Authorization header is not valid Basic auth") from None
    if scheme.lower() == "bearer":
        return value.strip() or None
    return None


def _outcome(result: IngestResult, ok_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if not result.rejected:
        return 200, {**ok_body, "accepted": result.accepted}
    n = len(result.rejected)
    return 400, {
        "success": False,
        "error": f"{n} of {n + result.accepted} events were rejected; the others were stored",
        "accepted": result.accepted,
        "rejected": result.rejected,
    }


Handler = Callable[[Request], Awaitable[Response]]


def _write_key(ctx: Context, token: str | None) -> KeyInfo:
    """The write key's workspace, counted against the key's ingest rate limit."""
    info = ctx.workspaces.authenticate_key(token, "write")
    ctx.throttle.check_key(info.id, ingest=True)
    return info


def _guard(ctx: Context, api: str, handler: Handler) -> Handler:
    """Turns Problems and storage failures into clear 4xx/503 answers, and counts them."""

    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except Problem as p:
            response = _json(p.status, {"success": False, "error": p.message}, p.headers)
        except AuthError as e:
            response = _json(401, {"success": False, "error": str(e)})
        except ScopeError as e:
            response = _json(403, {"success": False, "error": str(e)})
        except RateLimited as e:
            response = _json(
                429, {"success": False, "error": str(e)}, {"Retry-After": f"{e.retry_after:.0f}"}
            )
        except (WriterOverloaded, WriterStopped, IngestProcessDied) as e:
            response = _json(
                503, {"success": False, "error": f"{e}; retry later"}, {"Retry-After": "1"}
            )
        except Exception:
            ctx.metrics.requests.labels(api, "503").inc()
            log.exception("ingest failed")
            return _json(
                503,
                {"success": False, "error": "storage is unavailable; retry"},
                {"Retry-After": "1"},
            )
        ctx.metrics.requests.labels(api, str(response.status_code)).inc()
        return response

    return endpoint


def _client_ip(ctx: Context) -> Callable[[Request], str | None]:
    """The sender's address per request (behind a trusted proxy: from X-Forwarded-For)."""
    trusted = ctx.settings.trusted_proxy_networks

    def client_ip(request: Request) -> str | None:
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.get("x-forwarded-for"), trusted)

    return client_ip


def segment_routes(ctx: Context) -> list[Route]:
    s = ctx.settings
    client_ip = _client_ip(ctx)

    async def project_settings(request: Request) -> Response:
        """What analytics.js loads from its CDN before it sends anything: pointing its `cdnURL`
        at Traction makes it send here."""
        write_key = request.path_params["write_key"]
        key = _write_key(ctx, write_key)
        host = request.headers.get("host", f"{s.host}:{s.port}")
        scheme = request.headers.get("x-forwarded-proto", request.url.scheme)
        return _json(200, segment_settings(write_key, key.workspace_id, host, scheme))

    async def batch(request: Request) -> Response:
        data = await read_body(request, s.max_batch_bytes, s.max_batch_bytes)
        token = basic_user(request)
        processes = ctx.ingest.processes
        if token and processes is not None and processes.available():
            key = _write_key(ctx, token)
            try:
                result = await ctx.ingest.ingest_segment_batch(
                    key.workspace_id, data, client_ip(request), do_not_track(request)
                )
            except EventError as e:
                raise Problem(400, str(e)) from None
        else:  # the key may be in the body: parsed here
            try:
                body = segment_batch(data)
            except EventError as e:
                raise Problem(400, str(e)) from None
            key = _write_key(ctx, token or body.write_key)
            result = await ctx.ingest.ingest_batch(
                key.workspace_id, body, client_ip(request), len(data), do_not_track(request)
            )
        status, out = _outcome(result, {"success": True})
        return _json(status, out)

    def single(kind: str) -> Handler:
        async def handler(request: Request) -> Response:
            body = parse_json(await read_body(request, s.max_event_bytes, s.max_event_bytes))
            if not isinstance(body, dict):
                raise Problem(400, "body must be a JSON object")
            key = _write_key(ctx, basic_user(request) or _str(body.get("writeKey")))
            norm = partial(normalize_segment, default_type=kind, client_ip=client_ip(request))
            result = await ctx.ingest.ingest(
                key.workspace_id, [body], norm, None, do_not_track(request)
            )
            if result.rejected:
                raise Problem(400, result.rejected[0]["error"])
            return _json(200, {"success": True})

        return handler

    routes = []
    # analytics.js posts to /v1/<first letter of the type> (and /v1/b when batching).
    for path in ("/v1/batch", "/v1/import", "/v1/b"):
        routes.append(Route(path, _guard(ctx, "segment", batch), methods=["POST"]))
    for kind in sorted(SEGMENT_TYPES):
        handler = _guard(ctx, "segment", single(kind))
        routes.append(Route(f"/v1/{kind}", handler, methods=["POST"]))
        routes.append(Route(f"/v1/{kind[0]}", handler, methods=["POST"]))
    routes.append(
        Route(
            "/v1/projects/{write_key}/settings",
            _guard(ctx, "segment", project_settings),
            methods=["GET"],
        )
    )
    return routes


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _posthog_norm(
    raw: Any, received_at: datetime, *, sent_at: datetime | None, client_ip: str | None
) -> Any:
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k not in ("api_key", "token")}
        props = raw.get("properties")
        if isinstance(props, dict) and "token" in props:
            raw["properties"] = {k: v for k, v in props.items() if k != "token"}
    return normalize_posthog(raw, received_at, batch_sent_at=sent_at, client_ip=client_ip)


def _posthog_key(body: Any) -> str | None:
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, dict):
        return None
    for k in ("api_key", "token"):
        if isinstance(first.get(k), str):
            return str(first[k])
    props = first.get("properties")
    if isinstance(props, dict) and isinstance(props.get("token"), str):
        return str(props["token"])
    return None


def posthog_routes(ctx: Context) -> list[Route]:
    s = ctx.settings
    client_ip = _client_ip(ctx)

    async def capture(request: Request) -> Response:
        raw = posthog_payload(
            request, await read_body(request, s.max_batch_bytes, s.max_batch_bytes)
        )
        body = parse_json(raw)
        key = _write_key(ctx, _posthog_key(body) or basic_user(request))
        sent_at = None
        if isinstance(body, dict) and "batch" in body:
            try:
                sent_at = parse_time(body.get("sent_at"), "sent_at")
            except EventError as e:
                raise Problem(400, str(e)) from None
            events = body["batch"]
            if not isinstance(events, list):
                raise Problem(400, "batch must be a list of events")
        elif isinstance(body, list):
            events = body
        elif isinstance(body, dict):
            events = [body]
        else:
            raise Problem(400, "body must be an event object, a list of events, or {batch: [...]}")
        norm = partial(_posthog_norm, sent_at=sent_at, client_ip=client_ip(request))
        result = await ctx.ingest.ingest(
            key.workspace_id, events, norm, len(raw), do_not_track(request)
        )
        status, out = _outcome(result, {"status": 1})
        return _json(status, out)

    async def flags(request: Request) -> Response:
        """`/flags/` (posthog-js >= 1.2xx) and `/decide/` (older): the flags for one person.
        The flags capability will evaluate them; for now the answer holds none."""
        raw = posthog_payload(
            request, await read_body(request, s.max_event_bytes, s.max_event_bytes)
        )
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise Problem(400, "body must be an object with token and distinct_id")
        _write_key(ctx, _posthog_key(body) or basic_user(request))
        return _json(200, posthog_flags())

    async def remote_config(request: Request) -> Response:
        token, file = request.path_params["token"], request.path_params["file"]
        if file not in ("config", "config.js"):
            raise Problem(404, f"no such file {file[:40]!r}; posthog-js reads config or config.js")
        _write_key(ctx, token)
        if file == "config.js":
            return Response(posthog_remote_config_js(token), media_type="application/javascript")
        return _json(200, posthog_remote_config(token))

    endpoint = _guard(ctx, "posthog", capture)
    flags_endpoint = _guard(ctx, "posthog", flags)
    routes = []
    for path in ("/batch", "/capture", "/e", "/i/v0/e", "/track"):
        routes.append(Route(path, endpoint, methods=["POST"]))
        routes.append(Route(path + "/", endpoint, methods=["POST"]))
    for path in ("/flags", "/decide"):
        routes.append(Route(path, flags_endpoint, methods=["POST"]))
        routes.append(Route(path + "/", flags_endpoint, methods=["POST"]))
    routes.append(
        Route(
            "/array/{token}/{file:str}",
            _guard(ctx, "posthog", remote_config),
            methods=["GET"],
        )
    )
    return routes
