# syntax=docker/dockerfile:1.7
# The API: uvicorn with uvloop/httptools. Migrations never run here (`just migrate` does).
# Open job event streams (SSE) would hold a stop until their jobs end: after 5 s they are cut
# and their clients reconnect elsewhere.
ARG BASE_IMAGE=academy-base:latest
FROM ${BASE_IMAGE}

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
# Forwarded headers are the app's to judge (FORWARDED_ALLOW_IPS, default: no proxy trusted):
# uvicorn's own handling stays off, or any client could choose the address it is limited by.
CMD ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--loop", "uvloop", "--http", "httptools", "--no-proxy-headers", \
     "--timeout-graceful-shutdown", "5"]
