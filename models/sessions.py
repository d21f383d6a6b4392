"""A lecture's sessions (회차): the query layer.

**Numbering**: a session's ``seq`` is taken under the lecture lock (``lock_lecture``) and
never changes; a new session is numbered after the highest number in use, so a deleted one
leaves a gap. The writes that number sessions take the locked lecture (``Seats``) as their
argument, so they cannot be called without the lock.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from models.db import transaction
from models.enrollments import Seats
from models.errors import Problem
from models.lectures import Slot
from models.pages import Page, Params, as_int, decode_cursor_as, keyset, page_from
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Lecture as LectureTable
from models.tables import LectureSession as SessionTable


class Session(msgspec.Struct):
    id: uuid.UUID
    lecture_id: uuid.UUID
    seq: int
    date: dt.date
    start_time: str | None  # "HH:MM"
    end_time: str | None
    topic: str
    video_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


SESSION_COLUMNS = """
    ls.id, ls.lecture AS lecture_id, ls.seq, ls.date,
    to_char(ls.start_time, 'HH24:MI') AS start_time, to_char(ls.end_time, 'HH24:MI') AS end_time,
    ls.topic, ls.video_id, ls.created_at, ls.updated_at
"""

BY_SEQ = keyset(("ls.seq", as_int))


async def get_session(scope: TenantScope, session_id: Any, *, lock: bool = False) -> Session:
    """One session; ``lock``: locked for the rest of the caller's transaction."""
    return await scope.one(
        Session,
        SessionTable,
        f"SELECT {SESSION_COLUMNS} FROM lecture_session ls WHERE ls.tenant = $1 AND ls.id = $2"
        + (" FOR UPDATE" if lock else ""),
        session_id,
    )


async def list_sessions(
    scope: TenantScope, lecture_id: Any, *, limit: int, cursor: str | None
) -> Page[Session]:
    """A lecture's sessions by number. One statement: the lecture row tells "no such
    lecture" (404) from "no sessions"."""
    after = decode_cursor_as(cursor, as_int)
    rows = await scope.fetch(
        f"""
        SELECT r.* FROM lecture l
        LEFT JOIN LATERAL (
            SELECT {SESSION_COLUMNS} FROM lecture_session ls
            WHERE ls.lecture = l.id AND ls.seq > $3
            ORDER BY ls.seq LIMIT $4
        ) r ON true
        WHERE l.tenant = $1 AND l.id = $2
        """,
        parse_id(LectureTable, lecture_id),
        after[0] if after else 0,
        limit + 1,
    )
    if not rows:
        raise NotFoundInTenant(LectureTable, lecture_id)
    return page_from([r for r in rows if r["id"] is not None], limit, BY_SEQ, Session)


async def add_session(scope: TenantScope, lecture: Seats, values: dict[str, Any]) -> Session:
    """Insert one session (checked column values, ``date`` required) numbered after the
    highest in use; ``lecture`` is the locked lecture."""
    session_id = await scope.value(
        """
        INSERT INTO lecture_session
            (id, tenant, lecture, seq, date, start_time, end_time, topic, video_id,
             created_at, updated_at)
        SELECT gen_random_uuid(), $1, $2, COALESCE(max(seq), 0) + 1, $3, $4, $5, $6, $7,
               now(), now()
        FROM lecture_session WHERE tenant = $1 AND lecture = $2
        RETURNING id
        """,
        lecture.id,
        values["date"],
        values.get("start_time"),
        values.get("end_time"),
        values.get("topic", ""),
        values.get("video_id"),
    )
    return await get_session(scope, session_id)


async def update_session(scope: TenantScope, session_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Change the columns in ``values`` (never the number)."""
    if values:
        columns = {getattr(SessionTable, k): v for k, v in values.items()}
        columns[SessionTable.updated_at] = dt.datetime.now(dt.UTC)
        await scope.update(SessionTable, columns).where(SessionTable.id == session_id)


async def delete_session(scope: TenantScope, session_id: Any) -> None:
    """Delete a session; the others keep their numbers. A session with attendance is a 409
    ``/problems/session-has-attendance``: deleting it would cascade to the records."""
    async with transaction():
        current = await get_session(scope, session_id, lock=True)
        has_attendance = await scope.value(
            "SELECT 1 FROM attendance WHERE tenant = $1 AND session = $2 LIMIT 1", current.id
        )
        if has_attendance is not None:
            raise Problem(
                409,
                "attendance was recorded for this session",
                type_="/problems/session-has-attendance",
            )
        await scope.execute("DELETE FROM lecture_session WHERE tenant = $1 AND id = $2", current.id)


# --- generation from the weekly schedule -------------------------------------------------


class Term(msgspec.Struct):
    """What generating a locked lecture's sessions starts from: its dates and weekly
    schedule, and the sessions it has, as (date, start time), with the next free number."""

    start_date: dt.date | None
    end_date: dt.date | None
    schedule: list[Slot]
    have: set[tuple[dt.date, dt.time | None]]
    next_seq: int


class _Dates(msgspec.Struct):
    start_date: dt.date | None
    end_date: dt.date | None
    schedule: list[Slot]


class _Have(msgspec.Struct):
    date: dt.date
    start_time: dt.time | None
    seq: int


async def term_of(scope: TenantScope, lecture: Seats) -> Term:
    """The locked lecture's ``Term``."""
    dates = await scope.row(
        _Dates,
        "SELECT start_date, end_date, schedule FROM lecture WHERE tenant = $1 AND id = $2",
        lecture.id,
    )
    have = await scope.rows(
        _Have,
        "SELECT date, start_time, seq FROM lecture_session WHERE tenant = $1 AND lecture = $2",
        lecture.id,
    )
    assert dates is not None  # the lecture is locked
    return Term(
        start_date=dates.start_date,
        end_date=dates.end_date,
        schedule=dates.schedule,
        have={(h.date, h.start_time) for h in have},
        next_seq=max((h.seq for h in have), default=0) + 1,
    )


# A session to create: (seq, date, start time, end time).
NewSession = tuple[int, dt.date, dt.time, dt.time]


async def add_sessions(scope: TenantScope, lecture: Seats, new: Sequence[NewSession]) -> None:
    """Insert generated sessions, numbered by the caller from the locked lecture's
    ``Term.next_seq``. One statement for any number."""
    if not new:
        return
    await scope.execute(
        """
        INSERT INTO lecture_session
            (id, tenant, lecture, seq, date, start_time, end_time, topic, created_at, updated_at)
        SELECT gen_random_uuid(), $1, $2, n.seq, n.date, n.start_time, n.end_time, '', now(), now()
        FROM unnest($3::int[], $4::date[], $5::time[], $6::time[])
             AS n(seq, date, start_time, end_time)
        """,
        lecture.id,
        [n[0] for n in new],
        [n[1] for n in new],
        [n[2] for n in new],
        [n[3] for n in new],
    )


async def has_video(scope: TenantScope, video_id: uuid.UUID) -> bool:
    """Whether the video is this academy's (the database refuses another academy's too)
    and, for a teacher, of a lecture they teach."""
    params = Params(video_id)
    own = scope.own_lectures("lecture", params)
    found = await scope.value(
        f"SELECT true FROM video WHERE tenant = $1 AND id = $2 AND {own}", *params.values
    )
    return bool(found)
