"""The student list's read model: ``student.guardians_json`` and ``student.enrollment_count``
kept by statement-level triggers (transition tables), so a bulk COPY costs one UPDATE per
statement, not one per row, and no writer can forget them."""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T01:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "student read model triggers"

GUARDIANS_OF = """
    COALESCE((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', g.id, 'name', g.name, 'phone', g.phone,
                   'relation', sg.relation, 'is_primary', sg.is_primary)
               ORDER BY sg.is_primary DESC, g.name, g.id)
        FROM student_guardian sg JOIN guardian g ON g.id = sg.guardian
        WHERE sg.student = s.id), '[]'::jsonb)
"""

FORWARD = [
    f"""
    CREATE FUNCTION student_refresh_guardians(ids uuid[]) RETURNS void LANGUAGE sql AS $$
        UPDATE student s SET guardians_json = {GUARDIANS_OF}
        WHERE s.id = ANY(ids)
    $$
    """,
    """
    CREATE FUNCTION student_refresh_enrollments(ids uuid[]) RETURNS void LANGUAGE sql AS $$
        UPDATE student s SET enrollment_count = (
            SELECT count(*) FROM enrollment e WHERE e.student = s.id AND e.status = 'active')
        WHERE s.id = ANY(ids)
    $$
    """,
    # student_guardian: rows added, removed or changed.
    """
    CREATE FUNCTION student_guardian_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM student_refresh_guardians(ARRAY(SELECT DISTINCT student FROM new_rows));
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM student_refresh_guardians(ARRAY(SELECT DISTINCT student FROM old_rows));
        ELSE
            PERFORM student_refresh_guardians(ARRAY(
                SELECT student FROM new_rows UNION SELECT student FROM old_rows));
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER student_guardian_ins AFTER INSERT ON student_guardian "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION student_guardian_changed()",
    "CREATE TRIGGER student_guardian_del AFTER DELETE ON student_guardian "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION student_guardian_changed()",
    "CREATE TRIGGER student_guardian_upd AFTER UPDATE ON student_guardian "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION student_guardian_changed()",
    # guardian: a renamed guardian or a new phone shows on every sibling.
    """
    CREATE FUNCTION guardian_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM student_refresh_guardians(ARRAY(
            SELECT DISTINCT sg.student FROM student_guardian sg
            JOIN new_rows n ON n.id = sg.guardian));
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER guardian_upd AFTER UPDATE ON guardian "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION guardian_changed()",
    # enrollment
    """
    CREATE FUNCTION enrollment_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM student_refresh_enrollments(ARRAY(SELECT DISTINCT student FROM new_rows));
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM student_refresh_enrollments(ARRAY(SELECT DISTINCT student FROM old_rows));
        ELSE
            PERFORM student_refresh_enrollments(ARRAY(
                SELECT student FROM new_rows UNION SELECT student FROM old_rows));
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER enrollment_ins AFTER INSERT ON enrollment "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION enrollment_changed()",
    "CREATE TRIGGER enrollment_del AFTER DELETE ON enrollment "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION enrollment_changed()",
    "CREATE TRIGGER enrollment_upd AFTER UPDATE ON enrollment "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION enrollment_changed()",
    # Existing rows.
    "SELECT student_refresh_guardians(ARRAY(SELECT id FROM student))",
    "SELECT student_refresh_enrollments(ARRAY(SELECT id FROM student))",
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS enrollment_upd ON enrollment",
    "DROP TRIGGER IF EXISTS enrollment_del ON enrollment",
    "DROP TRIGGER IF EXISTS enrollment_ins ON enrollment",
    "DROP FUNCTION IF EXISTS enrollment_changed()",
    "DROP TRIGGER IF EXISTS guardian_upd ON guardian",
    "DROP FUNCTION IF EXISTS guardian_changed()",
    "DROP TRIGGER IF EXISTS student_guardian_upd ON student_guardian",
    "DROP TRIGGER IF EXISTS student_guardian_del ON student_guardian",
    "DROP TRIGGER IF EXISTS student_guardian_ins ON student_guardian",
    "DROP FUNCTION IF EXISTS student_guardian_changed()",
    "DROP FUNCTION IF EXISTS student_refresh_enrollments(uuid[])",
    "DROP FUNCTION IF EXISTS student_refresh_guardians(uuid[])",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
