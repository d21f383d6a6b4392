"""RFC 9457 problem details for every error the API returns.

``type`` is a stable, relative URI per kind of problem; clients switch on it, not on the
human-readable ``title``/``detail``. Validation problems list every field error.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.status_codes import (
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from api.hygiene import struct_body_errors
from models.errors import Problem, field_error
from models.scope import NotFoundInTenant

# Re-exported: controllers raise the same refusals the query layer does.
__all__ = ["EXCEPTION_HANDLERS", "Problem", "field_error", "problem"]

log = logging.getLogger("api")

PROBLEM_JSON = "application/problem+json"

TYPES: dict[int, tuple[str, str]] = {
    400: ("/problems/bad-request", "Bad request"),
    HTTP_401_UNAUTHORIZED: ("/problems/unauthenticated", "Authentication required"),
    HTTP_403_FORBIDDEN: ("/problems/forbidden", "Not allowed"),
    HTTP_404_NOT_FOUND: ("/problems/not-found", "Not found"),
    405: ("/problems/method-not-allowed", "Method not allowed"),
    HTTP_409_CONFLICT: ("/problems/conflict", "Conflict"),
    413: ("/problems/too-large", "Request too large"),
    415: ("/problems/unsupported-file", "Unsupported file"),
    HTTP_422_UNPROCESSABLE_ENTITY: ("/problems/validation", "Validation failed"),
    HTTP_429_TOO_MANY_REQUESTS: ("/problems/rate-limited", "Too many requests"),
    503: ("/problems/unavailable", "Service unavailable"),
}


def problem(
    request: Request[Any, Any, Any],
    status: int,
    detail: str,
    *,
    type_: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response[dict[str, Any]]:
    default_type, default_title = TYPES.get(status, ("about:blank", "Error"))
    body: dict[str, Any] = {
        "type": type_ or default_type,
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    if errors is not None:
        body["errors"] = errors
    body.update(extensions)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: ValidationException) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    extra = exc.extra if isinstance(exc.extra, list) else [exc.extra] if exc.extra else []
    for item in extra:
        if isinstance(item, dict):
            out.append(
                {
                    "field": item.get("key") or "body",
                    "message": item.get("message", str(item)),
                    "source": item.get("source", "body"),
                }
            )
        else:
            out.append({"field": "body", "message": str(item), "source": "body"})
    return out or [{"field": "body", "message": exc.detail, "source": "body"}]


def _body_struct_errors(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    """Every field error of a JSON body declared as a msgspec ``Struct``
    (``api.hygiene.struct_body_errors``): msgspec, and so Litestar, stops at the first one.
    Returns ``[]`` when that finds nothing (e.g. a ``__post_init__`` check failed), and the
    caller keeps Litestar's own error."""
    raw = ScopeState.from_scope(request.scope).json
    if raw is Empty:
        return []
    return struct_body_errors(request.scope, raw)


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    headers = dict(exc.headers or {})
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        if any(e["source"] == "body" for e in errors) and (body := _body_struct_errors(request)):
            errors = [e for e in errors if e["source"] != "body"] + body
        return problem(
            request,
            HTTP_422_UNPROCESSABLE_ENTITY,
            f"{len(errors)} field error(s)",
            errors=errors,
            headers=headers,
        )
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", "Bearer")
    return problem(request, exc.status_code, exc.detail, headers=headers)


def handle_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return problem(
        request,
        exc.status_code,
        exc.detail,
        type_=exc.type_,
        title=exc.title,
        errors=exc.errors,
        headers=dict(exc.headers or {}),
        **exc.extensions,
    )


def handle_not_in_tenant(
    request: Request[Any, Any, Any], exc: NotFoundInTenant
) -> Response[dict[str, Any]]:
    return problem(request, HTTP_404_NOT_FOUND, str(exc))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem(
        request, HTTP_500_INTERNAL_SERVER_ERROR, "internal error", type_="/problems/internal"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: handle_http,
    Problem: handle_problem,
    NotFoundInTenant: handle_not_in_tenant,
    Exception: handle_unexpected,
}
