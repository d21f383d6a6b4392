"""BOLA cases of the grades API: every route addressed by an id."""

from __future__ import annotations

from typing import Any

from tests.bola import bola_case
from tests.factories.grades import create_exam, create_lecture, enrolled_student, scored_exam


async def _lecture(tenant: Any) -> str:
    return str(await create_lecture(tenant))


async def _exam(tenant: Any) -> str:
    return str((await create_exam(tenant, await create_lecture(tenant)))["id"])


async def _scored_exam(tenant: Any) -> str:
    exam, _ = await scored_exam(tenant, [70, 85, 85])
    return str(exam["id"])


async def _exam_and_student(tenant: Any) -> dict[str, str]:
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture)
    student = await enrolled_student(tenant, lecture)
    return {"exam_id": str(exam["id"]), "student_id": str(student["id"])}


async def _scored_student(tenant: Any) -> str:
    _, students = await scored_exam(tenant, [60, 90])
    return str(students[0])


bola_case("GET", "/api/v1/lectures/{id}/exams")(_lecture)
bola_case(
    "POST",
    "/api/v1/lectures/{id}/exams",
    json={"title": "침입 시험", "date": "2026-04-01"},
    read_path="/api/v1/lectures/{id}/exams",
)(_lecture)
bola_case("GET", "/api/v1/exams/{id}")(_exam)
bola_case(
    "PATCH", "/api/v1/exams/{id}", json={"title": "hijacked"}, read_path="/api/v1/exams/{id}"
)(_exam)
bola_case("DELETE", "/api/v1/exams/{id}", read_path="/api/v1/exams/{id}")(_exam)
bola_case("GET", "/api/v1/exams/{id}/scores")(_scored_exam)
bola_case("GET", "/api/v1/exams/{id}/stats")(_scored_exam)
# The bulk body is a list; an empty one is a valid no-op for the owner, and the other
# tenant must get the unknown-exam 404 whatever the body.
bola_case(
    "PUT",
    "/api/v1/exams/{id}/scores",
    json=[],
    read_path="/api/v1/exams/{id}/scores",
)(_scored_exam)
bola_case(
    "PUT",
    "/api/v1/exams/{id}/scores/{id}",
    json={"score": 77},
    read_path="/api/v1/exams/{id}/scores",
)(_exam_and_student)
bola_case("GET", "/api/v1/students/{id}/scores")(_scored_student)
