"""The outbox events automatic notices come from, and the facts behind them read afresh
(an attendance mark, a score, a video's due date and whether the student watched it).

An event is taken under a row lock (``FOR UPDATE SKIP LOCKED``) in the dispatcher's
transaction and marked processed in it, so two dispatchers never both notify; a failing
event is retried a few times and then set aside with its error.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from models import db
from models.scope import TenantScope

# After this many failed attempts an event is marked processed with its last error.
MAX_ATTEMPTS = 5


class OutboxEvent(msgspec.Struct):
    id: uuid.UUID
    tenant: uuid.UUID
    kind: str
    payload: dict[str, Any]


class AttendanceFact(msgspec.Struct):
    status: str
    title: str
    date: dt.date


class ScoreFact(msgspec.Struct):
    score: Decimal
    title: str
    max_score: Decimal


class VideoFact(msgspec.Struct):
    title: str
    due_date: dt.date | None
    completed: bool


async def events_waiting(kinds: Sequence[str]) -> bool:
    return bool(
        await db.value(
            "SELECT EXISTS (SELECT 1 FROM outbox_event "
            "WHERE processed_at IS NULL AND kind = ANY($1::text[]))",
            list(kinds),
        )
    )


async def unprocessed_events(kinds: Sequence[str], limit: int) -> list[uuid.UUID]:
    """The oldest unprocessed events of these kinds."""
    async with db.connection() as conn:
        found = await conn.fetch(
            """
            SELECT id FROM outbox_event
            WHERE processed_at IS NULL AND kind = ANY($1::text[])
            ORDER BY created_at LIMIT $2
            """,
            list(kinds),
            limit,
        )
    return [r["id"] for r in found]


async def take_event(event_id: uuid.UUID) -> OutboxEvent | None:
    """The event, locked for the caller's transaction; None when it is processed or
    another dispatcher holds it."""
    return await db.row(
        OutboxEvent,
        """
        SELECT id, tenant, kind, payload FROM outbox_event
        WHERE id = $1 AND processed_at IS NULL FOR UPDATE SKIP LOCKED
        """,
        event_id,
    )


async def mark_processed(event_id: uuid.UUID, note: str | None) -> None:
    """Done (``note``: why nothing was sent, if so)."""
    await db.execute(
        """
        UPDATE outbox_event SET processed_at = now(), attempts = attempts + 1,
                                last_error = $2
        WHERE id = $1
        """,
        event_id,
        note,
    )


async def mark_attempt_failed(event_id: uuid.UUID, error: str) -> None:
    """One more failed attempt; the last one allowed sets the event aside."""
    await db.execute(
        """
        UPDATE outbox_event SET attempts = attempts + 1, last_error = $2,
               processed_at = CASE WHEN attempts + 1 >= $3 THEN now() END
        WHERE id = $1
        """,
        event_id,
        error[:2000],
        MAX_ATTEMPTS,
    )


async def attendance_fact(tenant_id: Any, payload: dict[str, Any]) -> AttendanceFact | None:
    return await TenantScope(tenant_id).row(
        AttendanceFact,
        """
        SELECT a.status, l.title, s.date FROM attendance a
        JOIN lecture_session s ON s.id = a.session
        JOIN lecture l ON l.id = s.lecture
        WHERE a.tenant = $1 AND a.session = $2::uuid AND a.student = $3::uuid
        """,
        payload["session_id"],
        payload["student_id"],
    )


async def score_fact(tenant_id: Any, payload: dict[str, Any]) -> ScoreFact | None:
    return await TenantScope(tenant_id).row(
        ScoreFact,
        """
        SELECT sc.score, e.title, e.max_score FROM score sc JOIN exam e ON e.id = sc.exam
        WHERE sc.tenant = $1 AND sc.exam = $2::uuid AND sc.student = $3::uuid
        """,
        payload["exam_id"],
        payload["student_id"],
    )


async def video_fact(tenant_id: Any, payload: dict[str, Any]) -> VideoFact | None:
    return await TenantScope(tenant_id).row(
        VideoFact,
        """
        SELECT v.title, v.due_date, coalesce(w.completed, false) AS completed
        FROM video v LEFT JOIN video_watch w ON w.video = v.id AND w.student = $3::uuid
        WHERE v.tenant = $1 AND v.id = $2::uuid
        """,
        payload["video_id"],
        payload["student_id"],
    )
