"""OMR grading: sheet templates, scan batches and pages; an exam's template and marking.
Matches ``models/omr.py`` and the ``omr_template`` / ``marking`` columns of ``exam``."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T02:58:13:000000"
VERSION = "1.38.0"
DESCRIPTION = "omr grading"

FK = "ON DELETE CASCADE ON UPDATE CASCADE"
SET_NULL = "ON DELETE SET NULL ON UPDATE CASCADE"

FORWARD = [
    f"""
    CREATE TABLE omr_template (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        name VARCHAR(200) NOT NULL,
        source VARCHAR(16) NOT NULL DEFAULT 'custom'
            CHECK (source IN ('custom', 'builtin', 'omrchecker')),
        spec JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (tenant, name)
    )
    """,
    "CREATE INDEX omr_template_tenant ON omr_template (tenant)",
    f"ALTER TABLE exam ADD COLUMN omr_template UUID NULL DEFAULT NULL "
    f"REFERENCES omr_template (id) {SET_NULL}",
    "ALTER TABLE exam ADD COLUMN marking JSONB NULL DEFAULT NULL",
    "CREATE INDEX exam_omr_template ON exam (omr_template)",
    f"""
    CREATE TABLE omr_batch (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        exam UUID NOT NULL REFERENCES exam (id) {FK},
        template UUID NULL DEFAULT NULL REFERENCES omr_template (id) {SET_NULL},
        template_spec JSONB NOT NULL,
        job UUID NULL DEFAULT NULL REFERENCES job (id) {SET_NULL},
        tier VARCHAR(16) NOT NULL DEFAULT 'ai-basic',
        input_keys JSONB NOT NULL DEFAULT '[]',
        page_count INTEGER NULL DEFAULT NULL CHECK (page_count >= 0),
        pages_done INTEGER NOT NULL DEFAULT 0 CHECK (pages_done >= 0),
        pages_failed INTEGER NOT NULL DEFAULT 0 CHECK (pages_failed >= 0),
        created_by UUID NULL DEFAULT NULL REFERENCES app_user (id) {SET_NULL},
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        finished_at TIMESTAMPTZ NULL DEFAULT NULL,
        CHECK (page_count IS NULL OR pages_done <= page_count)
    )
    """,
    "CREATE INDEX omr_batch_tenant ON omr_batch (tenant)",
    "CREATE INDEX omr_batch_exam ON omr_batch (exam, created_at)",
    "CREATE INDEX omr_batch_job ON omr_batch (job)",
    f"""
    CREATE TABLE omr_page (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        batch UUID NOT NULL REFERENCES omr_batch (id) {FK},
        page_no INTEGER NOT NULL CHECK (page_no >= 1),
        source VARCHAR(255) NOT NULL DEFAULT '',
        image_key TEXT NULL DEFAULT NULL,
        status VARCHAR(16) NOT NULL DEFAULT 'PENDING'
            CHECK (status IN ('PENDING', 'DONE', 'FAILED')),
        error_code VARCHAR(32) NULL DEFAULT NULL,
        error TEXT NULL DEFAULT NULL,
        reading JSONB NULL DEFAULT NULL,
        answers JSONB NULL DEFAULT NULL,
        results JSONB NULL DEFAULT NULL,
        student_number VARCHAR(32) NULL DEFAULT NULL,
        student UUID NULL DEFAULT NULL REFERENCES student (id) {SET_NULL},
        score NUMERIC(7, 2) NULL DEFAULT NULL,
        needs_review BOOLEAN NOT NULL DEFAULT false,
        review_items JSONB NOT NULL DEFAULT '[]',
        reviewed_by UUID NULL DEFAULT NULL REFERENCES app_user (id) {SET_NULL},
        reviewed_at TIMESTAMPTZ NULL DEFAULT NULL,
        annotated_key TEXT NULL DEFAULT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (batch, page_no),
        CHECK (status <> 'FAILED' OR error IS NOT NULL)
    )
    """,
    "CREATE INDEX omr_page_tenant ON omr_page (tenant)",
    "CREATE INDEX omr_page_batch ON omr_page (batch)",
    "CREATE INDEX omr_page_student ON omr_page (student)",
    "CREATE INDEX omr_page_review ON omr_page (tenant, batch) WHERE needs_review",
]

BACKWARD = [
    "DROP TABLE omr_page",
    "DROP TABLE omr_batch",
    "DROP INDEX exam_omr_template",
    "ALTER TABLE exam DROP COLUMN marking",
    "ALTER TABLE exam DROP COLUMN omr_template",
    "DROP TABLE omr_template",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
