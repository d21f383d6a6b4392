"""The job figures of ``/metrics`` kept up by the job table's own changes, so a scrape reads
a few hundred summary rows instead of every job row kept.

A trigger on ``job`` appends each change's effect (minus the old row, plus the new one) to
``job_stat_delta``: an append-only table, so concurrent job updates never wait on a shared
counter row (and cannot deadlock on one). A scrape folds the deltas into ``job_stat`` and
reads both. A row's histogram bucket is the index of the first bound of
``job_stat_buckets()`` its time is within (the count beyond the last bound is
``len + 1``; 0: no time, the job is not finished with both timestamps). The oldest pending
job per tier comes from a partial index that holds pending jobs only.
"""

from models.raw_migration import raw_sql_manager

ID = "2026-12-03T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "job figures kept by triggers"

# Seconds; ops.metrics.BUCKETS, which the scrape checks against this.
BOUNDS = "{0.1,0.25,0.5,1,2.5,5,10,30,60,120,300,600,1800,3600}"
KEY = "actor_name, tier, status, processing_bucket, wait_bucket"

FORWARD = [
    # No job changes while the summary is built from the rows and the trigger goes in.
    "LOCK TABLE job IN SHARE ROW EXCLUSIVE MODE",
    f"""
    CREATE FUNCTION job_stat_buckets() RETURNS float8[] LANGUAGE sql IMMUTABLE
    AS $$ SELECT '{BOUNDS}'::float8[] $$
    """,
    """
    CREATE FUNCTION job_stat_bucket(seconds float8) RETURNS smallint LANGUAGE sql IMMUTABLE
    AS $$
        SELECT CASE WHEN seconds IS NULL THEN 0 ELSE coalesce(
            (SELECT min(b.i) FROM unnest(job_stat_buckets()) WITH ORDINALITY AS b(le, i)
             WHERE seconds <= b.le),
            cardinality(job_stat_buckets()) + 1) END::smallint
    $$
    """,
    f"""
    CREATE TABLE job_stat (
        actor_name varchar(128) NOT NULL,
        tier varchar(32) NOT NULL,
        status varchar(16) NOT NULL,
        processing_bucket smallint NOT NULL,
        wait_bucket smallint NOT NULL,
        n bigint NOT NULL,
        retries bigint NOT NULL,
        processing_sum numeric NOT NULL,
        wait_sum numeric NOT NULL,
        PRIMARY KEY ({KEY})
    )
    """,
    "CREATE TABLE job_stat_delta (LIKE job_stat)",
    # What one job row adds to the figures (the same definitions as a scan of the rows).
    """
    CREATE FUNCTION job_stat_row(j job) RETURNS job_stat LANGUAGE sql IMMUTABLE
    AS $$
        SELECT j.actor_name, j.tier, j.status, job_stat_bucket(t.processing),
               job_stat_bucket(t.wait), 1::bigint, greatest(j.attempts - 1, 0)::bigint,
               coalesce(t.processing, 0)::numeric, coalesce(t.wait, 0)::numeric
        FROM (SELECT
                CASE WHEN timed THEN greatest(
                    extract(epoch FROM j.finished_at - j.started_at)::float8, 0) END,
                CASE WHEN timed THEN greatest(extract(epoch FROM
                    j.started_at - coalesce(j.sent_at, j.created_at))::float8, 0) END
              FROM (SELECT j.status IN ('DONE', 'FAILED') AND j.started_at IS NOT NULL
                           AND j.finished_at IS NOT NULL) AS f(timed)
             ) AS t(processing, wait)
    $$
    """,
    """
    CREATE FUNCTION job_stat_track() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        was job_stat;
        becomes job_stat;
    BEGIN
        IF TG_OP <> 'INSERT' THEN was := job_stat_row(OLD); END IF;
        IF TG_OP <> 'DELETE' THEN becomes := job_stat_row(NEW); END IF;
        -- A pending job's sent_at, an attempt that changes no retry count...: no delta.
        IF was IS NOT DISTINCT FROM becomes THEN RETURN NULL; END IF;
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO job_stat_delta VALUES (
                was.actor_name, was.tier, was.status, was.processing_bucket,
                was.wait_bucket, -1, -was.retries, -was.processing_sum, -was.wait_sum);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO job_stat_delta SELECT becomes.*;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER job_stat_track
    AFTER INSERT OR DELETE OR UPDATE OF actor_name, tier, status, attempts, created_at,
        sent_at, started_at, finished_at ON job
    FOR EACH ROW EXECUTE FUNCTION job_stat_track()
    """,
    """
    CREATE FUNCTION job_stat_clear() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE job_stat, job_stat_delta;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER job_stat_clear AFTER TRUNCATE ON job
    FOR EACH STATEMENT EXECUTE FUNCTION job_stat_clear()
    """,
    f"""
    INSERT INTO job_stat
    SELECT {KEY}, sum(n), sum(retries), sum(processing_sum), sum(wait_sum)
    FROM (SELECT (job_stat_row(j)).* FROM job j) AS r
    GROUP BY {KEY}
    """,
    """
    CREATE INDEX job_pending_age ON job (tier, (coalesce(sent_at, created_at)))
    WHERE status = 'PENDING'
    """,
]
BACKWARD = [
    "DROP INDEX IF EXISTS job_pending_age",
    "DROP TRIGGER IF EXISTS job_stat_clear ON job",
    "DROP TRIGGER IF EXISTS job_stat_track ON job",
    "DROP FUNCTION IF EXISTS job_stat_clear()",
    "DROP FUNCTION IF EXISTS job_stat_track()",
    "DROP FUNCTION IF EXISTS job_stat_row(job)",
    "DROP TABLE IF EXISTS job_stat_delta",
    "DROP TABLE IF EXISTS job_stat",
    "DROP FUNCTION IF EXISTS job_stat_bucket(float8)",
    "DROP FUNCTION IF EXISTS job_stat_buckets()",
]


async def forwards():
    return raw_sql_manager(ID, DESCRIPTION, FORWARD, BACKWARD)
