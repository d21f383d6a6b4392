"""One index of unprocessed outbox events, not two.

Two migrations each created the same partial index on ``outbox_event (created_at) WHERE
processed_at IS NULL`` under different names; every event recorded (an absence, a score)
and every event processed paid for both.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-04T03:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "drop the duplicate index of unprocessed outbox events"

FORWARD = ["DROP INDEX IF EXISTS outbox_unprocessed_idx"]

BACKWARD = [
    "CREATE INDEX IF NOT EXISTS outbox_unprocessed_idx ON outbox_event (created_at) "
    "WHERE processed_at IS NULL"
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
