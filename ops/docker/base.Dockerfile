# syntax=docker/dockerfile:1.7
# The base image every role builds on: Python 3.11, the locked dependencies (no dev group),
# and the source. Built first by `just build`; the api and worker images only set a command.
FROM python:3.11-slim-bookworm AS base

COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    ACADEMY_ENV=production

# libgomp: onnxruntime's OpenMP runtime (OMR/OCR); tini reaps the dramatiq master's children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first: they change less often than the code, so this layer stays cached.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

COPY api ./api
COPY actors ./actors
COPY models ./models
COPY pipelines ./pipelines
COPY ops ./ops
COPY Justfile README.md ./

RUN useradd --system --uid 10001 --home-dir /app academy \
    && mkdir -p /tmp/academy && chown academy /tmp/academy
USER academy
ENV VIDEO_WORKER_TEMP_DIR=/tmp/academy

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "ops.commands.readiness"]
