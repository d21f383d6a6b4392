"""Input hygiene of every route, in one place: the rules are ``models.limits``, applied here
to what the request carries -- path parameters, the query (cursors included) and JSON
bodies -- so that no handler checks them by hand.

* ``refuse_control_characters`` (app middleware, after routing) reads the path parameters
  and the query;
* ``CheckedRequest.json`` reads every string of a decoded JSON body, keys included;
* ``TYPE_DECODERS`` decodes ``Day`` (query and body), refusing dates out of range;
* ``DayPlugin`` documents ``Day`` as an OpenAPI ``date`` whose pattern bounds its year.

Each refusal is one 422 problem naming every field (``source``: path, query or body).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from models.errors import fail_fields
from models.limits import (
    DAY_PATTERN,
    EARLIEST_DATE,
    LATEST_DATE,
    Day,
    control_character_errors,
    decode_day,
)


def refuse_control_characters(app: ASGIApp) -> ASGIApp:
    """Refuse a request whose path parameters or query hold a control character."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            errors: list[dict[str, Any]] = []
            for name, value in (scope.get("path_params") or {}).items():
                errors.extend(control_character_errors(value, name, "path"))
            for name, value in ASGIConnection(scope).query_params.multi_items():
                errors.extend(control_character_errors(name, name, "query"))
                errors.extend(control_character_errors(value, name, "query"))
            fail_fields(errors)
        await app(scope, receive, send)

    return middleware


class CheckedRequest(Request[Any, Any, Any]):
    """The request of every route: its JSON body is checked once decoded."""

    async def json(self) -> Any:
        value = await super().json()
        fail_fields(control_character_errors(value, "", "body"))
        return value


def _is_day(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, Day)


TYPE_DECODERS = [(_is_day, decode_day)]


def dec_hook(type_: Any, value: Any) -> Any:
    """``TYPE_DECODERS`` as a msgspec ``dec_hook``, for decoding outside Litestar's own."""
    for predicate, decoder in TYPE_DECODERS:
        if predicate(type_):
            return decoder(type_, value)
    raise NotImplementedError(type_)


class DayPlugin(OpenAPISchemaPlugin):
    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return _is_day(value)

    def to_openapi_schema(self, field_definition: Any, schema_creator: Any) -> Schema:
        return Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.DATE,
            pattern=DAY_PATTERN,
            description=f"a date from {EARLIEST_DATE} to {LATEST_DATE}",
        )
