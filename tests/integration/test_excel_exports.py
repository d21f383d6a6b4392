"""Export requests, and the 24-hour expiry of exports: the bucket lifecycle rule and the
cleanup command that stands in for it where storage has none."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ops import storage
from ops.commands.provision import ensure_lifecycle
from ops.commands.storage_cleanup import cleanup
from ops.settings import get_settings
from tests.factories.lectures import create_lecture
from tests.sqs_helpers import purge

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture(autouse=True)
def lite_queue(broker: Any) -> Any:
    q = get_settings().queue_for("ai-lite")
    purge(q)
    yield q
    purge(q)


async def test_export_requests_are_checked(tenant: Any, make_tenant: Any) -> None:
    headers = await tenant.headers()
    r = await tenant.client.post("/api/v1/exports/students", headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status_url"].startswith("/api/v1/enrollments/excel_job_status/")

    r = await tenant.client.post(
        "/api/v1/exports/attendance",
        json={"date_from": "2026-03-10", "date_to": "2026-03-01"},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "date_to", r.text
    r = await tenant.client.post(
        "/api/v1/exports/attendance",
        json={"date_from": "2025-01-01", "date_to": "2026-03-01"},
        headers=headers,
    )
    assert r.status_code == 422, r.text
    other = await make_tenant()
    foreign = await create_lecture(other)
    r = await tenant.client.post(
        "/api/v1/exports/attendance",
        json={"date_from": "2026-03-01", "date_to": "2026-03-31", "lecture_id": foreign["id"]},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lecture_id", r.text

    family = await tenant.add_user("parent")
    r = await tenant.client.post(
        "/api/v1/exports/students", headers=await tenant.headers(family, "password-123")
    )
    assert r.status_code == 403


def test_lifecycle_rule_is_provisioned_once() -> None:
    settings = get_settings()
    first = ensure_lifecycle(settings)
    assert first[0][1] in ("created", "updated", "unchanged")
    assert ensure_lifecycle(settings) == [(f"s3:{settings.r2_excel_bucket}:lifecycle", "unchanged")]
    rules = storage.client().get_bucket_lifecycle_configuration(Bucket=settings.r2_excel_bucket)
    by_prefix = {r["Filter"]["Prefix"]: r["Expiration"]["Days"] for r in rules["Rules"]}
    assert by_prefix[storage.object_key("exports") + "/"] == 1
    assert by_prefix[storage.object_key("imports") + "/"] == 7


def test_cleanup_deletes_what_has_expired() -> None:
    bucket = get_settings().r2_excel_bucket
    export = storage.object_key("exports", "cleanup-test", "job_a.xlsx")
    work = storage.object_key("imports", "cleanup-test", "job", "upload.xlsx")
    for key in (export, work):
        storage.put_bytes(bucket, key, b"x")
    now = dt.datetime.now(dt.UTC)

    cleanup(now=now + dt.timedelta(hours=23))
    assert storage.head(bucket, export) is not None and storage.head(bucket, work) is not None

    preview = cleanup(now=now + dt.timedelta(hours=25), dry_run=True)
    assert preview[storage.object_key("exports") + "/"] >= 1
    assert storage.head(bucket, export) is not None

    cleanup(now=now + dt.timedelta(hours=25))
    assert storage.head(bucket, export) is None and storage.head(bucket, work) is not None
    cleanup(now=now + dt.timedelta(days=8))
    assert storage.head(bucket, work) is None
