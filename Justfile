# academy — run `just --list` to see every recipe. Run them through uv: `uv run just dev`.
# Commands that need infrastructure use what the environment configures (DATABASE_URL,
# SQS_ENDPOINT_URL, R2_ENDPOINT); unset, they attach to a running `just dev`, or start
# the local runtime for their own duration.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := true

export PYTHONPATH := justfile_directory()

# Run the whole system locally (embedded Postgres, local SQS, SeaweedFS for S3 kept in .data/s3-dev, API, scheduler, one worker per tier; children restarted if they die) until Ctrl-C
dev:
    python -m ops.commands.dev

# Run the test suite (starts its own embedded Postgres and local SQS+S3 when not configured)
test *ARGS:
    python -m pytest "$@"

# Run the core of the suite (auth, students, enrolment, attendance, the list cache, one job per pipeline) through a transaction-mode PgBouncer in front of the embedded Postgres (needs Debian's pgbouncer)
test-pgbouncer *ARGS:
    ACADEMY_PGBOUNCER=1 python -m pytest tests/integration/test_pgbouncer.py tests/integration/test_auth.py tests/integration/test_students.py tests/integration/test_enrollments.py tests/integration/test_attendance.py tests/integration/test_student_list_cache.py tests/integration/test_job_events.py tests/integration/test_health.py tests/integration/test_excel_import.py tests/integration/test_messaging_pipeline.py tests/e2e/test_excel_e2e.py tests/e2e/test_messaging_e2e.py tests/e2e/test_omr_pipeline.py "$@"

# Run the benchmarks and print their figures (none are asserted); `just bench api` runs one group
bench GROUP="":
    ACADEMY_BENCH=1 python -m pytest tests/benchmarks -s -q -p no:cacheprovider -p no:logging {{ if GROUP == "" { "" } else { "-k " + GROUP } }}

# Fuzz the whole OpenAPI with Schemathesis as an academy owner against a local server (every phase, SECONDS at most); fails on a 5xx or any answer the document does not describe
fuzz SECONDS="240" EXAMPLES="50":
    ACADEMY_FUZZ_SECONDS={{SECONDS}} ACADEMY_FUZZ_EXAMPLES={{EXAMPLES}} ACADEMY_FUZZ_PHASES=examples,coverage,fuzzing,stateful ACADEMY_FUZZ_SEED= python -m pytest tests/integration/test_fuzz.py -q -s -p no:cacheprovider

# TypeScript types of the API for openapi-fetch (clients/ts/generated/academy.d.ts) from the live OpenAPI of the API at URL (default: `just dev`'s; none running: the application's own)
client URL="":
    bash clients/ts/client.sh "$@"

# Apply database migrations (to DATABASE_URL, else to the local dev database)
migrate:
    python -m ops.runtime run -- python -m ops.commands.migrate

# Create the seed-named queues (with native-redrive DLQs) and the buckets; safe to repeat
provision:
    python -m ops.runtime run -- python -m ops.commands.provision

# Start the worker for one tier: video | ai-cpu | ai-gpu | messaging | ai-lite | ai-basic | ai-premium
worker TIER PROCESSES="1" THREADS="4":
    python -m ops.runtime run -- python -m ops.commands.worker "$@"

# Deployment readiness: check DB, queues and buckets, then run a probe job on every tier queue
readiness *ARGS:
    python -m ops.runtime run -- python -m ops.commands.readiness "$@"

# Bootstrap a tenant (academy) and its owner account; prints the owner's password
create-tenant NAME OWNER_EMAIL *ARGS:
    python -m ops.runtime run -- python -m ops.commands.tenants "$@"

# Run the background rounds (job sweeper, messaging pump, login purge) until stopped; `--once [ROUND...]` runs them once
scheduler *ARGS:
    python -m ops.runtime run -- python -m ops.commands.scheduler "$@"

# Re-send jobs that were committed but never reached the queue (the scheduler's sweep round, once)
sweep:
    python -m ops.runtime run -- python -m ops.commands.scheduler --once sweep

# Lint, format check and type check
lint:
    ruff check .
    ruff format --check .
    mypy

# Build the images in order: base, api, then one per worker role (tag: $IMAGE_TAG, default the git commit)
build *ARGS:
    bash ops/docker/build.sh "$@"

# Deploy: build, push to $DEPLOY_REGISTRY, migrate once, provision, rolling restart of $DEPLOY_API_HOSTS and $DEPLOY_WORKER_HOSTS, readiness
deploy *ARGS:
    bash ops/docker/deploy.sh "$@"

# List a tier's dead letters with their job's status and error (jobs SQS dead-lettered natively are marked FAILED)
dlq-list TIER:
    python -m ops.runtime run -- python -m ops.commands.dlq list "$@"

# Send a tier's dead letters back to its queue: all, or --id <SQS message id | message id | job id> (repeatable)
dlq-redrive TIER *ARGS:
    python -m ops.runtime run -- python -m ops.commands.dlq redrive "$@"

# Delete a tier's dead letters for good (asks you to type the queue name; --yes skips the question)
dlq-purge TIER *ARGS:
    python -m ops.runtime run -- python -m ops.commands.dlq purge "$@"

# Print the `aws cloudwatch put-metric-alarm` commands matching ops/dashboards/alerts.yaml (--apply runs them)
cloudwatch-alarms *ARGS:
    bash ops/dashboards/cloudwatch-alarms.sh "$@"

# Deleted duplicate students (same name + guardian phone): a dry run, or --fix to keep the oldest
students-duplicates *ARGS:
    python -m ops.runtime run -- python -m ops.commands.students duplicates "$@"

# Delete for good the students soft-deleted over 30 days ago (--dry-run to count); run it daily
students-purge *ARGS:
    python -m ops.runtime run -- python -m ops.commands.students purge "$@"

# Delete Excel exports older than 24 h, abandoned import files and video sources N days after READY (--dry-run to count); run hourly
storage-cleanup *ARGS:
    python -m ops.runtime run -- python -m ops.commands.storage_cleanup "$@"

# Play our HLS in headless Chromium with hls.js through the signing edge (needs Debian's chromium: apt-get install chromium; npm installs hls.js)
check-playback:
    python -m ops.runtime run -- python -m tests.playback.check_playback

# The restart drill: start `just dev` in a scratch data directory, give every pipeline work, SIGKILL everything mid-flight, start again, check every job ends and READY videos play
drill:
    python -m pytest tests/e2e/test_drill.py -q -s -p no:cacheprovider
