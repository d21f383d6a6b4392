"""The read-model refresh functions write only the students whose value changes.

A bulk import writes each new student with its ``guardians_json`` and ``enrollment_count``
already right; the triggers after its link and enrolment inserts then compute the same
values, and used to rewrite every one of those rows anyway (two extra row versions, index
entries included, per student: most of an import's apply time).
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T09:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "read model refresh skips unchanged rows"

IDS = "(SELECT DISTINCT id FROM unnest(ids) AS u(id)) AS t"
GUARDIANS_OF = """
    COALESCE((
        SELECT jsonb_agg(jsonb_build_object(
                   'id', g.id, 'name', g.name, 'phone', g.phone,
                   'relation', sg.relation, 'is_primary', sg.is_primary)
               ORDER BY sg.is_primary DESC, g.name, g.id)
        FROM student_guardian sg JOIN guardian g ON g.id = sg.guardian
        WHERE sg.student = {id}), '[]'::jsonb)
"""
ENROLLED = "(SELECT count(*) FROM enrollment e WHERE e.student = {id} AND e.status = 'active')"

FORWARD = [
    f"""
    CREATE OR REPLACE FUNCTION student_refresh_guardians(ids uuid[]) RETURNS void
    LANGUAGE sql AS $$
        UPDATE student s SET guardians_json = x.value
        FROM (SELECT t.id, {GUARDIANS_OF.format(id="t.id")} AS value FROM {IDS}) AS x
        WHERE s.id = x.id AND s.guardians_json IS DISTINCT FROM x.value
    $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION student_refresh_enrollments(ids uuid[]) RETURNS void
    LANGUAGE sql AS $$
        UPDATE student s SET enrollment_count = x.value
        FROM (SELECT t.id, {ENROLLED.format(id="t.id")} AS value FROM {IDS}) AS x
        WHERE s.id = x.id AND s.enrollment_count IS DISTINCT FROM x.value
    $$
    """,
]
BACKWARD = [
    f"""
    CREATE OR REPLACE FUNCTION student_refresh_guardians(ids uuid[]) RETURNS void
    LANGUAGE sql AS $$
        UPDATE student s SET guardians_json = {GUARDIANS_OF.format(id="s.id")}
        FROM {IDS} WHERE s.id = t.id
    $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION student_refresh_enrollments(ids uuid[]) RETURNS void
    LANGUAGE sql AS $$
        UPDATE student s SET enrollment_count = {ENROLLED.format(id="s.id")}
        FROM {IDS} WHERE s.id = t.id
    $$
    """,
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
