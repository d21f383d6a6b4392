"""Videos get an optional due date: students enrolled in the lecture who have not completed
the video by then get one reminder each (``video.unwatched`` outbox events)."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T03:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "video due date"

FORWARD = [
    "ALTER TABLE video ADD COLUMN due_date date NULL",
    "CREATE INDEX video_due_date ON video (due_date) WHERE due_date IS NOT NULL",
]
BACKWARD = [
    "DROP INDEX IF EXISTS video_due_date",
    "ALTER TABLE video DROP COLUMN IF EXISTS due_date",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
