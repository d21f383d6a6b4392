"""Watch rows keep room for their next version, so a heartbeat updates them in place.

Every heartbeat rewrites the student's ``video_watch`` row. With full pages each new
version went to another page and got a new entry in every index of the table; with a
third of each page left free the new version stays on the row's page and, since a
heartbeat changes no indexed column, no index is touched (a HOT update). The index on
``video`` alone is dropped: ``UNIQUE (video, student)`` already serves every look-up by
video, and was one more index each new row version had to enter.

Pages already full keep no room until they are rewritten (VACUUM FULL, or the rows
updated away from them over time).
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T11:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "video_watch: room on each page for heartbeat updates in place"

FORWARD = [
    "ALTER TABLE video_watch SET (fillfactor = 70)",
    "DROP INDEX IF EXISTS video_watch_video",
]
BACKWARD = [
    "CREATE INDEX IF NOT EXISTS video_watch_video ON video_watch (video)",
    "ALTER TABLE video_watch RESET (fillfactor)",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
