"""Constraints the ORM cannot declare: per-tenant unique e-mail, the sweeper's index."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from models.db import DB

ID = "2026-11-22T00:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "spine constraints"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="academy", description=DESCRIPTION)

    async def run():
        await DB.run_ddl(
            "CREATE UNIQUE INDEX IF NOT EXISTS app_user_tenant_email_uniq "
            "ON app_user (tenant, lower(email))"
        )
        await DB.run_ddl(
            "CREATE INDEX IF NOT EXISTS job_pending_unsent_idx "
            "ON job (created_at) WHERE status = 'PENDING'"
        )
        await DB.run_ddl(
            "ALTER TABLE job ADD CONSTRAINT job_progress_range CHECK (progress BETWEEN 0 AND 100)"
        )

    async def run_backwards():
        await DB.run_ddl("ALTER TABLE job DROP CONSTRAINT IF EXISTS job_progress_range")
        await DB.run_ddl("DROP INDEX IF EXISTS job_pending_unsent_idx")
        await DB.run_ddl("DROP INDEX IF EXISTS app_user_tenant_email_uniq")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
