"""The OpenAPI 3.1 document at ``/schema/openapi.json`` and the docs page at ``/schema``.

The page is Swagger UI 5 (it reads OpenAPI 3.1; Swagger UI 3 and 4 refuse the document),
served from the pinned ``swagger-ui-bundle-v2`` wheel, so it works with no CDN and no
internet. Its "Authorize" button takes the access token of ``POST /api/v1/auth/login``: the
operations that authenticate the caller carry the ``BearerAuth`` requirement, so Swagger UI
sends ``Authorization: Bearer <token>`` with them.
"""

from __future__ import annotations

from collections.abc import Iterator

from litestar import Litestar, Router
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

SCHEMA_PATH = "/schema"
STATIC_PATH = f"{SCHEMA_PATH}/static"
BEARER = "BearerAuth"
# The dependency every authenticated handler reaches (``api.auth.provide_principal``).
PRINCIPAL = "principal"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="academy API",
        version="1.0.0",
        description=(
            "Backend for private academies (학원). Errors are RFC 9457 problem+json.\n\n"
            "To try calls: `POST /api/v1/auth/login`, then **Authorize** with its "
            "`access_token`."
        ),
        path=SCHEMA_PATH,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="The `access_token` of `POST /api/v1/auth/login`.",
                )
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
                css_url=f"{STATIC_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{STATIC_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{STATIC_PATH}/favicon-32x32.png'>",
            )
        ],
    )


def static_assets() -> Router:
    """Swagger UI's scripts, styles and icons, from the wheel."""
    return create_static_files_router(
        path=STATIC_PATH, directories=[swagger_ui_path], include_in_schema=False
    )


def _needs(handler: HTTPRouteHandler, wanted: str) -> bool:
    """Whether the handler's parameters, or the dependencies they pull in, reach ``wanted``."""
    provided = handler.resolve_dependencies()
    todo, seen = list(handler.parsed_fn_signature.parameters), set()
    while todo:
        name = todo.pop()
        if name == wanted:
            return True
        if name in seen or name not in provided:
            continue
        seen.add(name)
        todo.extend(provided[name].parsed_fn_signature.parameters)
    return False


def _operations(app: Litestar) -> Iterator[tuple[HTTPRouteHandler, str, str]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.resolve_include_in_schema():
                for method in handler.http_methods:
                    yield handler, route.path_format or "/", method.lower()


def document_bearer_auth(app: Litestar) -> None:
    """Adds the ``BearerAuth`` requirement to every operation whose handler authenticates the
    caller, found from what the handler depends on, the way the request itself finds it.

    Not declared per router: Litestar adds security requirements layer by layer and cannot
    take one away, and the public routes (login, refresh, webhooks) share their routers with
    private ones. The document is built here, at start-up, instead of on the first visit of
    the docs (about half a second), so a document Litestar cannot build stops the start.
    """
    document = app.openapi_schema
    for handler, path, method in _operations(app):
        operation = getattr(document.paths[path], method, None) if document.paths else None
        if operation is not None and _needs(handler, PRINCIPAL):
            operation.security = [{BEARER: []}]
