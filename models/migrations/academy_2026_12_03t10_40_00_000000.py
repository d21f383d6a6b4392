"""NOTIFY ``job_progress`` with the job's id whenever its status, stage or progress
changes, so the API can push live progress (``GET /api/v1/jobs/{id}/events``) without
anyone polling the row.

Postgres delivers the notification only at COMMIT (a rolled-back change tells no one) and
folds identical ones within a transaction. The payload is the id alone: a listener reads
the row through the tenant scope, so nothing of one academy travels to another's stream.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T10:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "job progress notifications"

FORWARD = [
    """
    CREATE FUNCTION job_progress_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('job_progress', NEW.id::text);
        RETURN NULL;
    END $$
    """,
    # A heartbeat or a lifeline bookkeeping update changes none of these: no notification.
    "CREATE TRIGGER job_progress_notify AFTER UPDATE OF status, stage, progress ON job "
    "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status "
    "OR OLD.stage IS DISTINCT FROM NEW.stage OR OLD.progress IS DISTINCT FROM NEW.progress) "
    "EXECUTE FUNCTION job_progress_notify()",
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS job_progress_notify ON job",
    "DROP FUNCTION IF EXISTS job_progress_notify()",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
