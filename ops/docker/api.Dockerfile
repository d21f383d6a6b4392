# syntax=docker/dockerfile:1.7
# The API: uvicorn with uvloop/httptools. Migrations never run here (`just migrate` does).
ARG BASE_IMAGE=academy-base:latest
FROM ${BASE_IMAGE}

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
# The one command line of the API (ops/commands/api.py): API_PROCESSES processes on one port.
ENV HOST=0.0.0.0 PORT=8000
CMD ["python", "-m", "ops.commands.api"]
