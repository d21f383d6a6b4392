"""BOLA cases for lectures, sessions and enrollments (every id route of api/lectures.py).

``POST /lectures/{id}/enrollments`` needs, in its body, a student of the owner's tenant,
and the matrix sends one fixed body; the factory points that body (the dict the case was
registered with) at the student it creates, before the matrix sends it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from tests.bola import bola_case
from tests.factories import create_student
from tests.factories.lectures import add_session, create_lecture, enrol

if TYPE_CHECKING:
    from tests.conftest import TenantCtx

LECTURE = "/api/v1/lectures/{id}"
SESSIONS = "/api/v1/lectures/{id}/sessions"
SESSION = "/api/v1/sessions/{id}"
ROSTER = "/api/v1/lectures/{id}/roster"

# Starts as a well-formed body for a student that exists nowhere (the malformed-id test
# sends it too, and must get its 404 for the lecture, not a 422 for the body).
ENROL_BODY: dict[str, Any] = {"student_id": str(uuid.uuid4()), "source": "manual"}


async def _lecture(tenant: TenantCtx) -> str:
    """An open lecture with dates and a schedule, so it can also generate sessions."""
    return str((await create_lecture(tenant))["id"])


async def _session(tenant: TenantCtx) -> str:
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    return str((await add_session(tenant, lecture["id"], headers))["id"])


async def _student_in_a_lecture(tenant: TenantCtx) -> str:
    headers = await tenant.headers()
    student = await create_student(tenant, headers)
    lecture = await create_lecture(tenant, headers)
    await enrol(tenant, lecture["id"], student["id"], headers)
    return str(student["id"])


async def _lecture_and_body_student(tenant: TenantCtx) -> str:
    headers = await tenant.headers()
    student = await create_student(tenant, headers)
    ENROL_BODY["student_id"] = student["id"]
    return str((await create_lecture(tenant, headers))["id"])


async def _enrollment(tenant: TenantCtx) -> dict[str, str]:
    """Both ids of an active enrollment, in path order."""
    headers = await tenant.headers()
    student = await create_student(tenant, headers)
    lecture = await create_lecture(tenant, headers)
    await enrol(tenant, lecture["id"], student["id"], headers)
    return {"lecture_id": str(lecture["id"]), "student_id": str(student["id"])}


bola_case("GET", LECTURE)(_lecture)
bola_case("PATCH", LECTURE, json={"title": "hijacked"}, read_path=LECTURE)(_lecture)
bola_case("DELETE", LECTURE, read_path=LECTURE)(_lecture)

bola_case("POST", SESSIONS + "/generate", read_path=SESSIONS)(_lecture)
bola_case("GET", SESSIONS)(_lecture)
bola_case("POST", SESSIONS, json={"date": "2026-05-01", "topic": "hijacked"}, read_path=SESSIONS)(
    _lecture
)
bola_case("GET", SESSION)(_session)
bola_case("PATCH", SESSION, json={"topic": "hijacked"}, read_path=SESSION)(_session)
bola_case("DELETE", SESSION, read_path=SESSION)(_session)

bola_case("POST", "/api/v1/lectures/{id}/enrollments", json=ENROL_BODY, read_path=ROSTER)(
    _lecture_and_body_student
)
bola_case("DELETE", "/api/v1/lectures/{id}/enrollments/{id}", read_path=ROSTER)(_enrollment)
bola_case("GET", ROSTER)(_lecture)
bola_case("GET", "/api/v1/students/{id}/lectures")(_student_in_a_lecture)
