"""The school day's academies, straight into the database (COPY), and a pool of logged-in
accounts per role for the load generator.

Per academy: its owner, ``TEACHERS`` teachers, ``LECTURES`` open lectures (each taught by
one of them, with a code ``L<n>``), the students (1–2 guardians each, every one enrolled
in 2 lectures, so ~33 per lecture), a student account per student and a parent account per
primary guardian; per lecture 3 past sessions with attendance, today's session (for the
teacher to check), 2 past exams with scores, today's exam (for the teacher to score) and a
READY proctored 50-minute video (no transcode: the row says READY, as the video tests do).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from models.db import connection, copy_records
from ops.commands.tenants import create_tenant
from ops.passwords import hash_password
from pipelines.korean import initials
from tests.factories import bulk_students

TEACHERS, LECTURES = 6, 12
PASSWORD = "school-day-password-1"
VIDEO_SECONDS = 3000.0  # a 50-minute lecture


@dataclass
class Lecture:
    id: uuid.UUID
    teacher: str  # the teacher's e-mail
    today: uuid.UUID  # today's session
    exam: uuid.UUID  # today's exam, not scored yet
    video: uuid.UUID
    students: list[uuid.UUID] = field(default_factory=list)


@dataclass
class Academy:
    id: uuid.UUID
    slug: str
    owner: str
    lectures: list[Lecture]
    # student id -> (account e-mail, name, phone)
    students: dict[uuid.UUID, tuple[str, str, str]]
    parents: list[tuple[str, uuid.UUID]]  # (account e-mail, child's student id)


async def seed_day(academies: int, students: int) -> list[Academy]:
    """``academies`` tenants of ``students`` students each (see the module's docstring)."""
    secret = hash_password(PASSWORD)  # one hash for every seeded account
    seeded = []
    for a in range(academies):
        seeded.append(await _academy(a, students, secret))
    return seeded


async def _academy(a: int, count: int, secret: str) -> Academy:
    slug = f"day-{uuid.uuid4().hex[:8]}"
    owner = f"owner-{slug}@day.example"
    tenant, _, _ = await create_tenant(f"학원 {a}", owner, PASSWORD, slug=slug)
    tid = tenant.id
    student_ids = await bulk_students(tid, count, guardians_per_student=1 + a % 2)
    teachers = [(uuid.uuid4(), f"teacher{t}-{slug}@day.example") for t in range(TEACHERS)]
    users = [(uid, tid, email, "teacher", "교사", secret, None, None) for uid, email in teachers]
    lectures = [
        (
            uuid.uuid4(),
            tid,
            f"L{i}",
            f"중2 수학 {i}반",
            "수학",
            teachers[i % TEACHERS][0],
            "[]",
            "open",
        )
        for i in range(LECTURES)
    ]
    await copy_records(
        "app_user",
        ["id", "tenant", "email", "role", "name", "password_hash", "student_id", "guardian_id"],
        users,
    )
    await copy_records(
        "lecture",
        ["id", "tenant", "code", "title", "subject", "teacher", "schedule", "status"],
        lectures,
    )
    rng = random.Random(a)
    roster: dict[uuid.UUID, list[uuid.UUID]] = {row[0]: [] for row in lectures}
    for sid in student_ids:
        for lid in rng.sample(list(roster), 2):
            roster[lid].append(sid)
    await copy_records(
        "enrollment",
        ["id", "tenant", "student", "lecture", "status", "source"],
        [(uuid.uuid4(), tid, s, lid, "active", "manual") for lid, ss in roster.items() for s in ss],
    )
    days = await _classes(tid, roster, rng)
    emails = {t[0]: t[1] for t in teachers}
    found = [
        Lecture(row[0], emails[row[5]], *days[row[0]], students=roster[row[0]]) for row in lectures
    ]
    people, parents = await _accounts(tid, slug, secret)
    return Academy(tid, slug, owner, found, people, parents)


async def _classes(
    tid: uuid.UUID, roster: dict[uuid.UUID, list[uuid.UUID]], rng: random.Random
) -> dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """Sessions, attendance, exams, scores and a video per lecture; per lecture, the ids of
    today's session, today's exam and the video."""
    today = dt.date.today()
    sessions, attendance, exams, scores, videos = [], [], [], [], []
    out = {}
    statuses = ["present"] * 17 + ["late", "absent"]
    rungs = json.dumps([{"name": "360p", "width": 640, "height": 360,
                         "video_bitrate": 365000, "audio_bitrate": 128000}])  # fmt: skip
    for lid, students in roster.items():
        ids = [uuid.uuid4() for _ in range(4)]
        for seq, sid in enumerate(ids, 1):
            sessions.append(
                (sid, tid, lid, seq, today - dt.timedelta(days=7 * (4 - seq)), f"{seq}강")
            )
        for session in ids[:3]:
            attendance += [(uuid.uuid4(), tid, session, s, rng.choice(statuses)) for s in students]
        exam_ids = [uuid.uuid4() for _ in range(3)]
        for n, eid in enumerate(exam_ids):
            exams.append(
                (eid, tid, lid, f"{n + 1}회 단원평가", today - dt.timedelta(days=14 - 7 * n))
            )
        for eid in exam_ids[:2]:
            scores += [(uuid.uuid4(), tid, eid, s, rng.randint(40, 100), "bulk") for s in students]
        video = uuid.uuid4()
        videos.append((video, tid, lid, "1강 다시보기", True, "READY", "", VIDEO_SECONDS, rungs))
        out[lid] = (ids[3], exam_ids[2], video)
    await copy_records(
        "lecture_session", ["id", "tenant", "lecture", "seq", "date", "topic"], sessions
    )
    await copy_records("attendance", ["id", "tenant", "session", "student", "status"], attendance)
    await copy_records("exam", ["id", "tenant", "lecture", "title", "date"], exams)
    await copy_records("score", ["id", "tenant", "exam", "student", "score", "source"], scores)
    await copy_records(
        "video",
        ["id", "tenant", "lecture", "title", "proctored", "status", "raw_key",
         "duration_seconds", "rungs"],
        videos,
    )  # fmt: skip
    return out


async def _accounts(
    tid: uuid.UUID, slug: str, secret: str
) -> tuple[dict[uuid.UUID, tuple[str, str, str]], list[tuple[str, uuid.UUID]]]:
    """A student account per student and a parent account per primary guardian."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT s.id, s.name, s.phone, g.guardian FROM student s "
            "JOIN student_guardian g ON g.student = s.id AND g.is_primary "
            "WHERE s.tenant = $1 ORDER BY s.id",
            tid,
        )
    people = {
        r["id"]: (f"s-{r['id'].hex[:12]}-{slug}@day.example", r["name"], r["phone"]) for r in rows
    }
    parents = [(f"p-{r['id'].hex[:12]}-{slug}@day.example", r["id"]) for r in rows]
    users = [
        (uuid.uuid4(), tid, people[r["id"]][0], "student", r["name"], secret, r["id"], None)
        for r in rows
    ]
    users += [
        (uuid.uuid4(), tid, email, "parent", "보호자", secret, None, r["guardian"])
        for (email, _), r in zip(parents, rows, strict=True)
    ]
    await copy_records(
        "app_user",
        ["id", "tenant", "email", "role", "name", "password_hash", "student_id", "guardian_id"],
        users,
    )
    return people, parents


async def login_all(base: str, emails: list[str], concurrency: int = 16) -> dict[str, str]:
    """Access tokens for ``emails``, logged in over HTTP (``concurrency`` at a time)."""
    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(email: str) -> None:
            async with gate:
                r = await client.post(
                    "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
                )
            assert r.status_code == 200, (email, r.status_code, r.text)
            tokens[email] = r.json()["access_token"]

        await asyncio.gather(*(one(e) for e in emails))
    return tokens


def search_terms(academy: Academy, rng: random.Random, n: int = 6) -> list[str]:
    """What an office types into the student search: phone tails, names and 초성."""
    people = list(academy.students.values())
    terms = []
    for i in range(n):
        _, name, phone = rng.choice(people)
        terms.append([phone[-4:], name, initials(name)][i % 3])
    return terms


def k6_data(
    academies: list[Academy], tokens: dict[str, str], viewers: int, pool: int
) -> dict[str, Any]:
    """What the load generator needs: per role, tokens and the ids they open."""
    rng = random.Random(17)
    per = max(1, viewers // len(academies))
    out: dict[str, list[Any]] = {
        "viewers": [],
        "students": [],
        "parents": [],
        "classes": [],
        "staff": [],
    }
    for a in academies:
        by_student: dict[uuid.UUID, uuid.UUID] = {}
        for lec in a.lectures:
            for s in lec.students:
                by_student.setdefault(s, lec.video)
        ids = list(a.students)
        for sid in ids[:per]:
            out["viewers"].append({"t": tokens[a.students[sid][0]], "v": str(by_student[sid])})
        for sid in ids[per : per + pool]:
            out["students"].append({"t": tokens[a.students[sid][0]], "s": str(sid)})
        for email, sid in a.parents[:pool]:
            out["parents"].append({"t": tokens[email], "s": str(sid)})
        for lec in a.lectures:
            out["classes"].append({"t": tokens[lec.teacher], "session": str(lec.today),
                                   "exam": str(lec.exam), "students": [str(s) for s in lec.students]})  # fmt: skip
        out["staff"].append({"t": tokens[a.owner], "q": search_terms(a, rng),
                             "ids": [str(s) for s in rng.sample(ids, 10)]})  # fmt: skip
    rng.shuffle(out["classes"])
    return out


def pool_emails(academies: list[Academy], viewers: int, pool: int) -> list[str]:
    """Every account ``k6_data`` needs a token for."""
    per = max(1, viewers // len(academies))
    emails = []
    for a in academies:
        people = list(a.students.values())
        emails += [p[0] for p in people[: per + pool]]
        emails += [e for e, _ in a.parents[:pool]]
        emails += sorted({lec.teacher for lec in a.lectures})
        emails.append(a.owner)
    return emails
