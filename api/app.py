"""Builds the Litestar application: ``create_app()``.

Run: ``uvicorn api.app:create_app --factory`` (``just dev`` does this for you).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator

from litestar import Litestar, Router
from litestar.datastructures import MutableScopeHeaders
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from actors.messaging import pump
from api import attendance, grades, lectures, me, users
from api import excel as excel_api
from api import messaging as messaging_api
from api import omr as omr_api
from api import ops as ops_api
from api import videos as videos_api
from api.auth import AuthController, provide_principal, provide_scope, purge_expired
from api.errors import EXCEPTION_HANDLERS
from api.health import health
from api.jobs import JobController
from api.list_cache import invalidate_after_write, listening
from api.students import StudentController
from models.db import DB, close_pool, configure_db, run_exclusively_forever, start_pool
from ops.logging import bound, configure_logging, log_event
from ops.settings import get_settings

log = logging.getLogger("api")

SWAGGER_STATIC = "/schema/static"


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Binds ``request_id`` (the caller's ``X-Request-ID``, or a new one) to every log
    record of the request and echoes it back in the response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming if incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)["X-Request-ID"] = request_id
            await send(message)

        with bound(request_id=request_id):
            try:
                await app(scope, receive, send_with_id)
            finally:
                path = scope.get("path", "")
                log_event(
                    log,
                    "HTTP_REQUEST",
                    # Load balancers poll /health every few seconds: keep it out of INFO.
                    logging.DEBUG if path == "/health" else logging.INFO,
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )

    return middleware


async def _sweep() -> None:
    from actors.jobs import sweep_unsent

    await sweep_unsent()
    await purge_expired()


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _invalidate_after_write(message: Message, scope: Scope) -> None:
    # Before the response leaves: the handler has committed, and the client's next read
    # must not be a page cached before its own write.
    if message["type"] == "http.response.start" and scope.get("method") not in SAFE_METHODS:
        principal = scope.get("state", {}).get("principal")
        if principal is not None:
            invalidate_after_write(principal.tenant_id)


def create_app(*, pool: bool = True, sweeper: bool = True) -> Litestar:
    settings = get_settings()
    configure_logging(settings.log_level)
    configure_db()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from actors.broker import setup_broker

        if dramatiq_broker_missing():
            setup_broker(worker=False)
        if pool:
            await start_pool()
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(listening(DB.config["dsn"]))
        # Background rounds, each in one API process at a time: committed-but-unsent jobs
        # and stale login rows; outbox events (absences, scores...) to the messaging workers.
        rounds = (
            [
                ("academy.job_sweeper", max(10.0, settings.job_sweep_after_seconds / 5), _sweep),
                ("academy.messaging_pump", settings.messaging_outbox_poll_seconds, pump),
            ]
            if sweeper
            else []
        )
        tasks = [asyncio.create_task(run_exclusively_forever(*r)) for r in rounds]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await stack.aclose()
            if pool:
                await close_pool()

    api_v1 = Router(
        path="/",
        route_handlers=[
            AuthController,
            JobController,
            StudentController,
            *lectures.CONTROLLERS,
            *attendance.CONTROLLERS,
            *grades.CONTROLLERS,
            *me.CONTROLLERS,
            *users.CONTROLLERS,
            *messaging_api.CONTROLLERS,
            *ops_api.CONTROLLERS,
            *excel_api.CONTROLLERS,
            *omr_api.CONTROLLERS,
            *videos_api.CONTROLLERS,
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "tenant_scope": Provide(provide_scope),
        },
    )
    openapi = OpenAPIConfig(
        title="academy API",
        version="1.0.0",
        description="Backend for private academies (학원). Errors are RFC 9457 problem+json.",
        path="/schema",
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{SWAGGER_STATIC}/swagger-ui-bundle.js",
                css_url=f"{SWAGGER_STATIC}/swagger-ui.css",
                standalone_preset_js_url=f"{SWAGGER_STATIC}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_STATIC}/favicon-32x32.png'>",
            )
        ],
    )
    app = Litestar(
        route_handlers=[
            health,
            ops_api.metrics,
            api_v1,
            create_static_files_router(
                path=SWAGGER_STATIC, directories=[swagger_ui_path], include_in_schema=False
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi,
        lifespan=[lifespan],
        before_send=[_invalidate_after_write],
        # Our JSON logging (configure_logging) stays in charge of every logger.
        logging_config=None,
        debug=False,
    )
    # Wrapped around the whole app, not as route middleware: Litestar runs app middleware
    # only for matched routes, and 404/405 answers need their request id too.
    app.asgi_handler = request_id_middleware(app.asgi_handler)
    return app


def dramatiq_broker_missing() -> bool:
    import dramatiq.broker

    return dramatiq.broker.global_broker is None
