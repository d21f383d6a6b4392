"""Refusals the query layer raises, and the API shows as RFC 9457 problems.

A rule lives in one function here (a full lecture, a taken code, a cursor this list never
issued), so the refusal is raised where the rule is checked, whoever called it: a
controller turns it into ``application/problem+json``; an actor records its ``detail``.
"""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """A refusal with an HTTP status, a stable problem ``type`` and, for validation,
    every field error. Extra keyword arguments become members of the problem body."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        type_: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.type_ = type_
        self.title = title
        self.errors = errors
        self.headers = headers
        self.extensions = extensions


def field_error(field: str, message: str) -> Problem:
    return Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])


def fail_fields(errors: list[dict[str, Any]]) -> None:
    """Raise one 422 listing every field error, if there are any."""
    if errors:
        raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
