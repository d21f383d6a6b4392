"""Excel imports: one row per import job (what it was asked, how far it got), and the
per-tenant import lock. Matches ``models/imports.py``."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T02:52:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "excel imports and the import lock"

FORWARD = [
    """
    CREATE TABLE excel_import (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) ON DELETE CASCADE ON UPDATE CASCADE,
        job UUID NOT NULL UNIQUE REFERENCES job (id) ON DELETE CASCADE ON UPDATE CASCADE,
        sha256 VARCHAR(64) NOT NULL DEFAULT '',
        filename VARCHAR(255) NOT NULL DEFAULT '',
        file_type VARCHAR(8) NOT NULL DEFAULT '',
        input_key TEXT NOT NULL DEFAULT '',
        mode VARCHAR(8) NOT NULL DEFAULT 'upsert' CHECK (mode IN ('insert', 'upsert')),
        dry_run BOOLEAN NOT NULL DEFAULT false,
        lecture_ids JSONB NOT NULL DEFAULT '[]',
        step VARCHAR(16) NOT NULL DEFAULT 'uploaded',
        header_row INTEGER NULL DEFAULT NULL,
        headers JSONB NOT NULL DEFAULT '[]',
        total_rows INTEGER NOT NULL DEFAULT 0,
        chunks INTEGER NOT NULL DEFAULT 0,
        applied_chunks INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        merged INTEGER NOT NULL DEFAULT 0,
        enrolled INTEGER NOT NULL DEFAULT 0,
        apply_errors JSONB NOT NULL DEFAULT '[]',
        timings JSONB NOT NULL DEFAULT '{}',
        same_file_as UUID NULL DEFAULT NULL,
        waiting_since TIMESTAMPTZ NULL DEFAULT NULL,
        apply_started_at TIMESTAMPTZ NULL DEFAULT NULL,
        apply_finished_at TIMESTAMPTZ NULL DEFAULT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX excel_import_tenant ON excel_import (tenant)",
    # "The same file again": earlier applied imports of this tenant with this content.
    "CREATE INDEX excel_import_tenant_sha ON excel_import (tenant, sha256)",
    """
    CREATE TABLE import_lock (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL UNIQUE REFERENCES tenant (id) ON DELETE CASCADE ON UPDATE CASCADE,
        job UUID NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
]

BACKWARD = [
    "DROP TABLE IF EXISTS import_lock",
    "DROP TABLE IF EXISTS excel_import",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
