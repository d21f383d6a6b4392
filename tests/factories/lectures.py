"""Factories for lectures, sessions and enrollments.

Like ``tests.factories``: each takes the tenant it creates in and keyword overrides, goes
through the API where the API can do it (so what a test builds is what a client could),
and uses COPY only for the bulk rows of list and N+1 tests.
"""

from __future__ import annotations

import itertools
import random
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

_seq = itertools.count(1)

# Mon and Wed, 16:00-17:30, over the four weeks of 2026-03-02 (a Monday) .. 03-29 (a Sunday):
# the 2nd, 4th, 9th, 11th, 16th, 18th, 23rd and 25th, 8 sessions.
DEFAULT_SCHEDULE = [
    {"weekday": 0, "start": "16:00", "end": "17:30"},
    {"weekday": 2, "start": "16:00", "end": "17:30"},
]
DEFAULT_START, DEFAULT_END = "2026-03-02", "2026-03-29"
DEFAULT_SESSION_COUNT = 8
LECTURES = "/api/v1/lectures"


def unique_code(prefix: str = "L") -> str:
    return f"{prefix}{next(_seq)}-{secrets.token_hex(3)}".upper()


def lecture_payload(**overrides: Any) -> dict[str, Any]:
    n = next(_seq)
    payload: dict[str, Any] = {
        "title": f"중2 수학 {n}반",
        "subject": "수학",
        "code": unique_code(),
        "capacity": None,
        "schedule": [dict(slot) for slot in DEFAULT_SCHEDULE],
        "start_date": DEFAULT_START,
        "end_date": DEFAULT_END,
        "status": "open",
    }
    payload.update(overrides)
    return payload


async def _headers(tenant: Any, headers: dict[str, str] | None) -> dict[str, str]:
    return headers or dict(await tenant.headers())


async def create_lecture(
    tenant: Any, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Through the API, as the academy's office would."""
    r = await tenant.client.post(
        "/api/v1/lectures",
        json=lecture_payload(**overrides),
        headers=await _headers(tenant, headers),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def generate_sessions(
    tenant: Any, lecture_id: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    r = await tenant.client.post(
        f"/api/v1/lectures/{lecture_id}/sessions/generate",
        headers=await _headers(tenant, headers),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def add_session(
    tenant: Any, lecture_id: Any, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "date": "2026-04-04",
        "start_time": "10:00",
        "end_time": "11:30",
        "topic": "보강",
    }
    payload.update(overrides)
    r = await tenant.client.post(
        f"/api/v1/lectures/{lecture_id}/sessions",
        json=payload,
        headers=await _headers(tenant, headers),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def enrol(
    tenant: Any,
    lecture_id: Any,
    student_id: Any,
    headers: dict[str, str] | None = None,
    source: str = "manual",
) -> dict[str, Any]:
    r = await tenant.client.post(
        f"/api/v1/lectures/{lecture_id}/enrollments",
        json={"student_id": str(student_id), "source": source},
        headers=await _headers(tenant, headers),
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def user_id(email: str) -> uuid.UUID:
    """The id of a user that ``TenantCtx.add_user`` created (it returns the e-mail)."""
    from models.tables import User

    row = await User.select(User.id).where(User.email == email).first()
    assert row is not None, email
    return uuid.UUID(str(row["id"]))


async def bulk_lectures(tenant_id: Any, count: int, **columns: Any) -> list[uuid.UUID]:
    """Many lectures straight into the database (COPY), for list and N+1 tests. Titles
    are distinct and sort in creation order."""
    from models.db import copy_records

    base = random.randint(0, 10**6)
    rows = []
    for i in range(count):
        row = {
            "id": uuid.uuid4(),
            "tenant": tenant_id,
            "code": f"B{base}-{i:04d}",
            "title": f"벌크 강의 {base:07d}-{i:04d}",
            "subject": "수학",
            "schedule": "[]",
            "status": "open",
            **columns,
        }
        rows.append(row)
    names = list(rows[0]) if rows else []
    await copy_records("lecture", names, [tuple(r[n] for n in names) for r in rows])
    return [r["id"] for r in rows]


async def bulk_enrollments(
    tenant_id: Any, lecture_id: Any, student_ids: Sequence[Any], status: str = "active"
) -> None:
    """Active (or ``status``) enrollments straight into the database (COPY)."""
    from models.db import copy_records

    await copy_records(
        "enrollment",
        ["id", "tenant", "student", "lecture", "status", "source"],
        [(uuid.uuid4(), tenant_id, sid, lecture_id, status, "import") for sid in student_ids],
    )


async def record_attendance(tenant_id: Any, session_id: Any, student_id: Any) -> None:
    """One attendance row, to show what a lecture or session delete must not erase (the
    attendance API is another module's; this only needs the row to exist)."""
    from models.scope import TenantScope
    from models.tables import Attendance

    await (
        TenantScope(tenant_id)
        .new(Attendance, session=session_id, student=student_id, status="present")
        .save()
    )


# --- paths and paging through the API under test ---------------------------------------


def sessions_url(lecture: dict[str, Any]) -> str:
    return f"{LECTURES}/{lecture['id']}/sessions"


def enrollments_url(lecture: dict[str, Any]) -> str:
    return f"{LECTURES}/{lecture['id']}/enrollments"


async def all_pages(client: Any, url: str, headers: dict[str, str], **params: Any) -> list[Any]:
    """Every item of a cursor-paged list, following ``next_cursor`` to the end."""
    items: list[Any] = []
    cursor = None
    while True:
        r = await client.get(
            url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items
