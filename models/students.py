"""Students and their guardians: the query layer.

Reads (one student, the cursor-paged list and its search), writes (create, change, soft
delete, restore), the guardian links, and the maintenance of soft-deleted students
(deleted duplicates, the purge).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import msgspec

from models import db
from models.db import transaction
from models.enrollments import ACTIVE, lock_lectures
from models.errors import Problem
from models.pages import Keyset, Params, as_datetime, as_text, as_uuid, keyset
from models.scope import TenantScope
from models.tables import Student as StudentTable

PURGE_AFTER_DAYS = 30


class Guardian(msgspec.Struct):
    id: uuid.UUID
    name: str
    phone: str
    relation: str
    is_primary: bool


class Student(msgspec.Struct):
    id: uuid.UUID
    name: str
    phone: str | None
    school: str
    grade: str
    birth_date: dt.date | None
    memo: str
    status: str
    guardians: list[Guardian]
    enrollment_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


class ListedStudent(Student):
    """``Student`` as the list encodes it: the guardians' JSON goes out as stored."""

    # msgspec keeps an overridden field in its place (the list builds rows positionally).
    guardians: msgspec.Raw  # type: ignore[assignment]


class RawPage(msgspec.Struct):
    """A page of the hot list, encoded in one step (no per-row decode of stored JSON); the
    OpenAPI schema is ``Page[Student]``, which it matches field for field."""

    items: list[ListedStudent]
    limit: int
    next_cursor: str | None


class StudentFilter(msgspec.Struct, kw_only=True):
    """What the list is narrowed to. The search (``q``) arrives already told apart: a 초성
    query, a phone tail (digits), or a substring of the name or school."""

    initials: str | None = None
    phone_tail: str | None = None
    text: str | None = None
    school: str | None = None
    grade: str | None = None
    status: str | None = None
    lecture_id: uuid.UUID | None = None


def _columns(guardians: str) -> str:
    # In ``Student``'s field order: the list builds its rows positionally (``_listed``).
    return f"""
    s.id, s.name, s.phone, s.school, s.grade, s.birth_date, s.memo, s.status,
    {guardians} AS guardians, s.enrollment_count, s.created_at, s.updated_at, s.deleted_at
"""


# ``guardians_json`` and ``enrollment_count`` are the read model kept by triggers (see the
# "student read model" migration): the list needs no joins or per-row subqueries. One
# student decodes its guardians (the connection decodes jsonb); the list passes their JSON
# text through.
STUDENT_COLUMNS = _columns("s.guardians_json")
LISTED_COLUMNS = _columns("s.guardians_json::text")
_GUARDIANS = ListedStudent.__struct_fields__.index("guardians")

_BY_NAME = (("s.name", as_text), ("s.id", as_uuid))
_BY_CREATED = (("s.created_at", as_datetime), ("s.id", as_uuid))
SORTS: dict[str, Keyset] = {
    "name": keyset(*_BY_NAME),
    "-name": keyset(*_BY_NAME, descending=True),
    "created_at": keyset(*_BY_CREATED),
    "-created_at": keyset(*_BY_CREATED, descending=True),
    "-deleted_at": keyset(("s.deleted_at", as_datetime), ("s.id", as_uuid), descending=True),
}


async def get_student(
    scope: TenantScope, student_id: Any, *, deleted: bool | None = False
) -> Student:
    """One student with guardians; ``deleted``: only a live one (False), only a
    soft-deleted one (True), either (None). Otherwise a 404."""
    where = {False: "AND s.deleted_at IS NULL", True: "AND s.deleted_at IS NOT NULL", None: ""}[
        deleted
    ]
    return await scope.one(
        Student,
        StudentTable,
        f"SELECT {STUDENT_COLUMNS} FROM student s WHERE s.tenant = $1 AND s.id = $2 {where}",
        student_id,
    )


def _listed(record: asyncpg.Record) -> ListedStudent:
    # msgspec cannot convert text into ``Raw``, and decoding the guardians per row is the
    # cost this list exists to avoid: the columns come in field order, the JSON as it is.
    values = list(record)
    values[_GUARDIANS] = msgspec.Raw(values[_GUARDIANS])
    return ListedStudent(*values)


