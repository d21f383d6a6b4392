"""The student search is index-backed: ``student.search_keys``, a GIN-indexed ``text[]`` of
the short fragments every search (``models.students``) looks for.

A search for a phone tail, a name or school fragment, or 초성 used to walk the academy's
students in name order testing each one (an academy of 10,000 students with no match: every
row, ~6 ms, and at 64 clients 159 req/s with p99 846 ms). The embedded Postgres ships no
contrib extensions (no pg_trgm), so the index is built from core features alone:

- ``n`` keys: every character and every pair of adjacent characters of ``lower(name)``
  and ``lower(school)`` (ILIKE compares ``lower()`` of both sides);
- ``i`` keys: every character and pair of ``name_initials``;
- ``p`` keys: the last 3 and the last 4 digits of the student's phone and of every
  guardian's phone (from ``guardians_json``, which the read-model triggers keep in step
  with the guardians and their links; so a guardian's new phone reaches these keys);

each prefixed with the last 4 characters of the tenant id, so that a key's posting list is
(practically) one academy's, and a common fragment of one academy costs nothing in another.

``student_search_query`` gives the keys a search must find (the same rule, the query
side). A match always has them, so ``search_keys @> student_search_query(...)`` narrows
the rows and the search's own predicate, kept, decides: the results are the same. Where
the keys decide alone (``student_search_exact``: one or two characters) the predicate is
not repeated, and the planner, estimating from the keys alone, walks the names in order
for a common fragment rather than sorting thousands of matches.

The column is generated (``STORED``): every insert and update computes it, whoever
writes, and adding it fills it for the existing rows. Changing the key rule means
recomputing the column (``UPDATE student SET name = name``), since a stored value is not
recomputed when the function changes. ``fastupdate`` is off: a search would otherwise scan
the index's whole pending list of recent writes.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T11:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "student search keys"

FORWARD = [
    """
    CREATE FUNCTION student_search_keys(
        tenant uuid, name text, school text, initials text, phone text, guardians jsonb
    ) RETURNS text[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    DECLARE
        academy text := right(tenant::text, 4);
        keys text[] := '{}';
        value text;
        prefix text;
        digits text;
        i int;
    BEGIN
        FOREACH value IN ARRAY ARRAY['n' || lower(name), 'n' || lower(school), 'i' || initials]
        LOOP
            prefix := academy || left(value, 1);
            value := substr(value, 2);
            FOR i IN 1 .. length(value) LOOP
                keys := keys || (prefix || substr(value, i, 1));
                IF i < length(value) THEN
                    keys := keys || (prefix || substr(value, i, 2));
                END IF;
            END LOOP;
        END LOOP;
        FOR digits IN
            SELECT replace(p, '-', '')
            FROM unnest(ARRAY[phone]
                        || ARRAY(SELECT g ->> 'phone' FROM jsonb_array_elements(guardians) AS g))
                 AS p
            WHERE p IS NOT NULL
        LOOP
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
    # kind: 'n' (a name or school fragment), 'i' (초성), 'p' (a phone tail of 3 digits or
    # more). A fragment of one or two characters is one key, and a longer one its pairs.
    """
    CREATE FUNCTION student_search_query(tenant uuid, kind text, q text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE
            WHEN v = '' THEN '{}'::text[]
            WHEN kind = 'p' THEN ARRAY[academy || 'p' || right(v, 4)]
            WHEN length(v) <= 2 THEN ARRAY[academy || kind || v]
            ELSE ARRAY(SELECT academy || kind || substr(v, i, 2)
                       FROM generate_series(1, length(v) - 1) AS i)
        END
        FROM (SELECT right(tenant::text, 4) AS academy,
                     CASE WHEN kind = 'n' THEN lower(q) ELSE q END AS v) AS x
    $$
    """,
    # True when the keys alone decide: a name or school fragment, or 초성, of one or two
    # characters is one key, present exactly when a name, a school or the initials contain
    # it (ILIKE compares lower() of both sides). The search then leaves its own predicate
    # out, and the planner estimates the rows from the keys' statistics alone.
    """
    CREATE FUNCTION student_search_exact(kind text, q text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT kind IN ('n', 'i')
               AND length(CASE WHEN kind = 'n' THEN lower(q) ELSE q END) BETWEEN 1 AND 2
    $$
    """,
    "ALTER TABLE student ADD COLUMN search_keys text[] GENERATED ALWAYS AS ("
    "student_search_keys(tenant, name, school, name_initials, phone, guardians_json)) STORED",
    "CREATE INDEX student_search_keys_idx ON student USING gin (search_keys) "
    "WITH (fastupdate = off)",
    "ANALYZE student",
]

BACKWARD = [
    "DROP INDEX IF EXISTS student_search_keys_idx",
    "ALTER TABLE student DROP COLUMN IF EXISTS search_keys",
    "DROP FUNCTION IF EXISTS student_search_exact(text, text)",
    "DROP FUNCTION IF EXISTS student_search_query(uuid, text, text)",
    "DROP FUNCTION IF EXISTS student_search_keys(uuid, text, text, text, text, jsonb)",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
