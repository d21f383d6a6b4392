"""JSON logs with request/job context carried in context variables.

``bind(request_id=..., job_id=...)`` adds fields to every record logged in the current
context (an HTTP request, or one actor run). Values whose key looks secret are masked.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "academy_log_context", default=None
)

_SECRET_MARKERS = ("password", "secret", "token", "authorization", "api_key", "apikey")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind fields for the duration of a block (restored afterwards)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    _context.set({**(_context.get() or {}), **fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        if getattr(record, "event", None):
            payload["message"] = record.getMessage()
        # Captured when the record was made (see _install_context_factory), so a handler
        # that formats later, or in another thread, still sees the request's context.
        payload.update(getattr(record, "_context", None) or current_context())
        for key, value in record.__dict__.items():
            if key in _RESERVED or key == "event" or key.startswith("_"):
                continue
            payload[key] = value
        for key in list(payload):
            if _is_secret(key):
                payload[key] = "***"
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


_factory_installed = False


def _install_context_factory() -> None:
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record._context = current_context()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as one JSON object per line."""
    _install_context_factory()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # boto and the moto server are chatty at INFO.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log a named event (e.g. ``SQS_JOB_COMPLETED``) with structured fields."""
    logger.log(level, event, extra={"event": event, **fields})
