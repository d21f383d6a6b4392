"""Students and their guardians: CRUD, search (name, 초성, phone tail, school), cursor
pages, soft delete / restore, and the deleted-duplicates tools."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import msgspec
from litestar import Controller, MediaType, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import Principal, require_admin, require_roles, require_staff
from api.errors import Problem
from api.lectures import ACTIVE_COUNT
from api.list_cache import STUDENT_LIST
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import transaction
from models.pages import Page, as_datetime, as_text, as_uuid, decode_cursor_as, page_of
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import GuardianRelation, Role, StudentStatus
from models.tables import Student as StudentRow
from ops.commands import students as student_ops
from pipelines.korean import (
    InvalidPhone,
    clean_text,
    initials,
    is_initials_query,
    normalize_phone,
    today_kst,
)

require_office = require_roles(Role.owner, Role.admin, Role.staff)


# --- schemas ---------------------------------------------------------------------------


class GuardianIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    name: str = ""
    relation: GuardianRelation = GuardianRelation.guardian
    is_primary: bool = False


class Guardian(msgspec.Struct):
    id: uuid.UUID
    name: str
    phone: str
    relation: str
    is_primary: bool


class StudentCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    phone: str | None = None
    school: str = ""
    grade: str = ""
    birth_date: dt.date | None = None
    memo: str = ""
    status: StudentStatus = StudentStatus.active
    guardians: list[GuardianIn] = []


class StudentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. ``guardians``, when present, replaces the list."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    phone: str | msgspec.UnsetType | None = msgspec.UNSET
    school: str | msgspec.UnsetType = msgspec.UNSET
    grade: str | msgspec.UnsetType = msgspec.UNSET
    birth_date: dt.date | msgspec.UnsetType | None = msgspec.UNSET
    memo: str | msgspec.UnsetType = msgspec.UNSET
    status: StudentStatus | msgspec.UnsetType = msgspec.UNSET
    guardians: list[GuardianIn] | msgspec.UnsetType = msgspec.UNSET


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


class DuplicateGroup(msgspec.Struct):
    name: str
    guardian_phone: str
    keep: uuid.UUID
    remove: list[uuid.UUID]


class DuplicatesReport(msgspec.Struct):
    groups: list[DuplicateGroup]
    removable: int
    fixed: bool


# --- queries ---------------------------------------------------------------------------

# ``guardians_json`` and ``enrollment_count`` are the read model kept by triggers (see the
# "student read model" migration): the list needs no joins or per-row subqueries.
STUDENT_COLUMNS = """
    s.id, s.name, s.phone, s.school, s.grade, s.birth_date, s.memo, s.status,
    s.created_at, s.updated_at, s.deleted_at,
    s.guardians_json::text AS guardians, s.enrollment_count
