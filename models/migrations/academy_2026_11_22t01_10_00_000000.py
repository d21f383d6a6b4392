"""Academy-domain constraints the ORM cannot declare: natural keys, cross-table FKs,
partial indexes for the hot lists, and the append-only audit log."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T01:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "academy domain constraints"

FORWARD = [
    # Natural keys.
    "CREATE UNIQUE INDEX guardian_tenant_phone_uniq ON guardian (tenant, phone)",
    "CREATE UNIQUE INDEX student_guardian_pair_uniq ON student_guardian (student, guardian)",
    "CREATE UNIQUE INDEX lecture_tenant_code_uniq ON lecture (tenant, code) WHERE code IS NOT NULL",
    "CREATE UNIQUE INDEX lecture_session_seq_uniq ON lecture_session (lecture, seq)",
    "CREATE UNIQUE INDEX enrollment_pair_uniq ON enrollment (student, lecture)",
    "CREATE UNIQUE INDEX attendance_pair_uniq ON attendance (session, student)",
    "CREATE UNIQUE INDEX score_pair_uniq ON score (exam, student)",
    # Accounts of students and parents point at their records.
    "ALTER TABLE app_user ADD CONSTRAINT app_user_student_fk "
    "FOREIGN KEY (student_id) REFERENCES student (id) ON DELETE SET NULL",
    "ALTER TABLE app_user ADD CONSTRAINT app_user_guardian_fk "
    "FOREIGN KEY (guardian_id) REFERENCES guardian (id) ON DELETE SET NULL",
    # The student list: live students of a tenant by name, with a stable tiebreak.
    "CREATE INDEX student_live_name_idx ON student (tenant, name, id) WHERE deleted_at IS NULL",
    "CREATE INDEX student_deleted_idx ON student (tenant, deleted_at) WHERE deleted_at IS NOT NULL",
    "CREATE INDEX enrollment_lecture_active_idx ON enrollment (lecture) WHERE status = 'active'",
    "CREATE INDEX lecture_session_date_idx ON lecture_session (lecture, date)",
    "CREATE INDEX outbox_unprocessed_idx ON outbox_event (created_at) WHERE processed_at IS NULL",
    "ALTER TABLE score ADD CONSTRAINT score_non_negative CHECK (score >= 0)",
    "ALTER TABLE lecture ADD CONSTRAINT lecture_capacity_positive CHECK (capacity IS NULL OR capacity > 0)",
    # Append-only audit: history that can be edited is not history.
    """
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only';
    END $$
    """,
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log",
    "DROP FUNCTION IF EXISTS audit_log_append_only()",
    "ALTER TABLE lecture DROP CONSTRAINT IF EXISTS lecture_capacity_positive",
    "ALTER TABLE score DROP CONSTRAINT IF EXISTS score_non_negative",
    "DROP INDEX IF EXISTS outbox_unprocessed_idx",
    "DROP INDEX IF EXISTS lecture_session_date_idx",
    "DROP INDEX IF EXISTS enrollment_lecture_active_idx",
    "DROP INDEX IF EXISTS student_deleted_idx",
    "DROP INDEX IF EXISTS student_live_name_idx",
    "ALTER TABLE app_user DROP CONSTRAINT IF EXISTS app_user_guardian_fk",
    "ALTER TABLE app_user DROP CONSTRAINT IF EXISTS app_user_student_fk",
    "DROP INDEX IF EXISTS score_pair_uniq",
    "DROP INDEX IF EXISTS attendance_pair_uniq",
    "DROP INDEX IF EXISTS enrollment_pair_uniq",
    "DROP INDEX IF EXISTS lecture_session_seq_uniq",
    "DROP INDEX IF EXISTS lecture_tenant_code_uniq",
    "DROP INDEX IF EXISTS student_guardian_pair_uniq",
    "DROP INDEX IF EXISTS guardian_tenant_phone_uniq",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
