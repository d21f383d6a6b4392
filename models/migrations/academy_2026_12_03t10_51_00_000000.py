"""A writer that writes a new student's ``guardians_json`` together with the student may
say so, and the link trigger then leaves those students alone.

The bulk import inserts each new student with its read model already right, then links
them to their guardian in the same statement; recomputing the JSON of those students
found nothing to change, at tens of ms a chunk, and at seconds for the first chunk of an
academy whose statistics still said the tables were empty. The writer sets
``academy.guardians_json_written`` for its one statement (``models.imports``); every
other insert, update and delete of a link is refreshed as before.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T10:51:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "link trigger: a writer may have written the read model"

_BODY = """
    CREATE OR REPLACE FUNCTION student_guardian_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF current_setting('academy.guardians_json_written', true) = 'on' THEN
                RETURN NULL;
            END IF;
            PERFORM student_refresh_guardians(ARRAY(SELECT DISTINCT student FROM new_rows));
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM student_refresh_guardians(ARRAY(SELECT DISTINCT student FROM old_rows));
        ELSE
            PERFORM student_refresh_guardians(ARRAY(
                SELECT student FROM new_rows UNION SELECT student FROM old_rows));
        END IF;
        RETURN NULL;
    END $$
"""

FORWARD = [_BODY]
BACKWARD = [
    _BODY.replace(
        """            IF current_setting('academy.guardians_json_written', true) = 'on' THEN
                RETURN NULL;
            END IF;
""",
        "",
    )
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
