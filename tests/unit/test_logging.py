import json
import logging

from ops.logging import JsonFormatter, _install_context_factory, bound, log_event

_install_context_factory()


def _record(logger: logging.Logger, fn) -> dict:
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Capture()
    logger.addHandler(handler)
    try:
        fn()
    finally:
        logger.removeHandler(handler)
    return json.loads(JsonFormatter().format(records[-1]))


def test_event_fields_context_and_masking():
    logger = logging.getLogger("tests.logging")
    logger.setLevel(logging.INFO)

    def emit():
        with bound(request_id="req-1", job_id="job-9"):
            log_event(
                logger,
                "SQS_JOB_COMPLETED",
                processing_duration=0.5,
                api_secret="s3cr3t",
                password="pw",
            )

    payload = _record(logger, emit)
    assert payload["event"] == "SQS_JOB_COMPLETED"
    assert payload["request_id"] == "req-1" and payload["job_id"] == "job-9"
    assert payload["processing_duration"] == 0.5
    assert payload["api_secret"] == "***" and payload["password"] == "***"
    assert "s3cr3t" not in json.dumps(payload)


def test_context_does_not_leak_out_of_the_block():
    logger = logging.getLogger("tests.logging2")
    logger.setLevel(logging.INFO)

    def emit():
        with bound(request_id="inner"):
            pass
        logger.info("plain message")

    payload = _record(logger, emit)
    assert payload["event"] == "plain message"
    assert "request_id" not in payload
