"""Database rules that no endpoint shows directly."""

from __future__ import annotations

import datetime as dt

import pytest

from models.db import connection
from models.events import record_audit
from models.tables import (
    AuditLog,
    Enrollment,
    Exam,
    Lecture,
    LectureSession,
    Score,
    User,
    Video,
)
from tests.factories import create_student


async def test_deleting_an_account_keeps_what_it_touched(tenant):
    email = await tenant.add_user("teacher")
    teacher = await User.select(User.id).where(User.email == email).first()
    student = await create_student(tenant)
    lecture = Lecture(tenant=tenant.id, title="수학", teacher=teacher["id"])
    await lecture.save()
    exam = Exam(tenant=tenant.id, lecture=lecture.id, title="중간")
    await exam.save()
    await Score(
        tenant=tenant.id, exam=exam.id, student=student["id"], score=90, updated_by=teacher["id"]
    ).save()

    await User.delete().where(User.id == teacher["id"])

    kept = await Lecture.select(Lecture.teacher).where(Lecture.id == lecture.id).first()
    assert kept == {"teacher": None}
    assert await Score.count().where(Score.exam == exam.id) == 1


async def test_an_account_with_history_cannot_be_deleted(tenant):
    email = await tenant.add_user("teacher")
    teacher = await User.select(User.id).where(User.email == email).first()
    await record_audit(tenant_id=tenant.id, actor_id=teacher["id"], entity="score", entity_id=teacher["id"],
                       action="create", before=None, after={"score": 90})  # fmt: skip
    with pytest.raises(Exception, match="audit_log"):
        await User.delete().where(User.id == teacher["id"])
    audit = await AuditLog.select(AuditLog.actor).where(AuditLog.entity_id == teacher["id"]).first()
    assert audit["actor"] == teacher["id"]


async def test_audit_log_is_append_only(tenant):
    student = await create_student(tenant)
    await record_audit(tenant_id=tenant.id, actor_id=None, entity="attendance", entity_id=student["id"],
                       action="update", before={"status": "absent"}, after={"status": "present"})  # fmt: skip
    with pytest.raises(Exception, match="append-only"):
        await AuditLog.update({AuditLog.action: "forged"}).where(
            AuditLog.entity_id == student["id"]
        )
    with pytest.raises(Exception, match="append-only"):
        await AuditLog.delete().where(AuditLog.entity_id == student["id"])


async def test_a_reference_cannot_cross_into_another_academy(make_tenant):
    """Finding 7: a row of one academy pointing at another academy's row is refused by the
    database itself, whoever writes it (here, a session's video and an enrollment)."""
    mine, other = await make_tenant(), await make_tenant()
    student = await create_student(other)
    lecture = Lecture(tenant=mine.id, title="수학")
    await lecture.save()
    with pytest.raises(Exception, match="same_tenant"):
        await Enrollment(tenant=mine.id, lecture=lecture.id, student=student["id"]).save()

    theirs = Lecture(tenant=other.id, title="영어")
    await theirs.save()
    video = Video(tenant=other.id, lecture=theirs.id, title="v", raw_key="k")
    await video.save()
    session = LectureSession(tenant=mine.id, lecture=lecture.id, seq=1, date=dt.date(2026, 3, 2))
    await session.save()
    with pytest.raises(Exception, match="same_tenant"):
        await LectureSession.update({LectureSession.video_id: video.id}).where(
            LectureSession.id == session.id
        )


async def test_no_two_indexes_of_a_table_are_the_same(database):
    """An index that repeats another (same columns, expressions, operator classes and
    predicate) costs every write and serves no read."""
    async with connection() as conn:
        repeated = await conn.fetch(
            """
            SELECT i.indrelid::regclass::text AS tab, array_agg(i.indexrelid::regclass::text) AS ixs
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid
            WHERE c.relnamespace = 'public'::regnamespace
            GROUP BY i.indrelid, i.indkey::text, i.indclass::text, i.indcollation::text,
                     coalesce(pg_get_expr(i.indexprs, i.indrelid), ''),
                     coalesce(pg_get_expr(i.indpred, i.indrelid), '')
            HAVING count(*) > 1
            """
        )
    assert [(r["tab"], sorted(r["ixs"])) for r in repeated] == []
