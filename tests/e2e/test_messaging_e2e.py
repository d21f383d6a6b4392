"""Messaging through the real broker path: HTTP-speaking SQS, real worker processes, the
fake Solapi server over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from actors import messaging as pipeline
from models.db import connection
from ops.settings import get_settings
from tests.conftest import wait_for
from tests.factories import create_student
from tests.factories.attendance import check, create_lecture, create_sessions, enroll
from tests.fakes.solapi import connect_tenant, running_fake
from tests.sqs_helpers import purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


@pytest.fixture(autouse=True)
def messaging_queue(broker):
    q = get_settings().queue_for("messaging")
    purge(q, f"{q}-dlq")
    yield q
    purge(q, f"{q}-dlq")


def _worker_env(fake: Any, **extra: str) -> dict[str, str]:
    return {
        "SOLAPI_BASE_URL": fake.url,
        "MESSAGING_HTTP_TIMEOUT_SECONDS": "3",
        "MESSAGING_SEND_LEASE_SECONDS": "7",
        "MESSAGING_POLL_DELAY_SECONDS": "1",
        **extra,
    }


async def _rows(where: str, *args: Any) -> list[dict[str, Any]]:
    async with connection() as conn:
        return [dict(r) for r in await conn.fetch(f"SELECT * FROM message WHERE {where}", *args)]


async def test_absence_sends_one_notice_end_to_end(tenant, client, start_worker):
    with running_fake() as fake:
        await connect_tenant(tenant.id)
        headers = await tenant.headers()
        lecture = await create_lecture(tenant, title="고1 영어")
        sessions, _ = await create_sessions(tenant, lecture, 1)
        student = await create_student(tenant, headers)
        await enroll(tenant, lecture, [uuid.UUID(student["id"])])
        guardian_phone = student["guardians"][0]["phone"]

        # The office marks the absence twice (a retried request): one event.
        await check(tenant, sessions[0], student["id"], "absent", headers)
        await check(tenant, sessions[0], student["id"], "absent", headers, note="연락 없음")
        worker = start_worker(["messaging"], env=_worker_env(fake))
        # What the scheduler's pump round does every few seconds.
        assert (await pipeline.pump())["events"] == 1

        async def delivered():
            rows = await _rows("tenant = $1 AND event_id IS NOT NULL", tenant.id)
            return rows if rows and all(r["status"] == "delivered" for r in rows) else None

        rows = await wait_for(delivered, timeout=90)
        assert rows, worker.output()[-3000:]
        assert len(rows) == 1
        assert rows[0]["to_phone"] == guardian_phone and "결석" in rows[0]["body"]

        # Another pump finds nothing to do; a second dispatch would find no event.
        assert (await pipeline.pump())["events"] == 0
        sent = fake.to(guardian_phone.replace("-", ""))
        assert len(sent) == 1 and sent[0]["messageId"] == rows[0]["provider_message_id"]
        assert sent[0]["type"] == "SMS" and "고1 영어" in sent[0]["text"]
        out = worker.output()
        for actor in ("messaging.dispatch_events", "messaging.send_batch", "messaging.poll_status"):
            assert f'"actor": "{actor}"' in out, actor
        async with connection() as conn:
            event = await conn.fetchrow("SELECT * FROM outbox_event WHERE tenant = $1", tenant.id)
        assert event["processed_at"] is not None and event["last_error"] is None


async def test_worker_killed_after_the_provider_accepted_sends_once(tenant, client, start_worker):
    with running_fake() as fake:
        await connect_tenant(tenant.id)
        fake.behaviour.hold_after_accept = True
        env = _worker_env(fake)
        first = start_worker(["messaging"], env=env)
        r = await client.post(
            "/api/v1/messaging/send",
            json={"text": "내일 휴원 안내", "target": {"recipients": [{"phone": "010-2468-1357"}]}},
            headers=await tenant.headers(),
        )
        assert r.status_code == 202, r.text
        job_id = uuid.UUID(r.json()["job_id"])

        # The provider has the message; our worker waits for its answer -- and dies.
        accepted = await asyncio.to_thread(fake.accepted.wait, 90)
        assert accepted, first.output()[-3000:]
        first.kill9()
        fake.behaviour.hold_after_accept = False
        fake.release.set()
        (row,) = await _rows("job = $1", job_id)
        assert row["status"] == "sending" and row["provider_message_id"] is None

        second = start_worker(["messaging"], env=env)

        async def settled():
            rows = await _rows("job = $1", job_id)
            return rows if rows[0]["status"] in ("sent", "delivered") else None

        rows = await wait_for(settled, timeout=90)
        assert rows, second.output()[-3000:]
        assert fake.requests["send"] == 1
        assert list(fake.sends_by_key().values()) == [1]
        (message,) = fake.messages.values()
        assert rows[0]["provider_message_id"] == message["messageId"]
        assert '"event": "MESSAGING_RECONCILED"' in second.output()

        async def job_done():
            r = await client.get(f"/api/v1/jobs/{job_id}", headers=await tenant.headers())
            return r.json() if r.json()["status"] == "DONE" else None

        job = await wait_for(job_done, timeout=30)
        assert job and job["result"] == {"recipients": 1, "sent": 1, "failed": 0}
