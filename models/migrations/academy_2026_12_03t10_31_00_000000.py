"""Foreign keys across tenants: every reference between two tenant tables must stay in
one academy, in the database and not only in the API.

For each single-column foreign key from a table with a ``tenant`` column to another such
table (a student's enrollment, a session's video, a score's exam, an account's
student...), a composite twin ``(tenant, column) -> parent (tenant, id)`` is added with the
same ON DELETE rule (``SET NULL (column)`` for a set-null key, so the tenant stays), on a
unique ``(tenant, id)`` index of the parent. A row pointing into another academy is then
refused by Postgres whoever writes it; the API still answers such a reference with its
field error or 404 before it gets there.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T10:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "tenant-consistent foreign keys"

# The single-column keys between tenant tables, with their ON DELETE rule.
_KEYS = """
    SELECT c.conrelid::regclass::text AS child, a.attname AS col,
           c.confrelid::regclass::text AS parent, c.confdeltype AS on_delete
    FROM pg_constraint c
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
      AND c.connamespace = 'public'::regnamespace
      AND a.attname <> 'tenant'
      AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.conrelid
                  AND t.attname = 'tenant' AND NOT t.attisdropped)
      AND EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = c.confrelid
                  AND t.attname = 'tenant' AND NOT t.attisdropped)
"""

FORWARD = [
    f"""
    DO $$
    DECLARE
        k record;
        rule text;
    BEGIN
        FOR k IN {_KEYS} ORDER BY 1, 2 LOOP
            EXECUTE format(
                'CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I (tenant, id)',
                k.parent || '_tenant_id', k.parent);
            rule := CASE k.on_delete
                WHEN 'c' THEN 'CASCADE'
                WHEN 'n' THEN format('SET NULL (%I)', k.col)
                WHEN 'r' THEN 'RESTRICT'
                ELSE 'NO ACTION' END;
            EXECUTE format(
                'ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (tenant, %I) '
                'REFERENCES %I (tenant, id) ON DELETE %s',
                k.child, k.child || '_' || k.col || '_same_tenant', k.col, k.parent, rule);
        END LOOP;
    END $$
    """,
]

BACKWARD = [
    """
    DO $$
    DECLARE
        k record;
    BEGIN
        FOR k IN SELECT conrelid::regclass::text AS child, conname FROM pg_constraint
                 WHERE contype = 'f' AND conname LIKE '%\\_same\\_tenant' LOOP
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', k.child, k.conname);
        END LOOP;
        FOR k IN SELECT i.indexrelid::regclass::text AS name
                 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
                 WHERE i.indexrelid::regclass::text = t.relname || '_tenant_id' LOOP
            EXECUTE format('DROP INDEX IF EXISTS %I', k.name);
        END LOOP;
    END $$
    """,
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
