"""Students keep the 학년 cell an import read (``grade_raw``), beside the normalised
``grade`` (초1..고3) derived from it."""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T09:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "student grade as written"

FORWARD = ["ALTER TABLE student ADD COLUMN grade_raw varchar(100) NOT NULL DEFAULT ''"]
BACKWARD = ["ALTER TABLE student DROP COLUMN IF EXISTS grade_raw"]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
