"""Factories for domain rows. Tests build their data here, never by hand-written rows.

Each factory takes the tenant it creates in, and keyword overrides; numbers, names and
phones are unique per call so tests never collide.
"""

from __future__ import annotations

import itertools
import random
import uuid
from typing import Any

_seq = itertools.count(1)
_SURNAMES = "김이박최정강조윤장임"
_GIVEN = ["민수", "서연", "지훈", "하은", "도윤", "수아", "예준", "지우", "시우", "서윤"]


def unique_mobile() -> str:
    """A valid, practically unique mobile number. The middle block stays in 2000-4999:
    libphonenumber treats some assigned-looking ranges (010-597x..599x) as invalid, and a
    factory that sometimes makes invalid numbers makes flaky tests."""
    n = next(_seq) + random.randint(0, 10**6) * 100
    return f"010-{2000 + (n // 10000) % 3000:04d}-{n % 10000:04d}"


def korean_name(i: int | None = None) -> str:
    i = next(_seq) if i is None else i
    return _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i // len(_SURNAMES)) % len(_GIVEN)]


def student_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": korean_name(),
        "phone": unique_mobile(),
        "school": "한빛중학교",
        "grade": "중2",
        "guardians": [
            {"name": "보호자", "phone": unique_mobile(), "relation": "mother", "is_primary": True}
        ],
    }
    payload.update(overrides)
    return payload


async def create_student(
    tenant: Any, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Through the API, as the academy's office would."""
    headers = headers or await tenant.headers()
    r = await tenant.client.post(
        "/api/v1/students", json=student_payload(**overrides), headers=headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def bulk_students(
    tenant_id: Any, count: int, *, guardians_per_student: int = 1
) -> list[uuid.UUID]:
    """Many students straight into the database (COPY), for list and load tests."""
    from models.db import copy_records
    from pipelines.korean import initials

    students, guardians, links = [], [], []
    base = random.randint(0, 10**6)
    for i in range(count):
        sid = uuid.uuid4()
        name = korean_name(base + i)
        students.append(
            (
                sid,
                tenant_id,
                name,
                initials(name),
                f"010-{(base + i) % 10000:04d}-{i % 10000:04d}",
                "한빛중학교",
                "중2",
                "",
                "active",
            )
        )
        for j in range(guardians_per_student):
            gid = uuid.uuid4()
            guardians.append(
                (
                    gid,
                    tenant_id,
                    f"보호자{j}",
                    f"011-{(base + i) % 10000:04d}-{(i * 7 + j) % 10000:04d}",
                )
            )
            links.append(
                (uuid.uuid4(), tenant_id, sid, gid, "mother" if j == 0 else "father", j == 0)
            )
    await copy_records(
        "student",
        ["id", "tenant", "name", "name_initials", "phone", "school", "grade", "memo", "status"],
        students,
    )
    await copy_records("guardian", ["id", "tenant", "name", "phone"], guardians)
    await copy_records(
        "student_guardian", ["id", "tenant", "student", "guardian", "relation", "is_primary"], links
    )
    return [s[0] for s in students]
