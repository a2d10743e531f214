"""`POST /api/eval/{client_key}` as a plain Starlette route: remote evaluation without FastAPI's
per-request machinery (model validation, a thread hop), which was most of its cost (see
docs/benchmarks.md). It checks the body by hand against the same rules as `api.EvalBody`
(the documented route, which stays for the OpenAPI schema; this one is matched first)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from traction.flags.api import remote_eval
from traction.flags.service import NotFound

CLIENT_KEY = re.compile(r"^tr_sdk_[A-Za-z0-9_-]{1,57}$")


class BadBody(ValueError):
    pass


def _answer(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def parse_eval(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadBody("body: not valid JSON") from None
    if not isinstance(body, dict):
        raise BadBody("body: a JSON object with attributes")
    attrs = body.get("attributes", {})
    if not isinstance(attrs, dict):
        raise BadBody("attributes: an object")
    forced = body.get("forcedVariations", {})
    if not isinstance(forced, dict) or any(
        not isinstance(v, int) or isinstance(v, bool) for v in forced.values()
    ):
        raise BadBody("forcedVariations: an object of experiment keys to variation indexes")
    features = body.get("forcedFeatures", [])
    if (
        not isinstance(features, list)
        or len(features) > 200
        or any(
            not isinstance(f, list) or len(f) != 2 or not isinstance(f[0], str) for f in features
        )
    ):
        raise BadBody("forcedFeatures: a list of [key, value] pairs (at most 200)")
    url = body.get("url", "")
    if not isinstance(url, str) or len(url) > 4000:
        raise BadBody("url: a string of at most 4,000 characters")
    return {"attributes": attrs, "forcedVariations": forced, "forcedFeatures": features, "url": url}


def eval_route(ctx: Any) -> Route:
    async def evaluate(request: Request) -> Response:
        key = request.path_params["client_key"]
        if not CLIENT_KEY.match(key):
            return _answer(422, {"error": "client_key: tr_sdk_ followed by the key"})
        try:
            body = parse_eval(await request.body())
            if "account" in body["attributes"]:  # billing's queries: off the event loop
                return _answer(200, await run_in_threadpool(remote_eval, ctx, key, body))
            return _answer(200, remote_eval(ctx, key, body))  # cached payload: CPU only
        except BadBody as e:
            return _answer(422, {"error": str(e)})
        except NotFound as e:
            return _answer(404, {"error": str(e)})

    return Route("/api/eval/{client_key}", evaluate, methods=["POST"])
