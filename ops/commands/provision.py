"""Create the seed-named queues (each with a native-redrive DLQ) and the buckets:
``just provision``.

Idempotent: a second run reports every resource ``unchanged``.
"""

from __future__ import annotations

import sys
from typing import Any

from botocore.exceptions import ClientError

from ops.commands.storage_cleanup import expiring
from ops.queues import ensure_queues
from ops.settings import Settings, get_settings
from ops.storage import s3_client


def ensure_buckets(settings: Settings) -> list[tuple[str, str]]:
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
        mine = sorted(
            (rule for rule in current if rule.get("ID") in ids), key=lambda rule: rule["ID"]
        )
        wanted = sorted(ours, key=lambda rule: rule["ID"])
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
