"""The student and parent app: ``/api/v1/me/...``.

A student account sees itself; a parent account sees the students linked to its guardian
record. Any other student id answers 404, exactly like an id that does not exist. Staff
accounts use the academy endpoints instead (403 here).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from api.auth import Principal, require_roles
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models import family
from models.family import MyLecture, MyScore, MySession, MyStudent, Viewer
from models.limits import Day
from models.pages import Page
from models.scope import TenantScope
from models.tables import Role
from pipelines.korean import today_kst

require_family = require_roles(Role.student, Role.parent)

# The published names of the pages' schemas (see ``component``).
MyStudentPage = Annotated[Page[MyStudent], page_schema(MyStudent)]
MyLecturePage = Annotated[Page[MyLecture], page_schema(MyLecture)]
MySessionPage = Annotated[Page[MySession], page_schema(MySession)]
MyScorePage = Annotated[Page[MyScore], page_schema(MyScore)]


def _viewer(principal: Principal) -> Viewer:
    return Viewer(
        principal.student_id if principal.role == Role.student else None,
        principal.guardian_id if principal.role == Role.parent else None,
    )


# Same names as the attendance reports: ?from=&to= (inclusive).
DateFrom = Annotated[
    Day | None,
    QueryParameter(name="from", description="first date, inclusive (default: 31 days ago)"),
]
DateTo = Annotated[
    Day | None,
    QueryParameter(name="to", description="last date, inclusive (default: in 31 days)"),
]


def _range(date_from: dt.date | None, date_to: dt.date | None) -> tuple[dt.date, dt.date]:
    today = today_kst()
    return date_from or today - dt.timedelta(days=31), date_to or today + dt.timedelta(days=31)


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["me"]
    guards = [require_family]

    @get("/students", summary="The students this account may see")
    async def students(
        self,
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> MyStudentPage:
        return await family.my_students(
            tenant_scope, _viewer(principal), limit=check_limit(limit), cursor=cursor
        )

    @get("/students/{student_id:str}", summary="One of my students")
    async def student(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> MyStudent:
        return await family.my_student(tenant_scope, _viewer(principal), student_id)

    @get("/students/{student_id:str}/lectures", summary="Lectures the student attends")
    async def lectures(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> MyLecturePage:
        key = await family.visible_student(tenant_scope, _viewer(principal), student_id)
        return await family.lectures_attended(
            tenant_scope, key, limit=check_limit(limit), cursor=cursor
        )

    @get("/students/{student_id:str}/sessions", summary="Sessions in a date range, with attendance")
    async def sessions(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        date_from: DateFrom = None,
        date_to: DateTo = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> MySessionPage:
        key = await family.visible_student(tenant_scope, _viewer(principal), student_id)
        start, end = _range(date_from, date_to)
        return await family.sessions_attended(
            tenant_scope, key, start=start, end=end, limit=check_limit(limit), cursor=cursor
        )

    @get("/students/{student_id:str}/scores", summary="Exam scores, newest first (undated last)")
    async def scores(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> MyScorePage:
        key = await family.visible_student(tenant_scope, _viewer(principal), student_id)
        return await family.scores_of(tenant_scope, key, limit=check_limit(limit), cursor=cursor)


CONTROLLERS: list[type[Controller]] = [MeController]