def containing(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards (and the escape character)
    taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
    return "%" + escaped + "%"


def _search_keys(kind: str, value: str) -> str:
    # The search keys (migration "student search keys") every match has: GIN-indexed, they
    # narrow the rows, and the search's own predicate beside them decides, unless the keys
    # decide alone (``student_search_exact``; folded away when the statement is planned).
    # Postgres plans the statement for each search's own keys: a plan for every search
    # would have to call ``student_search_query``, declared far too costly for that
    # (migration 2026-12-04 02:00), so the connection keeps the statement and one round
    # trip runs it.
    return f"s.search_keys @> student_search_query($1, '{kind}', {value})"


def _conditions(found: StudentFilter, arg: Params) -> list[str]:
    where: list[str] = []
    if found.initials:
        initials = arg(found.initials)
        where.append(_search_keys("i", initials))
        where.append(
            f"(student_search_exact('i', {initials}) OR strpos(s.name_initials, {initials}) > 0)"
        )
    elif found.phone_tail:
        # A phone tail: the student's number or any of their guardians'.
        digits = arg(found.phone_tail)
        where.append(_search_keys("p", digits))
        tail = arg("%" + found.phone_tail)
        where.append(
            f"(student_search_exact('p', {digits}) "
            f"OR replace(s.phone, '-', '') LIKE {tail} OR EXISTS ("
            "SELECT 1 FROM student_guardian sg JOIN guardian g ON g.id = sg.guardian "
            f"WHERE sg.student = s.id AND replace(g.phone, '-', '') LIKE {tail}))"
        )
    elif found.text:
        text, like = arg(found.text), arg(containing(found.text))
        where.append(_search_keys("n", text))
        where.append(
            f"(student_search_exact('n', {text}) OR s.name ILIKE {like} OR s.school ILIKE {like})"
        )
    if found.school:
        where.append(f"s.school = {arg(found.school)}")
    if found.grade:
        where.append(f"s.grade = {arg(found.grade)}")
    if found.status:
        where.append(f"s.status = {arg(found.status)}")
    if found.lecture_id:
        where.append(
            "EXISTS (SELECT 1 FROM enrollment e WHERE e.student = s.id "
            f"AND e.lecture = {arg(found.lecture_id)} AND {ACTIVE})"
        )
    return where


async def list_students(
    scope: TenantScope,
    found: StudentFilter,
    *,
    sort: str,
    limit: int,
    cursor: str | None,
    deleted: bool,
) -> RawPage:
    """One page of live (or soft-deleted) students in ``sort`` order. One statement."""
    key = SORTS[sort]
    arg = Params()
    where = ["s.tenant = $1", "s.deleted_at IS NOT NULL" if deleted else "s.deleted_at IS NULL"]
    where += _conditions(found, arg)
    after = key.after(cursor, arg)
    if after is not None:
        where.append(after)
    rows = await scope.fetch(
        f"SELECT {LISTED_COLUMNS} FROM student s WHERE {' AND '.join(where)} "
        f"ORDER BY {key.order_by} LIMIT {arg(limit + 1)}",
        *arg.values,
    )
    kept = rows[:limit]
    next_cursor = key.cursor_of(kept[-1]) if len(rows) > limit else None
    return RawPage([_listed(r) for r in kept], limit, next_cursor)


# --- writes ----------------------------------------------------------------------------

# A guardian as a write gives it: (name, phone, relation, is_primary), already checked.
GuardianLink = tuple[str, str, str, bool]


async def _replace_guardians(
    scope: TenantScope, student_id: uuid.UUID, guardians: list[GuardianLink]
) -> None:
    await scope.execute(
        "DELETE FROM student_guardian WHERE tenant = $1 AND student = $2", student_id
    )
    for name, phone, relation, is_primary in guardians:
        await scope.execute(
            """
            WITH g AS (
                INSERT INTO guardian (id, tenant, name, phone, created_at)
                VALUES (gen_random_uuid(), $1, $2, $3, now())
                ON CONFLICT (tenant, phone)
                DO UPDATE SET name = COALESCE(NULLIF(EXCLUDED.name, ''), guardian.name)
                RETURNING id
            )
            INSERT INTO student_guardian (id, tenant, student, guardian, relation, is_primary)
            SELECT gen_random_uuid(), $1, $4, g.id, $5, $6 FROM g
            """,
            name,
            phone,
            student_id,
            relation,
            is_primary,
        )


async def create_student(
    scope: TenantScope, values: dict[str, Any], guardians: list[GuardianLink]
) -> Student:
    """Insert a student (``values``: checked column values) with its guardians; a guardian
    is found by phone in the academy, or created."""
    async with transaction():
        row = scope.new(StudentTable, **values)
        await row.save()
        await _replace_guardians(scope, row.id, guardians)
    return await get_student(scope, row.id)


async def update_student(
    scope: TenantScope,
    student_id: uuid.UUID,
    values: dict[str, Any],
    guardians: list[GuardianLink] | None,
) -> Student:
    """Change the columns in ``values``; ``guardians``, unless None, replaces the list."""
    async with transaction():
        if values:
            columns = {getattr(StudentTable, k): v for k, v in values.items()}
            columns[StudentTable.updated_at] = dt.datetime.now(dt.UTC)
            await scope.update(StudentTable, columns).where(StudentTable.id == student_id)
        if guardians is not None:
            await _replace_guardians(scope, student_id, guardians)
    return await get_student(scope, student_id)


async def soft_delete_student(scope: TenantScope, student_id: Any) -> None:
    """Mark a live student deleted (restorable until the purge); a 404 otherwise."""
    current = await get_student(scope, student_id)
    now = dt.datetime.now(dt.UTC)
    await scope.update(
        StudentTable, {StudentTable.deleted_at: now, StudentTable.updated_at: now}
    ).where(StudentTable.id == current.id)


async def restore_student(scope: TenantScope, student_id: Any) -> Student:
    """Undo a soft delete. A deleted student's enrollments stay active but do not count
    against capacity; coming back must not overfill a lecture, so the lectures are locked
    (as enrolment locks them) and a full one is a 409 ``/problems/lecture-full``."""
    current = await get_student(scope, student_id, deleted=True)
    async with transaction():
        lectures = await scope.values(
            "SELECT lecture FROM enrollment WHERE tenant = $1 AND student = $2 "
            "AND status = 'active'",
            current.id,
        )
        seats = await lock_lectures(scope, lectures, seats_only=True)
        full = sorted(
            (s for s in seats.values() if s.full),
            key=lambda s: (s.title, s.id),
        )
        if full:
            raise Problem(
                409,
                "restoring would overfill: "
                + ", ".join(s.title for s in full)
                + " (drop those enrollments or raise the capacity first)",
                type_="/problems/lecture-full",
                lectures=[{"id": str(s.id), "title": s.title} for s in full],
            )
        await scope.update(
            StudentTable,
            {StudentTable.deleted_at: None, StudentTable.updated_at: dt.datetime.now(dt.UTC)},
        ).where(StudentTable.id == current.id)
    return await get_student(scope, current.id)


# --- maintenance of deleted students (every academy, or one) ------------------------------


class DuplicateGroup(msgspec.Struct):
    """Deleted students of one academy with one name and one guardian phone: ``keep`` was
    deleted first; ``remove`` are the others."""

    tenant: uuid.UUID
    name: str
    guardian_phone: str
    keep: uuid.UUID
    remove: list[uuid.UUID]


class _SameNameAndPhone(msgspec.Struct):
    tenant: uuid.UUID
    name: str
    phone: str
    ids: list[uuid.UUID]


async def find_deleted_duplicates(tenant_id: uuid.UUID | None = None) -> list[DuplicateGroup]:
    """Groups of deleted students sharing tenant + name + a guardian phone (all tenants if
    ``tenant_id`` is None). A student in two groups (two guardians) is kept or removed once."""
    found = await db.rows(
        _SameNameAndPhone,
        """
        SELECT s.tenant, s.name, g.phone,
               array_agg(s.id ORDER BY s.deleted_at, s.created_at, s.id) AS ids
        FROM student s
        JOIN student_guardian sg ON sg.student = s.id
        JOIN guardian g ON g.id = sg.guardian
        WHERE s.deleted_at IS NOT NULL AND ($1::uuid IS NULL OR s.tenant = $1)
        GROUP BY s.tenant, s.name, g.phone
        HAVING count(DISTINCT s.id) > 1
        ORDER BY s.tenant, s.name, g.phone
        """,
        tenant_id,
    )
    groups: list[DuplicateGroup] = []
    removed: set[uuid.UUID] = set()
    for same in found:
        ids = [i for i in dict.fromkeys(same.ids) if i not in removed]
        if len(ids) < 2:
            continue
        removed.update(ids[1:])
        groups.append(DuplicateGroup(same.tenant, same.name, same.phone, ids[0], ids[1:]))
    return groups


async def fix_deleted_duplicates(tenant_id: uuid.UUID | None = None) -> list[DuplicateGroup]:
    """``find_deleted_duplicates``, then delete each group's ``remove`` for good."""
    async with transaction():
        groups = await find_deleted_duplicates(tenant_id)
        ids = [i for g in groups for i in g.remove]
        if ids:
            # Only still-deleted rows: a restore that raced us wins.
            await db.execute(
                "DELETE FROM student WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL", ids
            )
    return groups


async def purge_deleted(older_than_days: int = PURGE_AFTER_DAYS, dry_run: bool = False) -> int:
    """Delete for good the students soft-deleted over ``older_than_days`` days ago (their
    enrollments, attendance and scores go with them); how many (would) go."""
    sql = (
        "FROM student WHERE deleted_at IS NOT NULL "
        "AND deleted_at < now() - make_interval(days => $1)"
    )
    async with transaction():
        if dry_run:
            return int(await db.value(f"SELECT count(*) {sql}", older_than_days))
        result = await db.execute(f"DELETE {sql}", older_than_days)
        return int(result.split()[-1])
