"""Create the seed-named queues (each with a native-redrive DLQ) and the buckets.

Idempotent: a second run reports every resource ``unchanged``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ops.settings import Settings, get_settings

RETENTION_SECONDS = 14 * 86400


def sqs_client(settings: Settings) -> Any:
    return boto3.client(
        "sqs", region_name=settings.aws_region, endpoint_url=settings.sqs_endpoint_url or None
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


def ensure_buckets(settings: Settings) -> list[tuple[str, str]]:
    from ops.storage import s3_client

    client = s3_client(settings)
    report: list[tuple[str, str]] = []
    for bucket in settings.buckets.values():
        try:
            client.head_bucket(Bucket=bucket)
            report.append((f"s3:{bucket}", "unchanged"))
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
                raise
            client.create_bucket(Bucket=bucket)
            report.append((f"s3:{bucket}", "created"))
    return report


def ensure_lifecycle(settings: Settings) -> list[tuple[str, str]]:
    """Expire Excel exports after a day (and abandoned import files after a week) with a
    bucket lifecycle rule. Rules of other ids are kept. A backend without lifecycle rules
    reports ``unsupported``: run ``just storage-cleanup`` from cron there instead."""
    from ops.storage import s3_client
    from ops.storage_cleanup import expiring

    client = s3_client(settings)
    bucket = settings.r2_excel_bucket
    ours: list[dict[str, Any]] = [
        {
            "ID": f"academy-expire-{prefix.rstrip('/').replace('/', '-')}",
            "Filter": {"Prefix": prefix},
            "Status": "Enabled",
            "Expiration": {"Days": max(1, ttl.days)},
        }
        for prefix, ttl in expiring(settings)
    ]
    resource = f"s3:{bucket}:lifecycle"
    try:
        try:
            current = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
                raise
            current = []
        ids = {rule["ID"] for rule in ours}
        kept = [rule for rule in current if rule.get("ID") not in ids]
        mine = sorted((r for r in current if r.get("ID") in ids), key=lambda r: r["ID"])
        wanted = sorted(ours, key=lambda r: r["ID"])
        if [_rule_key(r) for r in mine] == [_rule_key(r) for r in wanted]:
            return [(resource, "unchanged")]
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": kept + ours}
        )
        return [(resource, "updated" if mine else "created")]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NotImplemented", "MethodNotAllowed", "501"):
            return [(resource, "unsupported")]
        raise


def _rule_key(rule: dict[str, Any]) -> tuple[str, str, str, int]:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    return (rule["ID"], prefix, rule.get("Status", ""), rule.get("Expiration", {}).get("Days", 0))


def provision(settings: Settings | None = None) -> list[tuple[str, str]]:
    s = settings or get_settings()
    return ensure_queues(s) + ensure_buckets(s) + ensure_lifecycle(s)


def main() -> int:
    for resource, action in provision():
        print(f"{action:10} {resource}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
