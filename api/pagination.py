"""Page size limits of every list. Pages and cursors themselves are ``models.pages``."""

from __future__ import annotations

from models.errors import field_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise field_error("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit
