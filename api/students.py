"""Students and their guardians: CRUD, search (name, 초성, phone tail, school), cursor
pages, soft delete / restore, and the deleted-duplicates tools."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api import rules
from api.auth import Principal, require_admin, require_roles, require_staff
from api.list_cache import STUDENT_LIST
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models import students
from models.errors import fail_fields
from models.limits import NAME_MAX, SHORT_MAX, Day, Name, Phone, RequiredName, Short, Text
from models.pages import Page
from models.scope import TenantScope
from models.students import GuardianLink, Student, StudentFilter
from models.tables import GuardianRelation, Role, StudentStatus
from pipelines.korean import (
    InvalidPhone,
    clean_text,
    initials,
    is_initials_query,
    normalize_phone,
    phone_tail,
    today_kst,
)

require_office = require_roles(Role.owner, Role.admin, Role.staff)


# --- schemas ---------------------------------------------------------------------------


class GuardianIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    name: Name = ""
    relation: GuardianRelation = GuardianRelation.guardian
    is_primary: bool = False


class StudentCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: RequiredName
    phone: Phone | None = None
    school: Name = ""
    grade: Short = ""
    birth_date: Day | None = None
    memo: Text = ""
    status: StudentStatus = StudentStatus.active
    guardians: list[GuardianIn] = []


class StudentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. ``guardians``, when present, replaces the list."""

    name: RequiredName | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    school: Name | msgspec.UnsetType = msgspec.UNSET
    grade: Short | msgspec.UnsetType = msgspec.UNSET
    birth_date: Day | msgspec.UnsetType | None = msgspec.UNSET
    memo: Text | msgspec.UnsetType = msgspec.UNSET
    status: StudentStatus | msgspec.UnsetType = msgspec.UNSET
    guardians: list[GuardianIn] | msgspec.UnsetType = msgspec.UNSET


class DuplicateGroup(msgspec.Struct):
    name: str
    guardian_phone: str
    keep: uuid.UUID
    remove: list[uuid.UUID]


class DuplicatesReport(msgspec.Struct):
    groups: list[DuplicateGroup]
    removable: int
    fixed: bool


# --- input ---------------------------------------------------------------------------


