"""The job lifeline: a step heartbeat, the step to re-send when a message is lost, and how
many times the lifeline re-sent it (bounded, then the job is FAILED ``lost_in_transit``).

The re-sends join the ``/metrics`` job summary (``job_stat``, kept by the trigger on
``job``): one more summed column, and the trigger also fires on ``lifeline_resends``."""

from models.migrations.academy_2026_12_03t09_00_00_000000 import FORWARD as SUMMARY
from models.raw_migration import raw_sql_manager


def _statement(prefix: str) -> str:
    (found,) = [s for s in SUMMARY if s.strip().startswith(prefix)]
    return found.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")


# The summary's row function, trigger function and trigger as the job-summary migration made
# them, and the same with the re-sends as one more summed column.
WITHOUT_RESENDS = [
    _statement("CREATE FUNCTION job_stat_row"),
    _statement("CREATE FUNCTION job_stat_track"),
]
TRACKED_COLUMNS = _statement("CREATE TRIGGER job_stat_track")


def _swap(text: str, old: str, new: str) -> str:
    assert old in text, f"the summary migration changed: {old!r} not found"
    return text.replace(old, new)


WITH_RESENDS = [
    _swap(
        WITHOUT_RESENDS[0],
        "coalesce(t.wait, 0)::numeric\n",
        "coalesce(t.wait, 0)::numeric, j.lifeline_resends::bigint\n",
    ),
    _swap(WITHOUT_RESENDS[1], "-was.wait_sum)", "-was.wait_sum, -was.resends)"),
]

ID = "2026-12-03T09:50:00:000000"
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
    # Every job has 0 re-sends now, so the summary's new column starts right at 0.
    "ALTER TABLE job_stat ADD COLUMN resends bigint NOT NULL DEFAULT 0",
    "ALTER TABLE job_stat_delta ADD COLUMN resends bigint NOT NULL DEFAULT 0",
    *WITH_RESENDS,
    "DROP TRIGGER job_stat_track ON job",
    _swap(TRACKED_COLUMNS, "finished_at ON job", "finished_at, lifeline_resends ON job"),
]
BACKWARD = [
    "DROP TRIGGER job_stat_track ON job",
    "ALTER TABLE job_stat_delta DROP COLUMN resends",
    "ALTER TABLE job_stat DROP COLUMN resends",
    *WITHOUT_RESENDS,
    TRACKED_COLUMNS,
    "DROP INDEX IF EXISTS job_open_heartbeat",
    "ALTER TABLE job DROP COLUMN IF EXISTS lifeline_resends",
    "ALTER TABLE job DROP COLUMN IF EXISTS step_message",
    "ALTER TABLE job DROP COLUMN IF EXISTS step_actor",
    "ALTER TABLE job DROP COLUMN IF EXISTS heartbeat_at",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
