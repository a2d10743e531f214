"""/healthz (the process answers), /readyz (stores and writer work), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ctx = request.app.state.ctx
    checks: dict[str, str] = {}
    for name, probe in (("state_store", ctx.state.ping), ("event_store", ctx.events.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as e:
            checks[name] = f"error: {e}"
    checks["writer"] = (
        "ok"
        if ctx.writer.alive and ctx.writer.last_commit_ok
        else "error: writer is not committing"
    )
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
