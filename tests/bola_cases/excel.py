"""Excel import status and the exports addressed by an id."""

from tests.bola import bola_case
from tests.factories.grades import create_exam
from tests.factories.lectures import create_lecture
from tests.factories.workbooks import messy_rows, write_xlsx


@bola_case("GET", "/api/v1/enrollments/excel_job_status/{id}")
async def _import_job(tenant) -> str:
    r = await tenant.client.post(
        "/api/v1/enrollments/excel",
        files={"file": ("명단.xlsx", write_xlsx(messy_rows(2)))},
        data={"dry_run": "true"},
        headers=await tenant.headers(),
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


@bola_case("POST", "/api/v1/exports/lectures/{id}/roster")
async def _lecture(tenant) -> str:
    return str((await create_lecture(tenant))["id"])


@bola_case("POST", "/api/v1/exports/exams/{id}/scores")
async def _exam(tenant) -> str:
    lecture = await create_lecture(tenant)
    return str((await create_exam(tenant, lecture["id"]))["id"])
