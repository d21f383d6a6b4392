"""The one upload-size guard of every multipart/JSON upload route.

A route checks the declared ``Content-Length`` before it reads anything (a client that
announces too much is refused at once), caps what it will read (``cap_body``: a chunked
body, which declares nothing, is refused as soon as it passes the limit, before it is held
whole in memory), then checks the size it decoded. Every refusal is the same 413
``/problems/too-large`` with ``max_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.types import ReceiveMessage

from models.errors import Problem

# Multipart framing around the file itself (boundaries, part headers, small fields).
FORM_OVERHEAD = 64 * 1024


def too_large(limit: int, advice: str = "", *, detail: str = "") -> Problem:
    """The 413; ``detail`` replaces the whole text, for a route that words it its own way."""
    if not detail:
        detail = f"the upload is larger than the {limit // (1024 * 1024)} MiB limit"
        detail = f"{detail}: {advice}" if advice else detail
    return Problem(413, detail, max_bytes=limit)


def refuse_declared_size(
    request: Request[Any, Any, Any], limit: int, advice: str = "", *, detail: str = ""
) -> None:
    """Refuse before reading when the declared body is over ``limit`` (plus framing)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        raise too_large(limit, advice, detail=detail)


def cap_body(
    request: Request[Any, Any, Any], limit: int, advice: str = "", *, detail: str = ""
) -> None:
    """Refuse the body once more than ``limit`` (plus framing) has arrived, whoever reads
    it (``request.body()``, ``request.form()``). The route's ``request_max_body_size`` is a
    fixed ceiling for every deployment; this is the configured limit. A declared
    ``Content-Length`` over it is refused before anything is read."""
    refuse_declared_size(request, limit, advice, detail=detail)
    receive = request.receive
    received = 0

    async def capped() -> ReceiveMessage:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit + FORM_OVERHEAD:
                raise too_large(limit, advice, detail=detail)
        return message

    request.receive = capped


def refuse_read_size(size: int, limit: int, advice: str = "", *, detail: str = "") -> None:
    """Refuse what turned out, once read, to be over ``limit``."""
    if size > limit:
        raise too_large(limit, advice, detail=detail)


def multipart_form(
    fields: dict[str, Schema | Reference],
    required: list[str],
    json: Schema | None = None,
    *,
    typed_by_content: bool = False,
) -> type[Operation]:
    """The OpenAPI operation of a route that reads its multipart form itself (to cap the
    body while it streams), so it has no ``data`` parameter to document the body from:
    ``operation_class=multipart_form(...)`` declares the form, and a generated client types
    it. A file field is ``Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)``.
    ``json``: the JSON body the route takes instead, if any. ``typed_by_content``: the
    route reads the file's type from its bytes, and refuses other files with a 415 (a
    schema cannot state what the bytes must be)."""
    content = {
        "multipart/form-data": OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.OBJECT, properties=fields, required=required)
        )
    }
    if json is not None:
        content["application/json"] = OpenAPIMediaType(schema=json)
    body = RequestBody(required=True, content=content)

    @dataclass
    class MultipartOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body
            if typed_by_content:
                refused = Reference("#/components/responses/Problem415")
                self.responses = {**(self.responses or {}), "415": refused}

    return MultipartOperation