"""

decode_guardians = msgspec.json.Decoder(list[Guardian]).decode

SORTS: dict[str, tuple[str, str]] = {
    # name: (column, direction)
    "name": ("s.name", "ASC"),
    "-name": ("s.name", "DESC"),
    "created_at": ("s.created_at", "ASC"),
    "-created_at": ("s.created_at", "DESC"),
    "-deleted_at": ("s.deleted_at", "DESC"),
}


def _to_student(row: Any) -> Student:
    return Student(
        id=row["id"],
        name=row["name"],
        phone=row["phone"],
        school=row["school"],
        grade=row["grade"],
        birth_date=row["birth_date"],
        memo=row["memo"],
        status=row["status"],
        guardians=decode_guardians(row["guardians"]),
        enrollment_count=row["enrollment_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
    )


async def load_student(
    scope: TenantScope, student_id: Any, *, deleted: bool | None = False
) -> Student:
    key = parse_id(StudentRow, student_id)
    where = {False: "AND s.deleted_at IS NULL", True: "AND s.deleted_at IS NOT NULL", None: ""}[
        deleted
    ]
    row = await scope.fetchrow(
        f"SELECT {STUDENT_COLUMNS} FROM student s WHERE s.tenant = $1 AND s.id = $2 {where}", key
    )
    if row is None:
        raise NotFoundInTenant(StudentRow, student_id)
    return _to_student(row)


async def list_students(
    scope: TenantScope,
    *,
    q: str | None,
    school: str | None,
    grade: str | None,
    status: str | None,
    lecture_id: uuid.UUID | None,
    sort: str,
    limit: int,
    cursor: str | None,
    deleted: bool,
) -> RawPage:
    column, direction = SORTS[sort]
    args: list[Any] = []
    where = ["s.tenant = $1", "s.deleted_at IS NOT NULL" if deleted else "s.deleted_at IS NULL"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args) + 1}"

    if q:
        # 초성 first: NFKC would turn the compatibility jamo (ㄱ, U+3131) into conjoining ones.
        raw = "".join(q.split())
        text = clean_text(q)
        digits = "".join(ch for ch in text if ch.isdigit())
        if is_initials_query(raw):
            where.append(f"strpos(s.name_initials, {arg(raw)}) > 0")
        elif (
            digits
            and len(digits) == len(text.replace("-", "").replace(" ", ""))
            and len(digits) >= 3
        ):
            # A phone tail: the student's number or any of their guardians'.
            tail = arg("%" + digits)
            where.append(
                f"(replace(s.phone, '-', '') LIKE {tail} OR EXISTS ("
                "SELECT 1 FROM student_guardian sg JOIN guardian g ON g.id = sg.guardian "
                f"WHERE sg.student = s.id AND replace(g.phone, '-', '') LIKE {tail}))"
            )
        else:
            like = arg("%" + text.replace("%", r"\%").replace("_", r"\_") + "%")
            where.append(f"(s.name ILIKE {like} OR s.school ILIKE {like})")
    if school:
        where.append(f"s.school = {arg(clean_text(school))}")
    if grade:
        where.append(f"s.grade = {arg(clean_text(grade))}")
    if status:
        where.append(f"s.status = {arg(status)}")
    if lecture_id:
        where.append(
            "EXISTS (SELECT 1 FROM enrollment e WHERE e.student = s.id "
            f"AND e.lecture = {arg(lecture_id)} AND e.status = 'active')"
        )
    after = decode_cursor_as(cursor, as_text if column == "s.name" else as_datetime, as_uuid)
    if after is not None:
        op = ">" if direction == "ASC" else "<"
        key, last_id = after
        where.append(f"({column}, s.id) {op} ({arg(key)}, {arg(last_id)})")
    field = column.split(".")[1]
    sql = (
        f"SELECT {STUDENT_COLUMNS} FROM student s WHERE {' AND '.join(where)} "
        f"ORDER BY {column} {direction}, s.id {direction} LIMIT {arg(limit + 1)}"
    )
    rows = await scope.fetch(sql, *args)
    page = page_of(rows, limit, lambda r: [_cursor_key(r[field]), str(r["id"])], _listed)
    return RawPage(page.items, page.limit, page.next_cursor)


def _cursor_key(key: Any) -> Any:
    return key.isoformat() if hasattr(key, "isoformat") else key


class ListedStudent(msgspec.Struct):
    """``Student`` as the list encodes it: the guardians' JSON goes out as stored."""

    id: uuid.UUID
    name: str
    phone: str | None
    school: str
    grade: str
    birth_date: dt.date | None
    memo: str
    status: str
    guardians: msgspec.Raw
    enrollment_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None


def _listed(row: Any) -> ListedStudent:
    return ListedStudent(
        row["id"], row["name"], row["phone"], row["school"], row["grade"], row["birth_date"],
        row["memo"], row["status"], msgspec.Raw(row["guardians"].encode()), row["enrollment_count"],
        row["created_at"], row["updated_at"], row["deleted_at"],
    )  # fmt: skip


class RawPage(msgspec.Struct):
    """A page of the hot list, encoded here in one step (no per-row decode of stored JSON);
    the OpenAPI schema is ``Page[Student]``, which it matches field for field."""

    items: list[ListedStudent]
    limit: int
    next_cursor: str | None

    def response(self) -> Response[bytes]:
        return Response(_encode(self), media_type=MediaType.JSON)


_encode = msgspec.json.Encoder().encode


# --- writes ----------------------------------------------------------------------------