def _validate(data: StudentCreate | StudentUpdate) -> dict[str, Any]:
    """Clean and check every field; one 422 lists all the problems."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    if data.name is not msgspec.UNSET:
        name = clean_text(data.name, NAME_MAX)
        if not name:
            errors.append({"field": "name", "message": "must not be empty"})
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
            limit = SHORT_MAX if field == "grade" else NAME_MAX
            values[field] = clean_text(value, limit) if field != "memo" else value.strip()
    if data.birth_date is not msgspec.UNSET:
        if data.birth_date is not None and data.birth_date > today_kst():
            errors.append({"field": "birth_date", "message": "is in the future"})
        values["birth_date"] = data.birth_date
    if data.status is not msgspec.UNSET:
        values["status"] = StudentStatus(data.status).value
    if data.guardians is not msgspec.UNSET:
        guardians: list[GuardianLink] = []
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
            guardians.append((clean_text(g.name, NAME_MAX), phone, g.relation.value, g.is_primary))
        if sum(1 for g in guardians if g[3]) > 1:
            errors.append({"field": "guardians", "message": "at most one primary guardian"})
        values["guardians"] = guardians
    fail_fields(errors)
    return values


def _search(
    q: str | None,
    *,
    school: str | None = None,
    grade: str | None = None,
    status: StudentStatus | None = None,
    lecture_id: uuid.UUID | None = None,
) -> StudentFilter:
    """The list's filter. ``q`` is told apart: 초성 (``ㄱㅁㅅ``), a phone tail (three digits
    or more, dashes and spaces allowed), or a substring of the name or school."""
    found = StudentFilter(
        school=clean_text(school) if school else None,
        grade=clean_text(grade) if grade else None,
        status=status.value if status else None,
        lecture_id=lecture_id,
    )
    if q:
        # 초성 first: NFKC would turn the compatibility jamo (ㄱ, U+3131) into conjoining ones.
        raw = "".join(q.split())
        text = clean_text(q)
        if is_initials_query(raw):
            found.initials = raw
        elif tail := phone_tail(text):
            found.phone_tail = tail
        else:
            found.text = text
    return found


# A ``RawPage`` encoded in one step: the guardians' JSON goes out as stored.
_encode = msgspec.json.Encoder().encode


# --- routes ----------------------------------------------------------------------------

SortParam = Literal["name", "-name", "created_at", "-created_at"]
# The published name of the list's schema (see ``component``).
StudentPage = Annotated[Page[Student], page_schema(Student)]


class StudentController(Controller):
    path = "/api/v1/students"
    tags = ["students"]
    guards = [require_staff]

    @get(
        "/",
        summary="Students: search, filter, sort, cursor pages",
        responses={200: ResponseSpec(StudentPage, description="A page of students")},
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
            found = _search(q, school=school, grade=grade, status=status, lecture_id=lecture_id)
            page = await students.list_students(
                tenant_scope, found, sort=sort, limit=limit, cursor=cursor, deleted=False
            )
            return _encode(page)

        key = (q, school, grade, status, lecture_id, sort, limit, cursor)
        body = await STUDENT_LIST.fetch(tenant_scope.tenant_id, key, load)
        return Response(body, media_type=MediaType.JSON)

    @get(
        "/deleted",
        summary="Soft-deleted students, most recently deleted first",
        responses={200: ResponseSpec(StudentPage, description="A page of deleted students")},
    )
    async def list_deleted(
        self,
        tenant_scope: NamedDependency[TenantScope],
        q: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        page = await students.list_students(
            tenant_scope,
            _search(q),
            sort="-deleted_at",
            limit=check_limit(limit),
            cursor=cursor,
            deleted=True,
        )
        return Response(_encode(page), media_type=MediaType.JSON)

    @post(
        "/",
        opt=rules.STUDENT_WRITE,
        status_code=HTTP_201_CREATED,
        guards=[require_office],
        summary="Create a student",
    )
    async def create(
        self, data: JSONBody[StudentCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> Student:
        values = _validate(data)
        guardians = values.pop("guardians", [])
        return await students.create_student(tenant_scope, values, guardians)

    @get("/{student_id:str}", summary="One student with guardians")
    async def get_one(
        self, student_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Student:
        return await students.get_student(tenant_scope, student_id)

    @patch(
        "/{student_id:str}",
        opt=rules.STUDENT_WRITE,
        guards=[require_office],
        summary="Change some fields",
    )
    async def update(
        self,
        student_id: FromPath[str],
        data: JSONBody[StudentUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Student:
        current = await students.get_student(tenant_scope, student_id)
        values = _validate(data)
        guardians = values.pop("guardians", None)
        return await students.update_student(tenant_scope, current.id, values, guardians)

    @delete("/{student_id:str}", status_code=HTTP_204_NO_CONTENT, guards=[require_office],
            summary="Soft-delete (restorable; purged after 30 days)")  # fmt: skip
    async def soft_delete(
        self, student_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        await students.soft_delete_student(tenant_scope, student_id)

    @post("/{student_id:str}/restore", status_code=200, guards=[require_office],
          summary="Undo a soft delete")  # fmt: skip
    async def restore(
        self, student_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Student:
        return await students.restore_student(tenant_scope, student_id)

    @get("/duplicates", guards=[require_admin],
         summary="Deleted duplicates (same name + guardian phone): a dry run")  # fmt: skip
    async def duplicates(self, principal: NamedDependency[Principal]) -> DuplicatesReport:
        groups = await students.find_deleted_duplicates(principal.tenant_id)
        return _report(groups, fixed=False)

    @post("/duplicates/fix", status_code=200, guards=[require_admin],
          summary="Keep the oldest deleted_at of each group; delete the rest for good")  # fmt: skip
    async def fix_duplicates(self, principal: NamedDependency[Principal]) -> DuplicatesReport:
        groups = await students.fix_deleted_duplicates(principal.tenant_id)
        return _report(groups, fixed=True)


def _report(groups: list[students.DuplicateGroup], *, fixed: bool) -> DuplicatesReport:
    return DuplicatesReport(
        groups=[DuplicateGroup(g.name, g.guardian_phone, g.keep, g.remove) for g in groups],
        removable=sum(len(g.remove) for g in groups),
        fixed=fixed,
    )
