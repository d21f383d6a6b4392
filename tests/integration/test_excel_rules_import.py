"""The import's rules end to end through the API and the steps, over real Postgres, SQS
and S3: what an office's roster really becomes in the database and in the result."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest

from models.db import connection
from tests.factories import bulk_students
from tests.factories.attendance import create_lecture, enroll
from tests.factories.workbooks import grid_text, grid_xlsx
from tests.integration.test_excel_import import CHAIN, accepted, job_of, lite_queue, run_chain

pytestmark = pytest.mark.usefixtures("broker", "lite_queue")
__all__ = ["lite_queue"]

# A roster as an office keeps it: a title, a two-row header under a merged 연락처, numbered
# rows left empty, notes, a landline, placeholders, grades in every spelling, a repeat in
# the same class and the same student in a second class.
ROSTER = [
    ["2026 겨울방학 특강 수강생"],
    [],
    ["No.", "성 명", "연락처", None, "학교", "학년", "수강반", "비고"],
    [None, None, "학생", "보호자", None, None, None, None],
    [1, "김민수", "010-2100-0001", "010-3100-0001", "대치중", "2", "WA", None],
    [2, "이서연", "02-555-1234", "+82 10-3100-0002", "휘문고등학교", "고등학교 1학년", "WA", None],
    [3, "박지훈", "없음", "031-123-4567", "대치중", "중2", "WA", None],
    [4, "최유나", "x", "-", "", "예비고1", "WA", "연락처 확인 중"],
    [5, "김민수", "010.2100.0001", "01031000001", "대치중", "2학년", "WA", "중복"],
    [6, "김민수", "", "010-3100-0001", "대치중", "2", "WB", None],
    [7, None, None, None, None, None, None, "3월 등록 예정"],
    [8],
    [9, "정하늘", "010-5978-0009", "1031000009", "서울중학교", 3, "WB", None],
]
MERGES = [(2, 0, 3, 0, "No."), (2, 1, 3, 1, "성 명"), (2, 2, 2, 3, "연락처"),
          (2, 4, 3, 4, "학교"), (2, 5, 3, 5, "학년"), (2, 6, 3, 6, "수강반"),
          (2, 7, 3, 7, "비고")]  # fmt: skip


async def students_of(tenant_id: Any) -> list[tuple[Any, ...]]:
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.name, s.phone, s.grade, s.grade_raw, g.phone AS guardian,
                   array(SELECT l.code FROM enrollment e JOIN lecture l ON l.id = e.lecture
                         WHERE e.student = s.id AND e.status = 'active' ORDER BY l.code) AS codes
            FROM student s
            JOIN student_guardian sg ON sg.student = s.id JOIN guardian g ON g.id = sg.guardian
            WHERE s.tenant = $1 ORDER BY s.name
            """,
            tenant_id,
        )
    return [tuple(r.values()) for r in rows]


async def test_an_office_roster_becomes_exactly_these_students(tenant: Any) -> None:
    await create_lecture(tenant, code="WA", capacity=30)
    await create_lecture(tenant, code="WB", capacity=30)
    job_id = await accepted(tenant, grid_xlsx(ROSTER, merges=MERGES))
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "DONE", job["error"]
    result = job["result"]

    assert await students_of(tenant.id) == [
        ("김민수", "010-2100-0001", "중2", "2", "010-3100-0001", ["WA", "WB"]),
        ("이서연", None, "고1", "고등학교 1학년", "010-3100-0002", ["WA"]),
        ("정하늘", "010-5978-0009", "중3", "3", "010-3100-0009", ["WB"]),
    ]
    assert (result["created"], result["enrolled"], result["merged"]) == (3, 4, 1)
    assert [(e["row"], e["column"], e["code"]) for e in result["errors"]] == [
        (7, "보호자 연락처", "guardian_phone_not_mobile"),
        (8, "보호자 연락처", "guardian_phone_missing"),
    ]
    assert result["warnings"] == [
        {"row": 6, "column": "학생 연락처", "reason": "student_phone_not_mobile"}
    ]
    assert result["duplicates"] == [{"row": 9, "duplicate_of_row": 5}]
    assert result["total_rows"] == 7 and result["header_row"] == 3