def _validate(data: StudentCreate | StudentUpdate) -> dict[str, Any]:
    """Clean and check every field; one 422 lists all the problems."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    if data.name is not msgspec.UNSET:
        name = clean_text(data.name)
        if not name:
            errors.append({"field": "name", "message": "must not be empty"})
        elif len(name) > 100:
            errors.append({"field": "name", "message": "at most 100 characters"})
        values["name"] = name
        values["name_initials"] = initials(name)
    if data.phone is not msgspec.UNSET:
        if data.phone in (None, ""):
            values["phone"] = None
        else:
            try:
                values["phone"] = normalize_phone(data.phone)
            except InvalidPhone as exc:
                errors.append({"field": "phone", "message": str(exc)})
    for field in ("school", "grade", "memo"):
        value = getattr(data, field)
        if value is not msgspec.UNSET:
            values[field] = clean_text(value) if field != "memo" else value.strip()
    if data.birth_date is not msgspec.UNSET:
        if data.birth_date is not None and data.birth_date > today_kst():
            errors.append({"field": "birth_date", "message": "is in the future"})
        values["birth_date"] = data.birth_date
    if data.status is not msgspec.UNSET:
        values["status"] = StudentStatus(data.status).value
    if data.guardians is not msgspec.UNSET:
        guardians = []
        seen: set[str] = set()
        for i, g in enumerate(data.guardians):
            try:
                phone = normalize_phone(g.phone)
            except InvalidPhone as exc:
                errors.append({"field": f"guardians[{i}].phone", "message": str(exc)})
                continue
            if phone in seen:
                errors.append({"field": f"guardians[{i}].phone", "message": "listed twice"})
                continue
            seen.add(phone)
            guardians.append((clean_text(g.name), phone, g.relation.value, g.is_primary))
        if sum(1 for g in guardians if g[3]) > 1:
            errors.append({"field": "guardians", "message": "at most one primary guardian"})
        values["guardians"] = guardians
    if errors:
        raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
    return values


async def _replace_guardians(
    scope: TenantScope, student_id: uuid.UUID, guardians: list[tuple[str, str, str, bool]]
) -> None:
    await scope.fetch("DELETE FROM student_guardian WHERE tenant = $1 AND student = $2", student_id)
    for name, phone, relation, is_primary in guardians:
        await scope.fetch(
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


# --- routes ----------------------------------------------------------------------------

SortParam = Literal["name", "-name", "created_at", "-created_at"]


class StudentController(Controller):
    path = "/api/v1/students"
    tags = ["students"]
    guards = [require_staff]

    @get(
        "/",
        summary="Students: search, filter, sort, cursor pages",
        responses={200: ResponseSpec(Page[Student], description="A page of students")},
    )
    async def list(
        self,
        tenant_scope: NamedDependency[TenantScope],
        q: FromQuery[str | None] = None,
        school: FromQuery[str | None] = None,
        grade: FromQuery[str | None] = None,
        status: FromQuery[StudentStatus | None] = None,
        lecture_id: FromQuery[uuid.UUID | None] = None,
        sort: FromQuery[SortParam] = "name",
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        limit = check_limit(limit)

        async def load() -> bytes:
            page = await list_students(
                tenant_scope,
                q=q,
                school=school,
                grade=grade,
                status=status.value if status else None,
                lecture_id=lecture_id,
                sort=sort,
                limit=limit,
                cursor=cursor,
                deleted=False,
            )
            return _encode(page)

        key = (q, school, grade, status, lecture_id, sort, limit, cursor)
        body = await STUDENT_LIST.fetch(tenant_scope.tenant_id, key, load)
        return Response(body, media_type=MediaType.JSON)

    @get(
        "/deleted",
        summary="Soft-deleted students, most recently deleted first",
        responses={200: ResponseSpec(Page[Student], description="A page of deleted students")},
    )
    async def list_deleted(
        self,
        tenant_scope: NamedDependency[TenantScope],
        q: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        page = await list_students(
            tenant_scope,
            q=q,
            school=None,
            grade=None,
            status=None,
            lecture_id=None,
            sort="-deleted_at",
            limit=check_limit(limit),
            cursor=cursor,
            deleted=True,
        )
        return page.response()

    @post("/", status_code=HTTP_201_CREATED, guards=[require_office], summary="Create a student")
    async def create(
        self, data: JSONBody[StudentCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> Student:
        values = _validate(data)
        guardians = values.pop("guardians", [])
        async with transaction():
            row = tenant_scope.new(StudentRow, **values)
            await row.save()
            await _replace_guardians(tenant_scope, row.id, guardians)
        return await load_student(tenant_scope, row.id)

    @get("/{student_id:str}", summary="One student with guardians")
    async def get_one(
        self, student_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Student:
        return await load_student(tenant_scope, student_id)

    @patch("/{student_id:str}", guards=[require_office], summary="Change some fields")
    async def update(
        self,
        student_id: FromPath[str],
        data: JSONBody[StudentUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Student:
        current = await load_student(tenant_scope, student_id)
        values = _validate(data)
        guardians = values.pop("guardians", None)
        async with transaction():
            if values:
                values_cols = {getattr(StudentRow, k): v for k, v in values.items()}
                values_cols[StudentRow.updated_at] = dt.datetime.now(dt.UTC)
                await tenant_scope.update(StudentRow, values_cols).where(
                    StudentRow.id == current.id
                )
            if guardians is not None:
                await _replace_guardians(tenant_scope, current.id, guardians)
        return await load_student(tenant_scope, current.id)

    @delete("/{student_id:str}", status_code=HTTP_204_NO_CONTENT, guards=[require_office],
            summary="Soft-delete (restorable; purged after 30 days)")  # fmt: skip
    async def soft_delete(
        self, student_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        current = await load_student(tenant_scope, student_id)
        now = dt.datetime.now(dt.UTC)
        await tenant_scope.update(
            StudentRow, {StudentRow.deleted_at: now, StudentRow.updated_at: now}
        ).where(StudentRow.id == current.id)

    @post("/{student_id:str}/restore", status_code=200, guards=[require_office],
          summary="Undo a soft delete")  # fmt: skip
    async def restore(
        self, student_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Student:
        current = await load_student(tenant_scope, student_id, deleted=True)
        async with transaction():
            # A deleted student's enrollments stay active but do not count against capacity;
            # coming back must not overfill a lecture. Lecture rows are locked as enrolment
            # locks them, so the two cannot race.
            full = await tenant_scope.fetch(
                f"""
                SELECT l.id, l.title, l.capacity FROM lecture l
                WHERE l.tenant = $1 AND l.capacity IS NOT NULL
                  AND l.id IN (SELECT lecture FROM enrollment
                               WHERE student = $2 AND status = 'active')
                  AND l.capacity <= {ACTIVE_COUNT}
                ORDER BY l.title
                FOR UPDATE OF l
                """,
                current.id,
            )
            if full:
                raise Problem(
                    409,
                    "restoring would overfill: "
                    + ", ".join(r["title"] for r in full)
                    + " (drop those enrollments or raise the capacity first)",
                    type_="/problems/lecture-full",
                    lectures=[{"id": str(r["id"]), "title": r["title"]} for r in full],
                )
            await tenant_scope.update(
                StudentRow,
                {StudentRow.deleted_at: None, StudentRow.updated_at: dt.datetime.now(dt.UTC)},
            ).where(StudentRow.id == current.id)
        return await load_student(tenant_scope, current.id)

    @get("/duplicates", guards=[require_admin],
         summary="Deleted duplicates (same name + guardian phone): a dry run")  # fmt: skip
    async def duplicates(self, principal: NamedDependency[Principal]) -> DuplicatesReport:
        return _report(await student_ops.find_deleted_duplicates(principal.tenant_id), fixed=False)

    @post("/duplicates/fix", status_code=200, guards=[require_admin],
          summary="Keep the oldest deleted_at of each group; delete the rest for good")  # fmt: skip
    async def fix_duplicates(self, principal: NamedDependency[Principal]) -> DuplicatesReport:
        groups = await student_ops.fix_deleted_duplicates(principal.tenant_id)
        return _report(groups, fixed=True)


def _report(groups: list[student_ops.DuplicateGroup], *, fixed: bool) -> DuplicatesReport:
    return DuplicatesReport(
        groups=[DuplicateGroup(g.name, g.guardian_phone, g.keep, list(g.remove)) for g in groups],
        removable=sum(len(g.remove) for g in groups),
        fixed=fixed,
    )
