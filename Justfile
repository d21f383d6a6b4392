# academy — run `just --list` to see every recipe. Run them through uv: `uv run just dev`.
# Commands that need infrastructure use what the environment configures (DATABASE_URL,
# SQS_ENDPOINT_URL, R2_ENDPOINT); unset, they attach to a running `just dev`, or start
# the local runtime for their own duration.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := true

export PYTHONPATH := justfile_directory()

# Run the whole system locally (embedded Postgres, local SQS+S3, API, one worker per tier) until Ctrl-C
dev:
    python -m ops.dev

# Run the test suite (starts its own embedded Postgres and local SQS+S3 when not configured)
test *ARGS:
    python -m pytest "$@"

# Run the benchmarks and print their figures (none are asserted); `just bench api` runs one group
bench GROUP="":
    ACADEMY_BENCH=1 python -m pytest tests/benchmarks -s -q -p no:cacheprovider -p no:logging {{ if GROUP == "" { "" } else { "-k " + GROUP } }}

# Apply database migrations (to DATABASE_URL, else to the local dev database)
migrate:
    python -m ops.runtime run -- python -m ops.migrate

# Create the seed-named queues (with native-redrive DLQs) and the buckets; safe to repeat
provision:
    python -m ops.runtime run -- python -m ops.provision

# Start the worker for one tier: video | ai-cpu | ai-gpu | messaging | ai-lite | ai-basic | ai-premium
worker TIER PROCESSES="1" THREADS="4":
    python -m ops.runtime run -- python -m ops.worker "$@"

# Deployment readiness: check DB, queues and buckets, then run a probe job on every tier queue
readiness *ARGS:
    python -m ops.runtime run -- python -m ops.readiness "$@"

# Bootstrap a tenant (academy) and its owner account; prints the owner's password
create-tenant NAME OWNER_EMAIL *ARGS:
    python -m ops.runtime run -- python -m ops.tenants "$@"

# Re-send jobs that were committed but never reached the queue
sweep:
    python -m ops.runtime run -- python -c "import asyncio; from actors.broker import setup_broker; from actors.jobs import sweep_unsent; setup_broker(worker=False); print(asyncio.run(sweep_unsent()), 'sent')"

# Lint, format check and type check
lint:
    ruff check .
    ruff format --check .
    mypy

# Deploy: migrate, provision and check readiness against the configured (production) environment
deploy:
    python -m ops.migrate
    python -m ops.provision
    python -m ops.readiness

# Deleted duplicate students (same name + guardian phone): a dry run, or --fix to keep the oldest
students-duplicates *ARGS:
    python -m ops.runtime run -- python -m ops.students duplicates "$@"

# Delete for good the students soft-deleted over 30 days ago (--dry-run to count); run it daily
students-purge *ARGS:
    python -m ops.runtime run -- python -m ops.students purge "$@"
