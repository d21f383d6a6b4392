"""Guardians (보호자) as a resource of their own: the query layer.

A guardian is one person per phone number within an academy, shared by siblings: every
student links to the same row (``student_guardian``). Changing the row is therefore
changing it for every sibling at once; the student read model (``guardians_json``) follows
through the ``guardian_upd`` trigger, and the student list's cache through its
notification.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec

from models.db import transaction
from models.errors import Problem
from models.pages import Page, Params, as_text, as_uuid, keyset, keyset_page
from models.scope import TenantScope
from models.students import STUDENT_COLUMNS, Student, containing
from models.tables import Guardian as GuardianTable


class GuardianDetail(msgspec.Struct):
    id: uuid.UUID
    name: str
    phone: str
    # Live (not soft-deleted) students linked to this guardian.
    student_count: int
    created_at: dt.datetime


class GuardianFilter(msgspec.Struct, kw_only=True):
    """A search already told apart: a phone tail (digits) or a substring of the name."""

    phone_tail: str | None = None
    text: str | None = None


_SELECT = """
    SELECT g.id, g.name, g.phone, g.created_at,
           (SELECT count(*) FROM student_guardian sg JOIN student s ON s.id = sg.student
            WHERE sg.guardian = g.id AND s.deleted_at IS NULL)::int AS student_count
    FROM guardian g
"""
_BY_NAME = keyset(("g.name", as_text), ("g.id", as_uuid))
_STUDENTS_BY_NAME = keyset(("s.name", as_text), ("s.id", as_uuid))


async def list_guardians(
    scope: TenantScope, found: GuardianFilter, *, limit: int, cursor: str | None
) -> Page[GuardianDetail]:
    """One page of the academy's guardians by name."""
    arg = Params()
    where = ["g.tenant = $1"]
    if found.phone_tail:
        where.append(f"replace(g.phone, '-', '') LIKE {arg('%' + found.phone_tail)}")
    elif found.text:
        where.append(f"g.name ILIKE {arg(containing(found.text))}")
    return await keyset_page(
        scope,
        GuardianDetail,
        select=_SELECT,
        where=where,
        params=arg,
        key=_BY_NAME,
        cursor=cursor,
        limit=limit,
    )


async def get_guardian(scope: TenantScope, guardian_id: Any) -> GuardianDetail:
    """One guardian of the academy; a 404 for any other id."""
    return await scope.one(
        GuardianDetail,
        GuardianTable,
        f"{_SELECT} WHERE g.tenant = $1 AND g.id = $2",
        guardian_id,
    )


@asynccontextmanager
async def _phone_checked() -> AsyncIterator[None]:
    """A phone another guardian of the academy has is a 409: the unique index is the check,
    so two writers cannot both take one number."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        if getattr(exc, "constraint_name", None) == "guardian_tenant_phone_uniq":
            raise Problem(
                409,
                "another guardian of this academy already has this phone number",
                type_="/problems/guardian-phone-taken",
                errors=[{"field": "phone", "message": "already another guardian's number"}],
            ) from None
        raise


async def update_guardian(
    scope: TenantScope, guardian_id: Any, values: dict[str, Any]
) -> GuardianDetail:
    """Change ``name`` and/or ``phone`` (checked values) of one guardian, for all of the
    students who share them; a 404 for an id not in the academy."""
    current = await get_guardian(scope, guardian_id)
    if values:
        arg = Params(current.id)
        sets = ", ".join(f"{column} = {arg(value)}" for column, value in values.items())
        async with transaction(), _phone_checked():
            await scope.execute(
                f"UPDATE guardian SET {sets} WHERE tenant = $1 AND id = $2", *arg.values
            )
    return await get_guardian(scope, current.id)


async def students_of(
    scope: TenantScope, guardian_id: Any, *, limit: int, cursor: str | None
) -> Page[Student]:
    """The live students a guardian of the academy is linked to, by name; a 404 for a
    guardian not in the academy."""
    current = await get_guardian(scope, guardian_id)
    return await keyset_page(
        scope,
        Student,
        select=f"SELECT {STUDENT_COLUMNS} FROM student s "
        "JOIN student_guardian sg ON sg.student = s.id",
        where=["s.tenant = $1", "sg.guardian = $2", "s.deleted_at IS NULL"],
        params=Params(current.id),
        key=_STUDENTS_BY_NAME,
        cursor=cursor,
        limit=limit,
    )
