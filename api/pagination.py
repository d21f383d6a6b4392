"""Page size limits of every list. Pages and cursors themselves are ``models.pages``."""

from __future__ import annotations

from litestar.params import KwargDefinition

from models.errors import field_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise field_error("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def component(key: str) -> KwargDefinition:
    """Metadata that names a response type's OpenAPI component:
    ``Annotated[Page[Lecture], component("Page_api.lectures.Lecture_")]``.

    Litestar names a generic after the module of its argument (``Page_<module>.<Item>_``),
    so a page's item Struct moving from ``api/`` to ``models/`` would rename the published
    component; this keeps the name clients generated their code against."""
    return KwargDefinition(schema_component_key=key)
