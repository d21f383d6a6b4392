"""Messaging: provider settings per tenant, sender numbers, templates, messages and the
shared rate-limit buckets. Matches ``models/messaging.py``."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T02:55:17:000000"
VERSION = "1.38.0"
DESCRIPTION = "messaging"

FK = "ON DELETE CASCADE ON UPDATE CASCADE"

FORWARD = [
    f"""
    CREATE TABLE messaging_config (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL UNIQUE REFERENCES tenant (id) {FK},
        provider VARCHAR(32) NOT NULL DEFAULT '',
        credentials TEXT NULL DEFAULT NULL,
        pf_id VARCHAR(64) NOT NULL DEFAULT '',
        opt_out_number VARCHAR(20) NOT NULL DEFAULT '',
        auto_absence BOOLEAN NOT NULL DEFAULT true,
        auto_late BOOLEAN NOT NULL DEFAULT true,
        auto_score BOOLEAN NOT NULL DEFAULT true,
        auto_video_reminder BOOLEAN NOT NULL DEFAULT true,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    f"""
    CREATE TABLE sender_number (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        phone VARCHAR(20) NOT NULL,
        label VARCHAR(100) NOT NULL DEFAULT '',
        is_default BOOLEAN NOT NULL DEFAULT false,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (tenant, phone)
    )
    """,
    "CREATE INDEX sender_number_tenant ON sender_number (tenant)",
    "CREATE UNIQUE INDEX sender_number_one_default ON sender_number (tenant) WHERE is_default",
    f"""
    CREATE TABLE message_template (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        code VARCHAR(64) NOT NULL,
        name VARCHAR(100) NOT NULL DEFAULT '',
        channel VARCHAR(16) NOT NULL DEFAULT 'sms' CHECK (channel IN ('sms', 'alimtalk')),
        subject VARCHAR(120) NOT NULL DEFAULT '',
        body TEXT NOT NULL,
        kakao_template_id VARCHAR(64) NOT NULL DEFAULT '',
        advertising BOOLEAN NOT NULL DEFAULT false,
        strip_unencodable BOOLEAN NOT NULL DEFAULT false,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (tenant, code)
    )
    """,
    "CREATE INDEX message_template_tenant ON message_template (tenant)",
    f"""
    CREATE TABLE message (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        job UUID NULL DEFAULT NULL REFERENCES job (id) ON DELETE SET NULL ON UPDATE CASCADE,
        event_id UUID NULL DEFAULT NULL,
        idempotency_key VARCHAR(300) NOT NULL UNIQUE,
        parent UUID NULL DEFAULT NULL,
        student UUID NULL DEFAULT NULL REFERENCES student (id) ON DELETE SET NULL ON UPDATE CASCADE,
        guardian UUID NULL DEFAULT NULL REFERENCES guardian (id) ON DELETE SET NULL ON UPDATE CASCADE,
        to_phone VARCHAR(20) NOT NULL,
        from_phone VARCHAR(20) NOT NULL,
        channel VARCHAR(16) NOT NULL CHECK (channel IN ('sms', 'lms', 'alimtalk')),
        subject VARCHAR(120) NOT NULL DEFAULT '',
        body TEXT NOT NULL,
        template_code VARCHAR(64) NOT NULL DEFAULT '',
        kakao_template_id VARCHAR(64) NOT NULL DEFAULT '',
        pf_id VARCHAR(64) NOT NULL DEFAULT '',
        variables JSONB NOT NULL DEFAULT '{{}}',
        strip_unencodable BOOLEAN NOT NULL DEFAULT false,
        advertising BOOLEAN NOT NULL DEFAULT false,
        status VARCHAR(16) NOT NULL DEFAULT 'queued' CHECK (status IN
            ('queued', 'sending', 'sent', 'delivered', 'failed', 'fallback_sent')),
        provider VARCHAR(32) NOT NULL DEFAULT '',
        provider_message_id VARCHAR(100) NULL DEFAULT NULL,
        provider_code VARCHAR(32) NOT NULL DEFAULT '',
        error TEXT NULL DEFAULT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_at TIMESTAMPTZ NULL DEFAULT NULL,
        sent_at TIMESTAMPTZ NULL DEFAULT NULL,
        delivered_at TIMESTAMPTZ NULL DEFAULT NULL,
        polls INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX message_tenant ON message (tenant)",
    # The log: newest first, a stable cursor.
    "CREATE INDEX message_tenant_created ON message (tenant, created_at DESC, id DESC)",
    "CREATE INDEX message_tenant_student ON message (tenant, student, created_at DESC)",
    "CREATE INDEX message_job ON message (job) WHERE job IS NOT NULL",
    "CREATE INDEX message_provider_id ON message (provider_message_id) "
    "WHERE provider_message_id IS NOT NULL",
    # Rows whose outcome is still open (a sweep finds stale claims and unreported sends).
    "CREATE INDEX message_open ON message (status, claimed_at) "
    "WHERE status IN ('queued', 'sending', 'sent')",
    """
    CREATE TABLE message_rate_bucket (
        key VARCHAR(200) PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    # The dispatcher scans unprocessed events.
    "CREATE INDEX outbox_event_unprocessed ON outbox_event (created_at) "
    "WHERE processed_at IS NULL",
]

BACKWARD = [
    "DROP INDEX IF EXISTS outbox_event_unprocessed",
    "DROP TABLE IF EXISTS message_rate_bucket",
    "DROP TABLE IF EXISTS message",
    "DROP TABLE IF EXISTS message_template",
    "DROP TABLE IF EXISTS sender_number",
    "DROP TABLE IF EXISTS messaging_config",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
