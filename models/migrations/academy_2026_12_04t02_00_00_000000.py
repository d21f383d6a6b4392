"""A search is one round trip on a statement the connection keeps, still planned for its
own keys; a phone tail of 3 or 4 digits is decided by its key alone.

Until now a search was sent as an unnamed statement (parse, then bind and execute: two
round trips, and the client set the statement up anew each time) so that Postgres would
plan it for its keys: a statement the connection keeps is planned once for every search
after five runs, and that plan walks the names for a rare fragment or sorts thousands of
matches for a common one. ``student_search_query`` is declared very costly instead. A plan
made for the search's own values folds the call into a constant (the function is
immutable), so its cost does not count there; a plan made for every search must call it,
and so always costs more than the plans made for each search, and Postgres never prefers it.

``student_search_exact`` now also holds for a phone tail of 3 or 4 digits: the student's
phone and every guardian's put their last 3 and 4 digits among the keys (from
``guardians_json``, which the read-model triggers keep in step with the guardians), so a
student has the tail's key exactly when one of those phones ends with it. The search then
leaves out its predicate, whose look-up of the guardians cost more to plan than the rest of
the search to run. A longer tail keeps it.
"""

from models.migrations.academy_2026_12_03t11_30_00_000000 import FORWARD as SEARCH
from models.raw_migration import raw_sql_manager

ID = "2026-12-04T02:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "student search: one round trip, phone tails decided by their keys"

# Far above any search's own plan (cost units are cpu_operator_cost, 0.0025: 25,000).
QUERY_COST = 10_000_000

FORWARD = [
    f"ALTER FUNCTION student_search_query(uuid, text, text) COST {QUERY_COST}",
    """
    CREATE OR REPLACE FUNCTION student_search_exact(kind text, q text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE kind
            WHEN 'n' THEN length(lower(q)) BETWEEN 1 AND 2
            WHEN 'i' THEN length(q) BETWEEN 1 AND 2
            WHEN 'p' THEN length(q) BETWEEN 3 AND 4
            ELSE false
        END
    $$
    """,
]

BACKWARD = [
    SEARCH[2].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1),
    "ALTER FUNCTION student_search_query(uuid, text, text) COST 100",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
