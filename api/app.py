"""Builds the Litestar application: ``create_app()``.

Run: ``uvicorn api.app:create_app --factory`` (``just dev`` does this for you).

The API serves requests only: the background rounds (job sweeper, messaging pump, purge
of stale login rows) run in the scheduler process, ``python -m ops.commands.scheduler``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import dramatiq.broker
from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from actors.broker import setup_broker
from api import attendance, grades, lectures, me, users
from api import excel as excel_api
from api import messaging as messaging_api
from api import omr as omr_api
from api import ops as ops_api
from api import videos as videos_api
from api import watch as watch_api
from api.auth import AuthController, provide_principal, provide_scope
from api.errors import EXCEPTION_HANDLERS
from api.guardians import GuardianController
from api.health import health
from api.hygiene import TYPE_DECODERS, CheckedRequest, DayPlugin, refuse_control_characters
from api.job_events import JOB_EVENTS
from api.jobs import JobController
from api.list_cache import CACHE_SUBSCRIBERS
from api.listening import listening
from api.openapi import (
    document_bearer_auth,
    document_input_hygiene,
    document_links,
    document_maximum,
    document_problems,
    openapi_config,
    static_assets,
)
from api.students import StudentController
from models.db import close_pool, configure_db, direct_dsn, start_pool
from ops.logging import bound, configure_logging, log_event
from ops.processes import settle_heap
from ops.settings import Settings, get_settings

log = logging.getLogger("api")


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Binds ``request_id`` (the caller's ``X-Request-ID``, or a new one) to every log
    record of the request and echoes it back in the response."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        incoming = next(
            (v for k, v in scope.get("headers") or () if k == b"x-request-id"), b""
        ).decode("latin-1")[:64]
        # 32 random hex digits, as ``uuid4().hex`` was, for less than half its cost.
        request_id = incoming if incoming.replace("-", "").isalnum() else os.urandom(16).hex()
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


def client_address_middleware(app: ASGIApp, trusted: tuple[str, ...]) -> ASGIApp:
    """The client address of a request (``scope["client"]``, which the per-client login
    limit counts) is the connecting peer's, unless that peer is a proxy listed in
    ``FORWARDED_ALLOW_IPS``: then it is the last address its X-Forwarded-For names that
    is not itself a trusted proxy. The server runs with ``--no-proxy-headers``, so this is
    the only place a forwarded header is believed."""
    if not trusted:
        return app
    # The two libraries spell the same ASGI types differently.
    return cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=list(trusted)))


async def _allow_every_method(message: Message, scope: Scope) -> None:
    """``Allow`` of an ``OPTIONS`` answer names every method of the path. Litestar builds
    that answer when the path's first handler is registered and does not widen it for the
    handlers of the same path registered after it (another controller, another method)."""
    if (
        message["type"] != "http.response.start"
        or scope.get("method") != "OPTIONS"
        or getattr(scope.get("route_handler"), "handler_name", None) != "options_handler"
    ):
        return
    template = scope.get("path_template")
    for route in scope["app"].routes:
        if isinstance(route, HTTPRoute) and template in (route.path, route.path_format):
            MutableScopeHeaders.from_message(message)["Allow"] = ", ".join(sorted(route.methods))
            return


async def _authorize_in_place(self: HTTPRouteHandler, connection: Any) -> None:
    """Litestar's ``authorize_connection`` without the copy: it hands every guard a
    ``copy`` of the route handler, on every request (a fifth of the CPU of a cached
    heartbeat's own handling went to those copies); ours only read the connection."""
    for guard in self.resolve_guards():
        await guard(connection, self)  # type: ignore[misc]


# The handler classes made, by the class they stand in for (an app built again in this
# process finds its handlers' classes made already).
_UNCOPIED: dict[type[HTTPRouteHandler], type[HTTPRouteHandler]] = {}


def _uncopied(handler_class: type[HTTPRouteHandler]) -> type[HTTPRouteHandler]:
    """``handler_class`` with ``_authorize_in_place``."""
    if handler_class in _UNCOPIED.values():
        return handler_class
    if handler_class not in _UNCOPIED:
        namespace = {"__slots__": (), "authorize_connection": _authorize_in_place}
        # A subclass of the decorators' classes (``get``, ``post``...), the one way to keep
        # the instance's layout: Litestar warns against subclassing them for routes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            made = type(handler_class.__name__, (handler_class,), namespace)
        _UNCOPIED[handler_class] = made
    return _UNCOPIED[handler_class]


def _guards_without_copies(app: Litestar) -> None:
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler, _ in route.route_handler_map.values():
                handler.__class__ = _uncopied(type(handler))


def _listener() -> contextlib.AbstractAsyncContextManager[None]:
    """The process's LISTEN connection, on the direct URL (a transaction pooler would lend
    the session to others between statements and drop the LISTEN). Behind a pooler with no
    direct URL there is none: the list caches stay off and job progress is polled."""
    dsn = direct_dsn()
    if not dsn:
        log.warning("DATABASE_POOLED without DATABASE_DIRECT_URL: list caches off, no LISTEN")
        return contextlib.nullcontext()
    return listening(dsn, [*CACHE_SUBSCRIBERS, JOB_EVENTS])


def _lifespan(pool: bool) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """Start-up and shutdown: the broker the API enqueues on, the connection pool, the
    one listener that keeps the list caches honest and pushes job progress, and the
    heartbeats written behind (stored before the pool closes)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if dramatiq.broker.global_broker is None:
            setup_broker(worker=False)
        if pool:
            await start_pool()
        try:
            async with _listener(), watch_api.writing_behind():
                settle_heap()
                yield
        finally:
            if pool:
                await close_pool()

    return lifespan


def _api_router() -> Router:
    """Every ``/api/v1`` controller, with the caller's principal and tenant scope."""
    return Router(
        path="/",
        route_handlers=[
            AuthController,
            JobController,
            StudentController,
            GuardianController,
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


# What the SPAs send beyond the CORS-safelisted headers, and the response headers their code
# may read (pages carry their cursor in the body, so there are no pagination headers).
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "X-Request-ID"]
CORS_EXPOSED_HEADERS = ["X-Request-ID", "Retry-After"]


def cors_config(settings: Settings) -> CORSConfig | None:
    """Cross-origin access for the browsers of ``CORS_ALLOWED_ORIGINS``; None (same origin
    only, no CORS headers at all) when it is empty. The HLS edge is another server and
    answers its own CORS."""
    if not settings.cors_allowed_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_allowed_origins),
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=CORS_REQUEST_HEADERS,
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=CORS_EXPOSED_HEADERS,
        max_age=settings.cors_max_age_seconds,
    )


