"""SQS: the client, and the seed-named queues each with a native-redrive DLQ.

Part of the base: the broker creates missing queues through ``ensure_queues`` outside
production, and ``just provision`` creates them everywhere.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ops.settings import Settings

RETENTION_SECONDS = 14 * 86400


def sqs_client(settings: Settings, max_pool_connections: int = 10) -> Any:
    return boto3.client(
        "sqs",
        region_name=settings.aws_region,
        endpoint_url=settings.sqs_endpoint_url or None,
        config=Config(max_pool_connections=max_pool_connections),
    )


def _ensure_queue(client: Any, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    """Returns (queue url, action)."""
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
            raise
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return url, "created"
    current = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    diff = {}
    for key, value in attributes.items():
        have = current.get(key)
        if key == "RedrivePolicy" and have:
            same = json.loads(have) == json.loads(value) or {
                k: str(v) for k, v in json.loads(have).items()
            } == {k: str(v) for k, v in json.loads(value).items()}
            if same:
                continue
        elif have == value:
            continue
        diff[key] = value
    if not diff:
        return url, "unchanged"
    client.set_queue_attributes(QueueUrl=url, Attributes=diff)
    return url, "updated"


def ensure_queues(settings: Settings, client: Any = None) -> list[tuple[str, str]]:
    client = client or sqs_client(settings)
    report: list[tuple[str, str]] = []
    for tier, name in settings.queues.items():
        dlq_url, action = _ensure_queue(
            client, f"{name}-dlq", {"MessageRetentionPeriod": str(RETENTION_SECONDS)}
        )
        report.append((f"sqs:{name}-dlq", action))
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        _, action = _ensure_queue(
            client,
            name,
            {
                "MessageRetentionPeriod": str(RETENTION_SECONDS),
                "VisibilityTimeout": str(settings.visibility_timeouts[tier]),
                "ReceiveMessageWaitTimeSeconds": str(settings.sqs_wait_time_seconds),
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": str(settings.sqs_max_receive_count),
                    }
                ),
            },
        )
        report.append((f"sqs:{name}", action))
    return report
