"""Failures get a stable code beside their reason (``error_code`` on jobs and videos: a
video's ``empty_file``, ``not_a_video``, ``corrupt_file``, ``truncated``, ...), and a
session's video is a foreign key: deleting the video clears it in the same statement.
Links to videos that no longer exist are cleared first."""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T09:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "failure codes; lecture_session.video_id references video"

FORWARD = [
    "ALTER TABLE job ADD COLUMN error_code varchar(32) NULL",
    "ALTER TABLE video ADD COLUMN error_code varchar(32) NULL",
    """UPDATE lecture_session s SET video_id = NULL
       WHERE video_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM video v WHERE v.id = s.video_id)""",
    """ALTER TABLE lecture_session ADD CONSTRAINT lecture_session_video_id_fkey
       FOREIGN KEY (video_id) REFERENCES video (id) ON DELETE SET NULL""",
    "CREATE INDEX lecture_session_video_id ON lecture_session (video_id) WHERE video_id IS NOT NULL",
]
BACKWARD = [
    "DROP INDEX IF EXISTS lecture_session_video_id",
    "ALTER TABLE lecture_session DROP CONSTRAINT IF EXISTS lecture_session_video_id_fkey",
    "ALTER TABLE video DROP COLUMN IF EXISTS error_code",
    "ALTER TABLE job DROP COLUMN IF EXISTS error_code",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
