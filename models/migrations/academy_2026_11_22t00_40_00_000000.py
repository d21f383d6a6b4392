"""Constraints the ORM cannot declare: per-tenant unique e-mail, the sweeper's index."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T00:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "spine constraints"


FORWARD = [
    "CREATE UNIQUE INDEX IF NOT EXISTS app_user_tenant_email_uniq ON app_user (tenant, lower(email))",
    "CREATE INDEX IF NOT EXISTS job_pending_unsent_idx ON job (created_at) WHERE status = 'PENDING'",
    "ALTER TABLE job ADD CONSTRAINT job_progress_range CHECK (progress BETWEEN 0 AND 100)",
]

BACKWARD = [
    "ALTER TABLE job DROP CONSTRAINT IF EXISTS job_progress_range",
    "DROP INDEX IF EXISTS job_pending_unsent_idx",
    "DROP INDEX IF EXISTS app_user_tenant_email_uniq",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
