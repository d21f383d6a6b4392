"""Input hygiene of every route, in one place: the rules are ``models.limits``, applied here
to what the request carries -- path parameters, the query (cursors included) and JSON
bodies -- so that no handler checks them by hand.

* ``refuse_control_characters`` (app middleware, after routing) reads the path parameters
  and the query;
* ``CheckedRequest.json`` reads every string of a decoded JSON body, keys included;
* ``TYPE_DECODERS`` decodes ``Day`` (query and body), refusing dates out of range;
* ``DayPlugin`` documents ``Day`` as a string whose pattern is exactly its dates.

Each refusal is one 422 problem naming every field (``source``: path, query or body).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from models.errors import fail_fields
from models.limits import (
    DAY_PATTERN,
    EARLIEST_DATE,
    LATEST_DATE,
    PATTERN_MESSAGES,
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
    """The request of every route: its JSON body is checked once decoded -- its text, and
    its fields against the route's body Struct as JSON types (``struct_body_errors``)."""

    async def json(self) -> Any:
        value = await super().json()
        fail_fields(control_character_errors(value, "", "body"))
        fail_fields(struct_body_errors(self.scope, value))
        return value


_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def struct_body_errors(scope: Any, raw: Any) -> list[dict[str, Any]]:
    """Every field error of a JSON body the route declares as a msgspec ``Struct``, each
    field checked on its own (msgspec stops at the first error), strictly: a JSON body has
    JSON's types, so ``0`` is not ``false`` nor ``"1"`` a number, as its schema says.

    (Litestar converts a body leniently, as it must for query strings.) ``[]`` for a body
    that is not an object, or a route whose body is not a Struct."""
    handler = scope.get("route_handler")
    field = getattr(handler, "parsed_data_field", None)
    struct = getattr(field, "annotation", None)
    if not (isinstance(struct, type) and issubclass(struct, msgspec.Struct)):
        return []
    if not isinstance(raw, dict):
        return []
    body = _integral(raw)
    try:
        # The common case, a good body, costs one conversion; only a bad one is taken
        # apart field by field to name every error.
        msgspec.convert(body, struct, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError:
        return _struct_errors(struct, body, "")
    return []


def _integral(value: Any) -> Any:
    """``value`` with every whole float as an int: JSON Schema's ``integer`` takes ``20.0``
    and so does the API (msgspec, strict, would not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _list_item_struct(type_: Any) -> type[msgspec.Struct] | None:
    """The Struct of a ``list[Struct]`` field (``| UnsetType`` allowed), else None."""
    info = msgspec.inspect.type_info(type_)  # drops ``UnsetType``
    if isinstance(info, msgspec.inspect.ListType) and isinstance(
        info.item_type, msgspec.inspect.StructType
    ):
        return info.item_type.cls
    return None


def _struct_errors(
    struct: type[msgspec.Struct], raw: dict[Any, Any], prefix: str
) -> list[dict[str, Any]]:
    """Every field of ``raw`` checked against ``struct`` on its own; a list of Structs
    item by item, so every bad row of a bulk body is named."""
    errors: list[dict[str, Any]] = []
    known: set[str] = set()
    for info in msgspec.structs.fields(struct):
        name = f"{prefix}{info.encode_name}"
        known.add(info.encode_name)
        if info.encode_name not in raw:
            if info.required:
                errors.append(_body_error(name, "Object missing required field"))
            continue
        value = raw[info.encode_name]
        try:
            msgspec.convert(value, info.type, strict=True, dec_hook=dec_hook)
        except msgspec.ValidationError as exc:
            rows: list[dict[str, Any]] = []
            if (item := _list_item_struct(info.type)) is not None and isinstance(value, list):
                for i, row in enumerate(value):
                    if isinstance(row, dict):
                        rows += _struct_errors(item, row, f"{name}[{i}].")
                    else:
                        rows.append(_body_error(f"{name}[{i}]", "Expected `object`"))
            if rows:
                errors += rows
                continue
            match = _AT_PATH.match(str(exc))
            message, path = (match["message"], match["path"] or "") if match else (str(exc), "")
            errors.append(_body_error(f"{name}{path}", message))
    if struct.__struct_config__.forbid_unknown_fields:
        unknown = [str(key) for key in raw if key not in known]
        errors.extend(
            _body_error(f"{prefix}{key}", "Object contains unknown field") for key in unknown
        )
    return errors


def _body_error(field: str, message: str) -> dict[str, Any]:
    return {"field": field, "message": _PATTERN_MESSAGES.get(message, message), "source": "body"}


# msgspec names the regular expression a text failed; the client reads what it means.
_PATTERN_MESSAGES = {
    f"Expected `str` matching regex {pattern!r}": text for pattern, text in PATTERN_MESSAGES.items()
}


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
        # The pattern alone, not ``format: date`` too: it states the same dates and the
        # range besides, and a generator given both draws dates mostly out of range.
        return Schema(
            type=OpenAPIType.STRING,
            pattern=DAY_PATTERN,
            description=f"a date (YYYY-MM-DD) from {EARLIEST_DATE} to {LATEST_DATE}",
        )
