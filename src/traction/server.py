"""The FastAPI app factory: one process serves tracking, admin API, ops and the dashboard."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from traction import __version__
from traction.analytics.service import AnalyticsBusy, QueryTooExpensive
from traction.context import Context
from traction.ingest.cors import TrackingCORS
from traction.ingest.processes import IngestProcesses
from traction.reactor_process import MOVED, ChildConfig, ReactorProcess
from traction.settings import Settings
from traction.validation import join, problems
from traction.web.api_guard import ApiGuard
from traction.web.headers import SecurityHeaders
from traction.worker import Maintenance, ReactorRunner, default_reactors

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, run_worker: bool | None = None) -> FastAPI:
    ctx = Context.open(settings)
    if settings.ingest_processes:
        ctx.ingest.processes = IngestProcesses(
            settings.ingest_processes, ctx.metrics.ingest_processes
        )
    runner: ReactorRunner | None = None
    process: ReactorProcess | None = None
    if settings.run_worker if run_worker is None else run_worker:
        reactors = default_reactors(ctx.state, ctx.catalog, ctx.billing, ctx.engage.engine)
        if settings.reactor_process:
            process = ReactorProcess(
                ChildConfig(
                    settings.resolved_state_url, settings.worker_poll_seconds,
                    log_level=settings.log_level, log_json=settings.log_json,
                ),
                ctx.events, ctx.billing.emit, ctx.metrics, ctx.catalog,
            )  # fmt: skip
            reactors = [r for r in reactors if r.name not in MOVED]
        runner = ReactorRunner(
            ctx.state,
            ctx.events,
            reactors,
            ctx.metrics,
            poll_seconds=settings.worker_poll_seconds,
            busy_share=settings.reactor_busy_share,
        )
    maintenance = Maintenance(
        [
            ("privacy", settings.maintenance_interval_seconds, ctx.privacy.maintain),
            ("billing", settings.billing_interval_seconds, ctx.billing.advance),
            ("flag schedules", settings.billing_interval_seconds, ctx.flags.apply_schedules),
            (
                "safe rollouts",
                settings.billing_interval_seconds,
                ctx.experiments.rollouts.check_all,
            ),
        ]
        if runner
        else []
    )
    # journeys on a loop of their own: a long privacy purge must not hold up due messages
    journeys = Maintenance(
        [
            ("journeys", settings.engage_interval_seconds, ctx.engage.work),
            ("journey inactivity", 300.0, ctx.engage.scan_inactive),
            ("segments", settings.segment_interval_seconds, ctx.segments.refresh_all),
            ("journey schedules", 60.0, ctx.engage.scan_schedules),
        ]
        if runner
        else []
    )

    # the scorecards kept warm (a loop of its own: a cold computation takes seconds)
    warm = Maintenance(
        [("scorecards", settings.scorecard_interval_seconds, ctx.analytics.warm)] if runner else [],
        first_at_start=True,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if process:
            process.start()
        if runner:
            runner.start()
        maintenance.start()
        journeys.start()
        warm.start()
        log.info(
            "traction started", extra={"data_dir": str(settings.data_dir), "version": __version__}
        )
        yield
        warm.stop()
        journeys.stop()
        maintenance.stop()
        if runner:
            runner.stop()
        if process:
            process.stop()
        ctx.close()
        log.info("traction stopped")

    app = FastAPI(title="Traction", version=__version__, lifespan=lifespan)
    app.state.ctx = ctx
    app.state.reactors = runner
    app.state.reactor_process = process

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = problems(exc.errors(), skip=("body",))
        return JSONResponse({"error": join(detail), "detail": detail}, status_code=422)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return JSONResponse({"error": "the JSON body is nested too deeply"}, status_code=400)

    @app.exception_handler(Exception)
    async def _last_resort(request: Request, exc: Exception) -> Response:
        """A bug: answer (never drop the connection) with an id the log carries too."""
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "unhandled error", exc_info=exc,
            extra={"error_id": error_id, "path": request.url.path, "method": request.method},
        )  # fmt: skip
        return JSONResponse(
            {"error": f"internal error {error_id}: it is logged; please report it"},
            status_code=500,
        )

    @app.exception_handler(AnalyticsBusy)
    async def _busy(request: Request, exc: AnalyticsBusy) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(QueryTooExpensive)
    async def _too_expensive(request: Request, exc: QueryTooExpensive) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """One error shape for the API ({"error": ...}); redirects and plain pages for the dashboard."""
        if exc.status_code in (301, 302, 303, 307) and exc.headers and "Location" in exc.headers:
            return RedirectResponse(exc.headers["Location"], exc.status_code)
        if request.url.path.startswith(("/api/", "/v1/")) or "json" in request.headers.get(
            "accept", ""
        ):
            return JSONResponse(
                {"error": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        from traction.web.routes import templates  # rendered, hence escaped: never echo markup

        return templates.TemplateResponse(
            request, "error.html", {"status": exc.status_code, "detail": exc.detail},
            status_code=exc.status_code,
        )  # fmt: skip

    from traction.analytics.api import router as analytics_router
    from traction.analytics.api import saved_router
    from traction.analytics.web import router as analytics_web_router
    from traction.audit.api import router as audit_router
    from traction.audit.web import router as audit_web_router
    from traction.billing.api import router as billing_router
    from traction.billing.api import webhooks as billing_webhooks
    from traction.billing.fast import usage_route
    from traction.billing.web import router as billing_web_router
    from traction.billing.web import upgrade_router
    from traction.catalog.api import router as catalog_router
    from traction.catalog.web import router as catalog_web_router
    from traction.engage.api import public as engage_public
    from traction.engage.api import router as engage_router
    from traction.engage.web import router as engage_web_router
    from traction.experiments.api import router as experiments_router
    from traction.experiments.web import router as experiments_web_router
    from traction.flags.api import router as flags_router
    from traction.flags.api import sdk as flags_sdk
    from traction.flags.fast import eval_route
    from traction.flags.web import router as flags_web_router
    from traction.identity.api import router as identity_router
    from traction.ingest.api import posthog_routes, segment_routes
    from traction.ops.api import router as ops_router
    from traction.privacy.api import router as privacy_router
    from traction.privacy.web import router as privacy_web_router
    from traction.segments.api import router as segments_router
    from traction.segments.web import router as segments_web_router
    from traction.web.routes import router as web_router
    from traction.web.routes import static_mount
    from traction.workspaces.api import router as workspace_router
    from traction.workspaces.web import router as workspace_web_router

    for route in segment_routes(ctx) + posthog_routes(ctx) + [usage_route(ctx), eval_route(ctx)]:
        app.router.routes.append(route)
    app.include_router(ops_router)
    app.include_router(workspace_router)
    app.include_router(identity_router)
    app.include_router(privacy_router)
    app.include_router(audit_router)
    app.include_router(billing_router)
    app.include_router(billing_webhooks)
    app.include_router(catalog_router)
    app.include_router(flags_router)
    app.include_router(experiments_router)
    app.include_router(segments_router)
    app.include_router(engage_router)
    app.include_router(engage_public)
    app.include_router(flags_sdk)
    app.include_router(analytics_router)
    app.include_router(saved_router)
    app.include_router(web_router)
    app.include_router(analytics_web_router)
    app.include_router(catalog_web_router)
    app.include_router(workspace_web_router)
    app.include_router(privacy_web_router)
    app.include_router(audit_web_router)
    app.include_router(segments_web_router)
    app.include_router(engage_web_router)
    app.include_router(billing_web_router)
    app.include_router(flags_web_router)
    app.include_router(experiments_web_router)
    app.include_router(upgrade_router)
    app.mount("/static", static_mount(), name="static")
    app.add_middleware(TrackingCORS)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        ApiGuard,
        max_body=lambda: settings.api_max_body_bytes,
        key_ok=lambda key: ctx.workspaces.key_info(key) is not None,
        protect_meta=lambda: settings.protect_meta_endpoints,
        session_ok=lambda cookie: ctx.workspaces.session_user(cookie) is not None,
    )
    return app
