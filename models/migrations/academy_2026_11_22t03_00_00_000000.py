"""Lecture videos and watch progress. Matches ``models/videos.py``."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T03:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "videos and watch progress"

FK = "ON DELETE CASCADE ON UPDATE CASCADE"

FORWARD = [
    f"""
    CREATE TABLE video (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        lecture UUID NOT NULL REFERENCES lecture (id) {FK},
        session UUID NULL DEFAULT NULL
            REFERENCES lecture_session (id) ON DELETE SET NULL ON UPDATE CASCADE,
        title VARCHAR(200) NOT NULL,
        proctored BOOLEAN NOT NULL DEFAULT false,
        status VARCHAR(16) NOT NULL DEFAULT 'UPLOADING'
            CHECK (status IN ('UPLOADING', 'PROCESSING', 'READY', 'FAILED')),
        error TEXT NULL DEFAULT NULL,
        filename VARCHAR(255) NOT NULL DEFAULT '',
        content_type VARCHAR(100) NOT NULL DEFAULT '',
        size_bytes BIGINT NOT NULL DEFAULT 0,
        raw_key TEXT NOT NULL,
        upload_id TEXT NULL DEFAULT NULL,
        job UUID NULL DEFAULT NULL REFERENCES job (id) ON DELETE SET NULL ON UPDATE CASCADE,
        step_done VARCHAR(16) NOT NULL DEFAULT '',
        step_trying VARCHAR(16) NOT NULL DEFAULT '',
        step_attempts INTEGER NOT NULL DEFAULT 0,
        duration_seconds DOUBLE PRECISION NULL DEFAULT NULL,
        width INTEGER NULL DEFAULT NULL,
        height INTEGER NULL DEFAULT NULL,
        probe JSONB NULL DEFAULT NULL,
        rungs JSONB NOT NULL DEFAULT '[]',
        hls_prefix TEXT NULL DEFAULT NULL,
        poster_key TEXT NULL DEFAULT NULL,
        created_by UUID NULL DEFAULT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        ready_at TIMESTAMPTZ NULL DEFAULT NULL,
        raw_deleted_at TIMESTAMPTZ NULL DEFAULT NULL
    )
    """,
    "CREATE INDEX video_tenant ON video (tenant)",
    "CREATE INDEX video_lecture ON video (lecture)",
    "CREATE INDEX video_session ON video (session)",
    # The raw-upload cleanup scans READY videos whose source is still stored.
    "CREATE INDEX video_raw_pending ON video (ready_at) WHERE raw_deleted_at IS NULL",
    f"""
    CREATE TABLE video_watch (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        tenant UUID NOT NULL REFERENCES tenant (id) {FK},
        video UUID NOT NULL REFERENCES video (id) {FK},
        student UUID NOT NULL REFERENCES student (id) {FK},
        intervals JSONB NOT NULL DEFAULT '[]',
        watched_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
        coverage DOUBLE PRECISION NOT NULL DEFAULT 0,
        position DOUBLE PRECISION NOT NULL DEFAULT 0,
        frontier DOUBLE PRECISION NOT NULL DEFAULT 0,
        completed BOOLEAN NOT NULL DEFAULT false,
        completed_at TIMESTAMPTZ NULL DEFAULT NULL,
        last_seq INTEGER NULL DEFAULT NULL,
        last_heartbeat_at TIMESTAMPTZ NULL DEFAULT NULL,
        heartbeats INTEGER NOT NULL DEFAULT 0,
        rejected_heartbeats INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (video, student)
    )
    """,
    "CREATE INDEX video_watch_tenant ON video_watch (tenant)",
    "CREATE INDEX video_watch_video ON video_watch (video)",
    "CREATE INDEX video_watch_student ON video_watch (student)",
]

BACKWARD = [
    "DROP TABLE IF EXISTS video_watch",
    "DROP TABLE IF EXISTS video",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
