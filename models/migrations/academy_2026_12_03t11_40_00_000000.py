"""A writer that keeps ``enrollment_count`` right itself may say so, and the enrollment
triggers then leave the students of its statement alone.

The bulk import writes each new student with the count of the enrolments its rows ask for,
and recounts itself the few students that count does not fit (a refused seat, a student it
did not create); the statement-level trigger after its enrolment insert counted every
student of the chunk again to find nothing to change (a sixth of that insert's time). The
writer sets ``academy.enrollment_count_written`` for its one statement
(``models.enrollments.write_enrolments``); every other insert, update and delete of an
enrollment is recounted as before.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T11:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "enrollment trigger: a writer may have kept the counts"

_SKIP = """        IF TG_OP <> 'DELETE'
           AND current_setting('academy.enrollment_count_written', true) = 'on' THEN
            RETURN NULL;
        END IF;
"""

_BODY = f"""
    CREATE OR REPLACE FUNCTION enrollment_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
{_SKIP}        IF TG_OP = 'INSERT' THEN
            PERFORM student_refresh_enrollments(ARRAY(SELECT DISTINCT student FROM new_rows));
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM student_refresh_enrollments(ARRAY(SELECT DISTINCT student FROM old_rows));
        ELSE
            PERFORM student_refresh_enrollments(ARRAY(
                SELECT student FROM new_rows UNION SELECT student FROM old_rows));
        END IF;
        RETURN NULL;
    END $$
"""

FORWARD = [_BODY]
BACKWARD = [_BODY.replace(_SKIP, "")]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
