"""Lectures and their sessions: the query layer."""

from __future__ import annotations

import uuid
from typing import Any

from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Lecture as LectureTable


async def lecture_exists(scope: TenantScope, lecture_id: Any) -> uuid.UUID:
    """The lecture's id, or a 404 when it is not one of this academy's."""
    key = parse_id(LectureTable, lecture_id)
    if await scope.value("SELECT 1 FROM lecture WHERE tenant = $1 AND id = $2", key) is None:
        raise NotFoundInTenant(LectureTable, lecture_id)
    return key