def create_app(*, pool: bool = True) -> Litestar:
    """The application. ``pool=False`` leaves the connection pool to the caller (tests).
    Background rounds (sweeper, messaging pump, purges) are not the API's: they run in the
    scheduler process (``ops.commands.scheduler``)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    configure_db()
    app = Litestar(
        route_handlers=[
            health,
            ops_api.metrics,
            _api_router(),
            static_assets(),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        # Input hygiene of every route (api.hygiene): after routing, so path parameters
        # are known and refusals are problems like any other.
        middleware=[refuse_control_characters],
        request_class=CheckedRequest,
        type_decoders=TYPE_DECODERS,
        plugins=[DayPlugin()],
        openapi_config=openapi_config(),
        cors_config=cors_config(settings),
        lifespan=[_lifespan(pool)],
        before_send=[_allow_every_method],
        # Our JSON logging (configure_logging) stays in charge of every logger.
        logging_config=None,
        debug=False,
    )
    # Wrapped around the whole app, not as route middleware: Litestar runs app middleware
    # only for matched routes, and 404/405 answers need their request id too.
    app.asgi_handler = request_id_middleware(
        client_address_middleware(app.asgi_handler, settings.forwarded_allow_ips)
    )
    _guards_without_copies(app)
    document_bearer_auth(app)
    document_problems(app)
    document_input_hygiene(app)
    document_links(app)
    document_maximum(app, "VideoCreate", "size_bytes", settings.video_max_upload_bytes)
    return app
