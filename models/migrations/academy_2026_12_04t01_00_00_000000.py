"""A bulk write of students merges its search keys into the index in one pass, and the keys
of a student are computed without a query.

With ``fastupdate`` off, every new student put each of its ~40 keys into the GIN index one
at a time, a descent of the entry tree and of the key's posting tree each: on a 100,000-row
import that was half of Postgres' work (43 s of CPU of which ~20 s). With ``fastupdate`` on,
new entries are appended to the index's pending list and merged in bulk, one descent per
distinct key. The Excel import raises ``gin_pending_list_limit`` for its chunk's
transaction and merges the list itself (``gin_clean_pending_list``) before committing,
so a search never scans more than the chunks in flight. Other writers (a student typed in
by hand) go through the list too, up to the server's ``gin_pending_list_limit`` (4 MB by
default) before their insert merges it; vacuum and analyze merge it as well.

``student_search_keys`` gives the same keys (possibly in another order, which neither the
index nor ``@>`` sees) with the phones read from ``guardians_json`` by expressions instead
of a query per student, a third of its time; stored values need no recomputing.
"""

from models.migrations.academy_2026_12_03t11_30_00_000000 import FORWARD as SEARCH
from models.raw_migration import raw_sql_manager

ID = "2026-12-04T01:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "student search keys: bulk merges into the index"

FORWARD = [
    "ALTER INDEX student_search_keys_idx SET (fastupdate = on)",
    """
    CREATE OR REPLACE FUNCTION student_search_keys(
        tenant uuid, name text, school text, initials text, phone text, guardians jsonb
    ) RETURNS text[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    DECLARE
        academy text := right(tenant::text, 4);
        keys text[] := '{}';
        value text;
        prefix text;
        digits text;
        n int;
        i int;
    BEGIN
        FOREACH value IN ARRAY ARRAY['n' || lower(name), 'n' || lower(school), 'i' || initials]
        LOOP
            prefix := academy || left(value, 1);
            value := substr(value, 2);
            n := length(value);
            FOR i IN 1 .. n LOOP
                keys := keys || (prefix || substr(value, i, 1));
                IF i < n THEN
                    keys := keys || (prefix || substr(value, i, 2));
                END IF;
            END LOOP;
        END LOOP;
        -- The student's phone (i = 0), then each guardian's.
        FOR i IN 0 .. coalesce(jsonb_array_length(guardians), 0) LOOP
            digits := replace(
                CASE WHEN i = 0 THEN phone ELSE guardians -> (i - 1) ->> 'phone' END, '-', '');
            IF length(digits) >= 3 THEN
                keys := keys || (academy || 'p' || right(digits, 3));
            END IF;
            IF length(digits) >= 4 THEN
                keys := keys || (academy || 'p' || right(digits, 4));
            END IF;
        END LOOP;
        RETURN keys;
    END $$
    """,
]

BACKWARD = [
    SEARCH[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1),
    "ALTER INDEX student_search_keys_idx SET (fastupdate = off)",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
