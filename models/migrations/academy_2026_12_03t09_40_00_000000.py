"""An exam's OMR key ID: the student number that marks a scanned sheet as the answer key
of its batch (for example all 9s), not a student's answers."""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T09:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "exam omr key id"

FORWARD = ["ALTER TABLE exam ADD COLUMN omr_key_id varchar(32) NULL"]
BACKWARD = ["ALTER TABLE exam DROP COLUMN IF EXISTS omr_key_id"]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
