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


def page_schema(item: type) -> KwargDefinition:
    """Names the OpenAPI component of ``Page[item]`` ``<Item>Page``:
    ``LecturePage = Annotated[Page[Lecture], page_schema(Lecture)]``.

    Left alone, Litestar names a generic after the module path of its argument
    (``Page_models.lectures.Lecture_``): a name that changes whenever a Struct moves, and
    that no client should have to spell."""
    return KwargDefinition(schema_component_key=f"{item.__name__}Page")
