"""Videos and watch progress: the query layer."""

from __future__ import annotations

import datetime as dt

from models.db import connection


async def emit_due_reminders(today: dt.date, *, look_back_days: int = 7) -> int:
    """Record one ``video.unwatched`` outbox event per enrolled student who has not
    completed a READY video whose due date has passed (within ``look_back_days``, so a
    due date set long ago does not wake up on the day reminders are switched on).

    Safe to repeat: the dedupe key (video, student) makes each reminder happen once."""
    async with connection() as conn:
        rows = await conn.fetch(
            """
            INSERT INTO outbox_event (id, tenant, kind, dedupe_key, payload, created_at, attempts)
            SELECT gen_random_uuid(), v.tenant, 'video.unwatched',
                   'video.unwatched:' || v.id || ':' || e.student,
                   jsonb_build_object('video_id', v.id, 'student_id', e.student,
                                      'title', v.title, 'due_date', v.due_date),
                   now(), 0
            FROM video v
            JOIN enrollment e ON e.tenant = v.tenant AND e.lecture = v.lecture
                             AND e.status = 'active'
            JOIN student s ON s.id = e.student AND s.deleted_at IS NULL
            LEFT JOIN video_watch w ON w.video = v.id AND w.student = e.student
            WHERE v.status = 'READY' AND v.due_date < $1 AND v.due_date >= $1 - $2::int
              AND (w.id IS NULL OR NOT w.completed)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING 1
            """,
            today,
            look_back_days,
        )
    return len(rows)
