"""Keys and indexes that a wider one already serves, dropped: each costs every write.

- A single-column foreign key ``(col) -> parent (id)`` whose tenant-matched twin
  ``(tenant, col) -> parent (tenant, id)`` exists (2026-12-03T10:31) checks nothing the
  twin does not (the twin has the same ON DELETE rule, and ids are never updated), yet
  each is one more lookup per inserted row.
- The ``tenant -> tenant (id)`` key of a table that has such a twin on a NOT NULL column:
  the row's tenant is then that of an existing parent, whose own key holds it, and
  deleting an academy still reaches the row through the parent's cascade.
- A plain (non-unique, non-partial) index whose columns begin a wider index of the same
  table (``student (tenant)`` beside ``student (tenant, id)``): the wider one answers
  every lookup the narrow one did.

- ``student (deleted_at)`` indexed every live student under NULL; only the purge of
  soft-deleted students reads it, so it now holds those alone (a partial index).

On a bulk import these were a third of the time of writing students, links and
enrolments (ten key checks a row instead of four).
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T10:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "drop foreign keys and indexes that wider ones serve"

# Twins on a table whose tenant is NOT NULL (a NULL tenant would skip the twin's check).
_TWINS = """
    SELECT t.conrelid, t.confrelid, t.conkey, t.confdeltype
    FROM pg_constraint t
    JOIN pg_attribute ten ON ten.attrelid = t.conrelid AND ten.attnum = t.conkey[1]
    WHERE t.contype = 'f' AND t.conname LIKE '%\\_same\\_tenant'
      AND ten.attname = 'tenant' AND ten.attnotnull
"""

FORWARD = [
    f"""
    DO $$
    DECLARE
        k record;
    BEGIN
        FOR k IN
            SELECT c.conrelid::regclass::text AS child, c.conname
            FROM pg_constraint c JOIN ({_TWINS}) AS t
              ON t.conrelid = c.conrelid AND t.confrelid = c.confrelid
             AND t.conkey[2] = c.conkey[1] AND t.confdeltype = c.confdeltype
            WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
            UNION
            SELECT c.conrelid::regclass::text, c.conname
            FROM pg_constraint c JOIN pg_attribute a
              ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND cardinality(c.conkey) = 1 AND a.attname = 'tenant'
              AND c.confrelid = 'tenant'::regclass
              AND EXISTS (SELECT 1 FROM ({_TWINS}) AS t
                          JOIN pg_attribute col ON col.attrelid = t.conrelid
                           AND col.attnum = t.conkey[2]
                          WHERE t.conrelid = c.conrelid AND col.attnotnull)
            ORDER BY 1, 2
        LOOP
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', k.child, k.conname);
        END LOOP;
        FOR k IN
            SELECT DISTINCT a.indexrelid::regclass::text AS name
            FROM pg_index a JOIN pg_index b
              ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
            JOIN pg_class t ON t.oid = a.indrelid
            WHERE t.relnamespace = 'public'::regnamespace
              AND NOT a.indisunique AND a.indpred IS NULL AND b.indpred IS NULL
              AND a.indexprs IS NULL AND b.indexprs IS NULL
              AND b.indkey::text LIKE a.indkey::text || ' %'
        LOOP
            EXECUTE format('DROP INDEX %I', k.name);
        END LOOP;
    END $$
    """,
    "DROP INDEX IF EXISTS student_deleted_at",
    "CREATE INDEX student_deleted_at ON student (deleted_at) WHERE deleted_at IS NOT NULL",
]

# Not undone: nothing needs them back (the twins and the wider indexes keep every rule).
BACKWARD: list[str] = []


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
