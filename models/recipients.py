"""Who a message goes to: the guardians a send target names, in a stable order (a
student's primary guardian first), and the check that every id of a target is this
academy's."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from models.enrollments import ACTIVE
from models.scope import TenantScope
from pipelines.messaging.compose import Recipient, explicit_recipients

GUARDIAN_OF_STUDENT = """
    SELECT g.id AS guardian_id, g.name AS guardian_name, g.phone,
           s.id AS student_id, s.name AS student_name
"""
# Over ``student s``: its guardians, primary first.
GUARDIANS_JOIN = """
    JOIN student_guardian sg ON sg.student = s.id AND sg.tenant = $1
    JOIN guardian g ON g.id = sg.guardian AND g.tenant = $1
"""
GUARDIANS_ORDER = "ORDER BY s.id, sg.is_primary DESC, g.id"

GUARDIANS_OF_STUDENTS = f"""
    {GUARDIAN_OF_STUDENT}
    FROM student s
    {GUARDIANS_JOIN}
    WHERE s.tenant = $1 AND s.deleted_at IS NULL AND s.id = ANY($2::uuid[])
    {GUARDIANS_ORDER}
"""

# The guardians of a lecture's actively enrolled students.
GUARDIANS_OF_LECTURE = f"""
    {GUARDIAN_OF_STUDENT}
    FROM enrollment e
    JOIN student s ON s.id = e.student AND s.tenant = $1
    {GUARDIANS_JOIN}
    WHERE e.tenant = $1 AND e.lecture = $2::uuid AND {ACTIVE}
    {GUARDIANS_ORDER}
"""

# A guardian alone: the student is known when the guardian has exactly one (live) student.
GUARDIANS = """
    SELECT g.id AS guardian_id, g.name AS guardian_name, g.phone,
           (CASE WHEN count(s.id) = 1 THEN (array_agg(s.id))[1] END) AS student_id,
           coalesce(CASE WHEN count(s.id) = 1 THEN (array_agg(s.name))[1] END, '')
               AS student_name
    FROM guardian g
    LEFT JOIN student_guardian sg ON sg.guardian = g.id AND sg.tenant = $1
    LEFT JOIN student s ON s.id = sg.student AND s.deleted_at IS NULL
    WHERE g.tenant = $1 AND g.id = ANY($2::uuid[])
    GROUP BY g.id
    ORDER BY g.id
"""


async def resolve_recipients(scope: TenantScope, target: dict[str, Any]) -> list[Recipient]:
    """The people a target names, in a stable order. Targets: ``guardian_ids``,
    ``student_ids`` (their guardians), ``lecture_id`` (guardians of its active students),
    or ``recipients`` (explicit ``{phone, name}``, one message per phone)."""
    if target.get("recipients") is not None:
        return explicit_recipients(target["recipients"])
    if target.get("lecture_id"):
        return await scope.rows(
            Recipient, GUARDIANS_OF_LECTURE, uuid.UUID(str(target["lecture_id"]))
        )
    if target.get("student_ids") is not None:
        ids = [uuid.UUID(str(s)) for s in target["student_ids"]]
        return await scope.rows(Recipient, GUARDIANS_OF_STUDENTS, ids)
    if target.get("guardian_ids") is not None:
        ids = [uuid.UUID(str(g)) for g in target["guardian_ids"]]
        return await scope.rows(Recipient, GUARDIANS, ids)
    raise ValueError("a target needs guardian_ids, student_ids, lecture_id or recipients")


async def unknown_ids(
    scope: TenantScope, name: Literal["student_ids", "guardian_ids"], ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """The ids of a target that are not this academy's live students (or guardians)."""
    if name == "student_ids":
        sql = (
            "SELECT id FROM student WHERE tenant = $1 AND id = ANY($2::uuid[]) "
            "AND deleted_at IS NULL"
        )
    else:
        sql = "SELECT id FROM guardian WHERE tenant = $1 AND id = ANY($2::uuid[])"
    found = set(await scope.values(sql, ids))
    return [i for i in ids if i not in found]
