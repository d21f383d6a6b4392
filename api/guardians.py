"""Guardians as a resource: search, read, change (for every sibling at once), and the
students a guardian is linked to. Roles as on students: staff read, the office writes."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from api import rules
from api.auth import require_staff
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from api.students import StudentPage, require_office
from models import guardians
from models.errors import fail_fields
from models.guardians import GuardianDetail, GuardianFilter
from models.limits import NAME_MAX, Name, Phone
from models.pages import Page
from models.scope import TenantScope
from pipelines.korean import InvalidPhone, clean_text, normalize_phone, phone_tail

GuardianPage = Annotated[Page[GuardianDetail], page_schema(GuardianDetail)]


class GuardianUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. A new phone is every sibling's guardian's phone."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType = msgspec.UNSET


def _validate(data: GuardianUpdate) -> dict[str, Any]:
    """Clean and check every field (phones by the same rules as students and imports); one
    422 lists all the problems."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    if data.name is not msgspec.UNSET:
        values["name"] = clean_text(data.name, NAME_MAX)
    if data.phone is not msgspec.UNSET:
        try:
            values["phone"] = normalize_phone(data.phone)
        except InvalidPhone as exc:
            errors.append({"field": "phone", "message": str(exc)})
    fail_fields(errors)
    return values


def _search(q: str | None) -> GuardianFilter:
    """``q`` is a phone tail (three digits or more) or a substring of the name."""
    if not q or not (text := clean_text(q)):
        return GuardianFilter()
    tail = phone_tail(text)
    return GuardianFilter(phone_tail=tail) if tail else GuardianFilter(text=text)


class GuardianController(Controller):
    path = "/api/v1/guardians"
    tags = ["guardians"]
    guards = [require_staff]

    @get("/", summary="Guardians: search by phone tail or name, cursor pages")
    async def list(
        self,
        tenant_scope: NamedDependency[TenantScope],
        q: FromQuery[str | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> GuardianPage:
        return await guardians.list_guardians(
            tenant_scope, _search(q), limit=check_limit(limit), cursor=cursor
        )

    @get("/{guardian_id:str}", summary="One guardian")
    async def get_one(
        self, guardian_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> GuardianDetail:
        return await guardians.get_guardian(tenant_scope, guardian_id)

    @patch("/{guardian_id:str}", opt=rules.GUARDIAN_WRITE, guards=[require_office],
           summary="Change a guardian's name or phone (for every sibling)")  # fmt: skip
    async def update(
        self,
        guardian_id: FromPath[str],
        data: JSONBody[GuardianUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> GuardianDetail:
        return await guardians.update_guardian(tenant_scope, guardian_id, _validate(data))

    @get("/{guardian_id:str}/students", summary="The students a guardian is linked to")
    async def students(
        self,
        guardian_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> StudentPage:
        return await guardians.students_of(
            tenant_scope, guardian_id, limit=check_limit(limit), cursor=cursor
        )
