"""`POST /api/v1/usage` as a plain Starlette route: the consume hot path without FastAPI's
per-request machinery (dependency solving, model validation, a thread hop), which was most
of its cost (see docs/benchmarks.md). Checked here by hand against the same rules as the
documented FastAPI route (`api.UsageBody`), which stays for the OpenAPI schema; this route is
matched first, so the schema fuzz tests exercise it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from traction.audit.service import ACTOR
from traction.billing.service import BillingError, NotFound
from traction.ingest.api import Problem, basic_user
from traction.throttle import RateLimited
from traction.workspaces.service import AuthError, ScopeError

FIELDS = {"account", "feature", "quantity", "idempotency_key", "user"}


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _text(body: dict[str, Any], name: str, most: int, required: bool = True) -> str | None:
    v = body.get(name)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not 1 <= len(v) <= most:
        raise BillingError(f"{name}: a string of 1 to {most} characters")
    return v


def parse_usage(raw: bytes) -> dict[str, Any]:
    """The body's fields, or BillingError naming the first wrong one."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BillingError("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise BillingError("body: a JSON object with account, feature, quantity, idempotency_key")
    extra = sorted(set(body) - FIELDS)
    if extra:
        raise BillingError(f"{extra[0]}: unknown field")
    q = body.get("quantity")
    if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 10**9:
        raise BillingError("quantity: a whole number from 1 to 1,000,000,000")
    return {
        "account": _text(body, "account", 200), "feature": _text(body, "feature", 63),
        "quantity": q, "idempotency_key": _text(body, "idempotency_key", 200),
        "user": _text(body, "user", 200, required=False),
    }  # fmt: skip


def usage_route(ctx: Any) -> Route:
    async def usage(request: Request) -> Response:
        try:
            info = ctx.workspaces.authenticate_key(basic_user(request), "server")
            ctx.throttle.check_key(info.id, ingest=False)
            ACTOR.set(f"key:{info.id}")
            f = parse_usage(await request.body())
            future = ctx.billing.submit_consume(info.workspace_id, f["account"], f["feature"],
                                                f["quantity"], f["idempotency_key"], f["user"])  # fmt: skip
            return _answer(200, await asyncio.wrap_future(future))
        except Problem as p:
            return _answer(p.status, {"error": p.message}, p.headers)
        except AuthError as e:
            return _answer(401, {"error": str(e)}, {"WWW-Authenticate": "Bearer"})
        except ScopeError as e:
            return _answer(403, {"error": str(e)})
        except RateLimited as e:
            return _answer(429, {"error": str(e)}, {"Retry-After": f"{e.retry_after:.0f}"})
        except BillingError as e:
            return _answer(422, {"error": str(e)})
        except NotFound as e:
            return _answer(404, {"error": str(e)})

    return Route("/api/v1/usage", usage, methods=["POST"])