ROWS = [
    ["이름", "학생 연락처", "보호자 연락처", "학교", "학년"],
    ["김민수", "010-2200-0001", "010-3200-0001", "대치중", "2"],
    ["이서연", "", "010-3200-0002", "휘문고", "1"],
    ["똠양꿍", "010-2200-0003", "010-3200-0003", "", ""],
]
FORMATS = {
    "xlsx": lambda: grid_xlsx(ROWS),
    "cp949": lambda: grid_text(ROWS, encoding="cp949"),
    "utf-8": lambda: grid_text(ROWS, encoding="utf-8-sig"),
}


@pytest.mark.parametrize("order", list(itertools.permutations(FORMATS))[::2])
async def test_one_roster_in_three_formats_creates_its_students_once(
    tenant: Any, order: tuple[str, ...]
) -> None:
    created = []
    for name in order:
        job_id = await accepted(tenant, FORMATS[name]())
        await run_chain(job_id)
        job = await job_of(job_id)
        assert job["status"] == "DONE", job["error"]
        created.append(job["result"]["created"])
    assert created == [3, 0, 0]
    assert [s[:4] for s in await students_of(tenant.id)] == [
        ("김민수", "010-2200-0001", "중2", "2"),
        ("똠양꿍", "010-2200-0003", "", ""),
        ("이서연", None, "고1", "1"),
    ]


async def test_a_bad_file_fails_with_its_code_on_the_status_route(tenant: Any) -> None:
    job_id = await accepted(tenant, grid_xlsx([["이름", "학교"], ["김민수", "대치중"]]))
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "FAILED" and "보호자 연락처" in job["error"]
    assert job["result"] == {
        "code": "missing_required_column",
        "column": "guardian_phone",
        "message": job["error"],
    }
    r = await tenant.client.get(
        f"/api/v1/enrollments/excel_job_status/{job_id}/", headers=await tenant.headers()
    )
    assert r.status_code == 200 and r.json()["error_code"] == "missing_required_column"
    async with connection() as conn:
        count = await conn.fetchval("SELECT count(*) FROM student WHERE tenant = $1", tenant.id)
    assert count == 0 and uuid.UUID(job_id)


async def test_empty_and_binary_uploads_are_refused_with_a_code(tenant: Any) -> None:
    for data, status, code in [
        (b"", 422, "empty_file"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 415, "not_a_spreadsheet"),
    ]:
        r = await tenant.client.post(
            "/api/v1/enrollments/excel",
            files={"file": ("명단.xlsx", data, "application/octet-stream")},
            headers=await tenant.headers(),
        )
        assert (r.status_code, r.json()["code"]) == (status, code), r.text


