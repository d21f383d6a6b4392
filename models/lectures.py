"""Lectures (강의): the query layer.

Every count here is the active-enrollment rule of ``models.enrollments``, and every write
that depends on a lecture's enrollments takes the lecture lock (``lock_lecture``) first.
Sessions (회차) are ``models.sessions``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import msgspec

from models.db import transaction
from models.enrollments import active_count, lock_lecture
from models.errors import Problem
from models.limits import TimeOfDay
from models.pages import Page, Params, as_datetime, as_text, as_uuid, keyset, keyset_page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Lecture as LectureTable
from models.tables import Role

# Who may be a lecture's teacher.
TEACHER_ROLES = frozenset({Role.teacher.value, Role.owner.value, Role.admin.value})


class Slot(msgspec.Struct, forbid_unknown_fields=True):
    """A weekly slot: ``weekday`` 0 (Mon) .. 6 (Sun), ``start``/``end`` as ``"HH:MM"``."""

    weekday: Annotated[int, msgspec.Meta(ge=0, le=6)]
    start: TimeOfDay
    end: TimeOfDay


class Lecture(msgspec.Struct):
    id: uuid.UUID
    code: str | None
    title: str
    subject: str
    teacher_id: uuid.UUID | None
    teacher_name: str | None
    capacity: int | None
    schedule: list[Slot]
    start_date: dt.date | None
    end_date: dt.date | None
    status: str
    enrolled_count: int
    session_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


LECTURE_SELECT = f"""
    SELECT l.id, l.code, l.title, l.subject, l.teacher AS teacher_id, u.name AS teacher_name,
        l.capacity, l.schedule, l.start_date, l.end_date, l.status, l.created_at, l.updated_at,
        {active_count()} AS enrolled_count,
        (SELECT count(*) FROM lecture_session ls WHERE ls.lecture = l.id) AS session_count
    FROM lecture l LEFT JOIN app_user u ON u.id = l.teacher AND u.tenant = l.tenant
"""

_BY_TITLE = (("l.title", as_text), ("l.id", as_uuid))
_BY_CREATED = (("l.created_at", as_datetime), ("l.id", as_uuid))
SORTS = {
    "title": keyset(*_BY_TITLE),
    "-title": keyset(*_BY_TITLE, descending=True),
    "created_at": keyset(*_BY_CREATED),
    "-created_at": keyset(*_BY_CREATED, descending=True),
}


async def lecture_exists(scope: TenantScope, lecture_id: Any) -> uuid.UUID:
    """The lecture's id, or a 404 when it is not one of this academy's."""
    key = parse_id(LectureTable, lecture_id)
    if await scope.value("SELECT 1 FROM lecture WHERE tenant = $1 AND id = $2", key) is None:
        raise NotFoundInTenant(LectureTable, lecture_id)
    return key


async def get_lecture(scope: TenantScope, lecture_id: Any) -> Lecture:
    """One lecture with its counts and teacher's name; a 404 when it is not here."""
    return await scope.one(
        Lecture,
        LectureTable,
        f"{LECTURE_SELECT} WHERE l.tenant = $1 AND l.id = $2",
        lecture_id,
    )


async def list_lectures(
    scope: TenantScope,
    *,
    text: str | None,
    status: str | None,
    teacher_id: uuid.UUID | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> Page[Lecture]:
    """One query per page: counts and the teacher's name come from the same statement.
    ``text`` matches title, subject or code (substring, case-insensitive)."""
    arg = Params()
    where = ["l.tenant = $1"]
    if text:
        like = arg("%" + text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%")
        where.append(f"(l.title ILIKE {like} OR l.subject ILIKE {like} OR l.code ILIKE {like})")
    if status:
        where.append(f"l.status = {arg(status)}")
    if teacher_id:
        where.append(f"l.teacher = {arg(teacher_id)}")
    return await keyset_page(
        scope,
        Lecture,
        select=LECTURE_SELECT,
        where=where,
        params=arg,
        key=SORTS[sort],
        cursor=cursor,
        limit=limit,
    )


async def can_teach(scope: TenantScope, user_id: uuid.UUID) -> bool:
    """Whether the user is an active teacher, owner or admin of this academy (False for
    a user of another academy, or none)."""
    role = await scope.value(
        "SELECT role FROM app_user WHERE tenant = $1 AND id = $2 AND is_active", user_id
    )
    return role in TEACHER_ROLES


# --- writes ----------------------------------------------------------------------------


@asynccontextmanager
async def _code_checked() -> AsyncIterator[None]:
    """A taken code is a 409 ``/problems/lecture-code-taken`` (the unique index is the
    check, so two writers cannot both take one code)."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if getattr(exc, "constraint_name", None) == "lecture_tenant_code_uniq":
            raise Problem(
                409,
                "another lecture of this academy already uses this code",
                type_="/problems/lecture-code-taken",
                errors=[{"field": "code", "message": "already used by another lecture"}],
            ) from None
        raise


async def create_lecture(scope: TenantScope, values: dict[str, Any]) -> Lecture:
    """Insert a lecture from checked column values."""
    row = scope.new(LectureTable, **values)
    async with _code_checked():
        await row.save()
    return await get_lecture(scope, row.id)


async def update_lecture(
    scope: TenantScope, lecture_id: uuid.UUID, values: dict[str, Any]
) -> Lecture:
    """Change the columns in ``values`` under the lecture lock. Lowering ``capacity``
    below the active enrollments is a 409 ``/problems/capacity-below-enrolled``."""
    async with _code_checked(), transaction():
        lecture = await lock_lecture(scope, lecture_id)
        capacity = values.get("capacity")
        # Under the lecture lock: no enrolment can slip in between.
        if capacity is not None and lecture.active > capacity:
            raise Problem(
                409,
                f"{lecture.active} students are enrolled; capacity cannot be {capacity}",
                type_="/problems/capacity-below-enrolled",
                errors=[{"field": "capacity", "message": f"below the {lecture.active} enrolled"}],
            )
        if values:
            columns = {getattr(LectureTable, k): v for k, v in values.items()}
            columns[LectureTable.updated_at] = dt.datetime.now(dt.UTC)
            await scope.update(LectureTable, columns).where(LectureTable.id == lecture.id)
    return await get_lecture(scope, lecture.id)


async def delete_lecture(scope: TenantScope, lecture_id: Any) -> None:
    """Delete a lecture with its sessions and dropped enrollments, under its lock (so no
    enrolment lands between the check and the delete).

    Refused with a 409 while it has active enrollments (``/problems/lecture-has-students``)
    and once attendance or exams were recorded for it (``/problems/lecture-has-records``):
    the foreign keys cascade, so deleting would silently erase that history."""
    async with transaction():
        lecture = await lock_lecture(scope, lecture_id)
        if lecture.active:
            raise Problem(
                409,
                f"the lecture has {lecture.active} active enrollment(s); drop them first",
                type_="/problems/lecture-has-students",
            )
        has_records = await scope.value(
            """
            SELECT EXISTS (SELECT 1 FROM attendance a
                             JOIN lecture_session ls ON ls.id = a.session
                            WHERE a.tenant = $1 AND ls.lecture = $2)
                OR EXISTS (SELECT 1 FROM exam x WHERE x.tenant = $1 AND x.lecture = $2)
            """,
            lecture.id,
        )
        if has_records:
            raise Problem(
                409,
                "the lecture has attendance or exam records; close it instead",
                type_="/problems/lecture-has-records",
            )
        await scope.execute("DELETE FROM lecture WHERE tenant = $1 AND id = $2", lecture.id)
