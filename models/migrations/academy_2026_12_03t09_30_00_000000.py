"""The job lifeline: a step heartbeat, the step to re-send when a message is lost, and how
many times the lifeline re-sent it (bounded, then the job is FAILED ``lost_in_transit``)."""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "job lifeline"

FORWARD = [
    "ALTER TABLE job ADD COLUMN heartbeat_at timestamptz NULL",
    "ALTER TABLE job ADD COLUMN step_actor varchar(128) NOT NULL DEFAULT ''",
    "ALTER TABLE job ADD COLUMN step_message jsonb NULL",
    "ALTER TABLE job ADD COLUMN lifeline_resends integer NOT NULL DEFAULT 0",
    # The lifeline's scan: only open jobs, by the time they last showed life.
    "CREATE INDEX job_open_heartbeat ON job (coalesce(heartbeat_at, sent_at))"
    " WHERE status IN ('PENDING', 'RUNNING')",
]
BACKWARD = [
    "DROP INDEX IF EXISTS job_open_heartbeat",
    "ALTER TABLE job DROP COLUMN IF EXISTS lifeline_resends",
    "ALTER TABLE job DROP COLUMN IF EXISTS step_message",
    "ALTER TABLE job DROP COLUMN IF EXISTS step_actor",
    "ALTER TABLE job DROP COLUMN IF EXISTS heartbeat_at",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