async def test_seats_taken_while_importing_are_respected_at_apply(tenant: Any) -> None:
    lecture = await create_lecture(tenant, code="CAP", capacity=4)
    roster = [["이름", "보호자 연락처", "반"]] + [
        [f"학생{i}", f"010-3300-{i:04d}", "CAP"] for i in range(4)
    ]  # fmt: skip
    job_id = await accepted(tenant, grid_xlsx(roster))
    for step in CHAIN[:3]:
        await step(job_id=job_id)  # planned: four seats free, four students
    await enroll(tenant, lecture, await bulk_students(tenant.id, 3))  # three seats go
    for step in CHAIN[3:]:
        await step(job_id=job_id)
    result = (await job_of(job_id))["result"]
    assert (result["created"], result["enrolled"]) == (4, 1)
    assert [(e["row"], e["code"]) for e in result["errors"]] == [
        (3, "lecture_full"), (4, "lecture_full"), (5, "lecture_full"),
    ]  # fmt: skip
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.name, s.enrollment_count, s.guardians_json->0->>'phone' AS guardian,
                   (SELECT count(*) FROM enrollment e WHERE e.student = s.id) AS enrolled
            FROM student s WHERE s.tenant = $1 AND s.name LIKE '학생%' ORDER BY s.name
            """,
            tenant.id,
        )
        active = await conn.fetchval(
            "SELECT count(*) FROM enrollment WHERE lecture = $1 AND status = 'active'", lecture
        )
    # The read model written with each new student matches what it really has.
    assert [tuple(r.values()) for r in rows] == [
        ("학생0", 1, "010-3300-0000", 1),
        ("학생1", 0, "010-3300-0001", 0),
        ("학생2", 0, "010-3300-0002", 0),
        ("학생3", 0, "010-3300-0003", 0),
    ]
    assert active == 4


async def test_chunks_in_flight_take_seats_in_file_order(tenant: Any, monkeypatch: Any) -> None:
    # Two chunk transactions run at once; seats must still go to the first rows of the file.
    monkeypatch.setattr("pipelines.excel.apply.CHUNK_ROWS", 2)
    await create_lecture(tenant, code="ORD", capacity=5)
    roster = [["이름", "보호자 연락처", "반"]] + [
        [f"학생{i:02d}", f"010-3400-{i:04d}", "ORD"] for i in range(11)
    ]  # fmt: skip
    job_id = await accepted(tenant, grid_xlsx(roster))
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "DONE", job["error"]
    result = job["result"]
    assert (result["created"], result["enrolled"]) == (11, 5)
    assert [(e["row"], e["code"]) for e in result["errors"]] == [
        (row, "lecture_full") for row in range(7, 13)
    ]
    async with connection() as conn:
        counts = await conn.fetch(
            "SELECT name, enrollment_count FROM student WHERE tenant = $1 ORDER BY name",
            tenant.id,
        )
    assert [(r["name"], r["enrollment_count"]) for r in counts] == [
        (f"학생{i:02d}", 1 if i < 5 else 0) for i in range(11)
    ]


async def test_students_known_before_keep_a_true_enrolment_count(tenant: Any) -> None:
    # The import counts the enrolments of the students it writes itself; the ones it finds
    # already there are recounted where their count changes.
    for code in ("KA", "KB"):
        await create_lecture(tenant, code=code)
    roster = [["이름", "보호자 연락처", "반"]] + [
        [f"학생{i}", f"010-3500-{i:04d}", "KA"] for i in range(3)
    ]  # fmt: skip
    await run_chain(await accepted(tenant, grid_xlsx(roster)))
    async with connection() as conn:
        await conn.execute(
            "UPDATE enrollment e SET status = 'dropped', dropped_at = now() FROM student s "
            "WHERE s.id = e.student AND s.tenant = $1 AND s.name = '학생1'",
            tenant.id,
        )
    roster = [["이름", "보호자 연락처", "반"],
              ["학생0", "010-3500-0000", "KB"],  # a second lecture
              ["학생1", "010-3500-0001", "KA"],  # the dropped one taken back
              ["학생2", "010-3500-0002", "KA"],  # already there
              ["학생3", "010-3500-0003", "KB"]]  # fmt: skip
    job_id = await accepted(tenant, grid_xlsx(roster))
    await run_chain(job_id)
    result = (await job_of(job_id))["result"]
    assert (result["created"], result["unchanged"], result["enrolled"]) == (1, 3, 3)
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.name, s.enrollment_count, (SELECT count(*) FROM enrollment e
                WHERE e.student = s.id AND e.status = 'active') AS active
            FROM student s WHERE s.tenant = $1 ORDER BY s.name
            """,
            tenant.id,
        )
    assert [tuple(r.values()) for r in rows] == [
        ("학생0", 2, 2), ("학생1", 1, 1), ("학생2", 1, 1), ("학생3", 1, 1),
    ]  # fmt: skip
