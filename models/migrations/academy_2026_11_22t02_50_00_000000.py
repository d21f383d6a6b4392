"""NOTIFY ``student_list`` with the tenant id whenever what the student list shows may have
changed, so every API process can drop its cached pages of that tenant (api/list_cache.py).

Statement-level triggers with transition tables: a bulk import sends one notification per
tenant per statement, and Postgres folds duplicates within a transaction and delivers them
only at COMMIT, so a rolled-back write invalidates nothing.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-11-22T02:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "student list change notifications"

TABLES = ("student", "enrollment")

FORWARD = [
    """
    CREATE FUNCTION student_list_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        t uuid;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            FOR t IN SELECT DISTINCT tenant FROM old_rows LOOP
                PERFORM pg_notify('student_list', t::text);
            END LOOP;
        ELSE
            FOR t IN SELECT DISTINCT tenant FROM new_rows LOOP
                PERFORM pg_notify('student_list', t::text);
            END LOOP;
        END IF;
        RETURN NULL;
    END $$
    """,
    *(
        sql
        for table in TABLES
        for sql in (
            f"CREATE TRIGGER {table}_list_ins AFTER INSERT ON {table} REFERENCING NEW TABLE AS "
            "new_rows FOR EACH STATEMENT EXECUTE FUNCTION student_list_notify()",
            f"CREATE TRIGGER {table}_list_upd AFTER UPDATE ON {table} REFERENCING NEW TABLE AS "
            "new_rows FOR EACH STATEMENT EXECUTE FUNCTION student_list_notify()",
            f"CREATE TRIGGER {table}_list_del AFTER DELETE ON {table} REFERENCING OLD TABLE AS "
            "old_rows FOR EACH STATEMENT EXECUTE FUNCTION student_list_notify()",
        )
    ),
]

BACKWARD = [
    *(
        f"DROP TRIGGER IF EXISTS {table}_list_{op} ON {table}"
        for table in TABLES
        for op in ("ins", "upd", "del")
    ),
    "DROP FUNCTION IF EXISTS student_list_notify()",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
