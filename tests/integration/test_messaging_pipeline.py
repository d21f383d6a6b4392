"""The messaging steps run in-process against the fake Solapi server over HTTP: exactly once
under redelivery, timeouts after accepting, failures and rate limits; Alimtalk fallback;
polling; automatic notices from the domain outbox. (The same through real worker
processes: ``tests/e2e/test_messaging_e2e.py``.)"""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest

from actors import messaging as pipeline
from models.db import connection
from ops.settings import get_settings
from tests.factories import create_student
from tests.factories.attendance import check, create_lecture, create_sessions, enroll
from tests.factories.grades import create_exam
from tests.fakes.solapi import API_SECRET, connect_tenant, running_fake
from tests.sqs_helpers import purge

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture(autouse=True)
def messaging_queue(broker):
    q = get_settings().queue_for("messaging")
    purge(q)
    yield q
    purge(q)


@pytest.fixture
def fake():
    with running_fake() as f:
        yield f


def digits(phone: str) -> str:
    return phone.replace("-", "")


async def _rows(where: str, *args: Any) -> list[dict[str, Any]]:
    async with connection() as conn:
        return [
            dict(r)
            for r in await conn.fetch(f"SELECT * FROM message WHERE {where} ORDER BY id", *args)
        ]


async def _queue(tenant, client, *, students: int = 2, **body: Any) -> list[dict[str, Any]]:
    """Send (through the API) to the guardians of new students; expand in-process; return
    the queued rows."""
    headers = await tenant.headers()
    made = [await create_student(tenant, headers) for _ in range(students)]
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "#{학생} 학생 보강 안내", "target": {"student_ids": [s["id"] for s in made]},
              **body},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    from models.tables import Job

    job = await Job.select().where(Job.id == job_id).first()
    await pipeline.expand(job_id=job_id, **job["message"])
    rows = await _rows("job = $1", uuid.UUID(job_id))
    assert rows and {r["status"] for r in rows} == {"queued"}
    return rows


async def _age_claims(ids: list[Any]) -> None:
    """As if the lease had run out (instead of waiting for it)."""
    async with connection() as conn:
        await conn.execute(
            "UPDATE message SET claimed_at = claimed_at - interval '1 hour' "
            "WHERE id = ANY($1::uuid[])",
            ids,
        )


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["id"]) for r in rows]


# --- exactly once ---


async def test_a_redelivered_batch_sends_nothing_twice(tenant, client, fake):
    await connect_tenant(tenant.id)
    rows = await _queue(tenant, client)
    first = await pipeline.send_messages(_ids(rows))
    again = await pipeline.send_messages(_ids(rows))
    assert first == {"sent": 2} and again == {}
    assert set(fake.sends_by_key().values()) == {1} and len(fake.messages) == 2
    after = await _rows("id = ANY($1::uuid[])", [r["id"] for r in rows])
    assert {r["status"] for r in after} == {"sent"}
    assert {r["provider_message_id"] for r in after} == set(fake.messages)
    sent = {m["to"]: m for m in fake.messages.values()}
    for r in after:
        m = sent[digits(r["to_phone"])]
        assert m["type"] == "SMS" and m["from"] == "01020000001" and m["text"] == r["body"]
        assert m["customFields"]["idempotencyKey"] == r["idempotency_key"]

    # The delivery status, by polling.
    assert await pipeline.poll_status(message_ids=_ids(rows)) == {"delivered": 2, "failed": 0}
    assert {r["status"] for r in await _rows("id = ANY($1::uuid[])", [r["id"] for r in rows])} == {
        "delivered"
    }


async def test_a_timeout_after_accepting_is_reconciled_not_resent(tenant, client, fake):
    await connect_tenant(tenant.id)
    rows = await _queue(tenant, client)
    fake.behaviour.timeout_after_accept_next = 1
    fake.behaviour.hang_seconds = 2.0  # the client gives up after 1 s
    with pytest.raises(dramatiq.Retry):
        await pipeline.send_messages(_ids(rows))
    assert len(fake.messages) == 2  # the provider accepted both
    left = await _rows("id = ANY($1::uuid[])", [r["id"] for r in rows])
    assert {r["status"] for r in left} == {"sending"}
    assert {r["provider_message_id"] for r in left} == {None}

    # Redelivered within the lease: the claim is someone's in-flight call; nothing is sent.
    with pytest.raises(dramatiq.Retry):
        await pipeline.send_messages(_ids(rows))
    assert fake.requests["send"] == 1

    await _age_claims([r["id"] for r in rows])
    result = await pipeline.send_messages(_ids(rows))
    assert result == {"reconciled": 2}
    assert fake.requests["send"] == 1 and set(fake.sends_by_key().values()) == {1}
    done = await _rows("id = ANY($1::uuid[])", [r["id"] for r in rows])
    # The look-up also told the status: the fake has delivered them by now.
    assert {r["status"] for r in done} == {"delivered"}
    assert {r["provider_message_id"] for r in done} == set(fake.messages)


async def test_a_server_error_before_accepting_is_sent_once_after_checking(tenant, client, fake):
    await connect_tenant(tenant.id)
    rows = await _queue(tenant, client)
    fake.behaviour.fail_next = 1
    with pytest.raises(dramatiq.Retry):
        await pipeline.send_messages(_ids(rows))
    assert fake.messages == {}
    await _age_claims([r["id"] for r in rows])
    assert await pipeline.send_messages(_ids(rows)) == {"sent": 2}
    assert fake.requests["list"] >= 1  # it asked before sending again
    assert set(fake.sends_by_key().values()) == {1} and len(fake.messages) == 2


async def test_rate_limited_batches_wait_and_go_once(tenant, client, fake):
    await connect_tenant(tenant.id)
    rows = await _queue(tenant, client)
    fake.behaviour.rate_limit_next = 1
    fake.behaviour.retry_after = 3
    with pytest.raises(dramatiq.Retry) as exc:
        await pipeline.send_messages(_ids(rows))
    assert exc.value.delay == 3000
    # Certainly not accepted: back in the queue at once, no reconciliation needed.
    assert {r["status"] for r in await _rows("id = ANY($1::uuid[])", [r["id"] for r in rows])} == {
        "queued"
    }
    assert await pipeline.send_messages(_ids(rows)) == {"sent": 2}
    assert len(fake.messages) == 2


async def test_our_rate_limit_spreads_batches(tenant, client, fake, monkeypatch):
    monkeypatch.setenv("MESSAGING_RATE_PER_SECOND", "0.1")
    monkeypatch.setenv("MESSAGING_BATCH_SIZE", "2")
    get_settings.cache_clear()
    try:
        await connect_tenant(tenant.id)
        rows = await _queue(tenant, client, students=3)
        assert await pipeline.send_messages(_ids(rows[:2])) == {"sent": 2}
        # The bucket (2 tokens at 0.1/s) is empty: the next batch is delayed, not sent.
        with pytest.raises(dramatiq.Retry) as exc:
            await pipeline.send_messages(_ids(rows[2:]))
        assert exc.value.delay > 5000
        assert len(fake.messages) == 2
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


async def test_a_forged_signature_fails_the_batch_with_a_reason(tenant, client, fake):
    await connect_tenant(tenant.id, api_secret="not-" + API_SECRET)
    rows = await _queue(tenant, client)
    assert await pipeline.send_messages(_ids(rows)) == {"failed": 2}
    assert fake.auth_failures == 1 and fake.messages == {}
    failed = await _rows("id = ANY($1::uuid[])", [r["id"] for r in rows])
    assert {r["status"] for r in failed} == {"failed"}
    assert all("401" in r["error"] and "SignatureDoesNotMatch" in r["error"] for r in failed)


# --- Alimtalk and its fallback ---


async def _alimtalk_template(tenant, client) -> str:
    r = await client.post(
        "/api/v1/messaging/templates",
        json={"code": "attend", "channel": "alimtalk", "kakao_template_id": "KA01TP-ATTEND",
              "body": "#{학생} 학생이 등원했습니다 ✅", "strip_unencodable": True},
        headers=await tenant.headers(),
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_alimtalk_failure_falls_back_to_sms_once(tenant, client, fake):
    await connect_tenant(tenant.id)
    template = await _alimtalk_template(tenant, client)
    rows = await _queue(tenant, client, template_id=template, text=None)
    assert {r["channel"] for r in rows} == {"alimtalk"}
    failing = digits(rows[0]["to_phone"])
    fake.behaviour.kakao_fail_numbers = {failing}

    assert await pipeline.send_messages(_ids(rows)) == {"sent": 2}
    ata = [m for m in fake.messages.values() if m["type"] == "ATA"]
    assert len(ata) == 2
    assert ata[0]["kakaoOptions"]["pfId"] == "KA01PF-FAKE"
    assert ata[0]["kakaoOptions"]["templateId"] == "KA01TP-ATTEND"
    assert ata[0]["kakaoOptions"]["disableSms"] is True
    assert "✅" in ata[0]["text"]  # Kakao carries it

    # Kakao reports the failure later; the poll finds it and queues the fallback.
    assert await pipeline.poll_status(message_ids=_ids(rows)) == {"delivered": 1, "failed": 1}
    assert await pipeline.poll_status(message_ids=_ids(rows)) == {}  # nothing twice
    parent = (await _rows("id = $1", rows[0]["id"]))[0]
    assert parent["status"] == "failed" and parent["provider_code"] == "3104"
    fallback = await _rows("parent = $1", rows[0]["id"])
    assert len(fallback) == 1 and fallback[0]["status"] == "queued"
    assert fallback[0]["channel"] == "sms" and "✅" not in fallback[0]["body"]
    assert fallback[0]["idempotency_key"].endswith(":text")

    assert await pipeline.send_messages(_ids(fallback)) == {"sent": 1}
    assert await pipeline.send_messages(_ids(fallback)) == {}
    assert (await _rows("id = $1", rows[0]["id"]))[0]["status"] == "fallback_sent"
    to_failing = fake.to(failing)
    assert sorted(m["type"] for m in to_failing) == ["ATA", "SMS"]
    assert set(fake.sends_by_key().values()) == {1}
    # The other guardian got Alimtalk only.
    assert [m["type"] for m in fake.to(digits(rows[1]["to_phone"]))] == ["ATA"]


async def test_rejected_alimtalk_falls_back_and_a_failed_fallback_says_so(tenant, client, fake):
    await connect_tenant(tenant.id)
    template = await _alimtalk_template(tenant, client)
    rows = await _queue(tenant, client, students=1, template_id=template, text=None)
    fake.behaviour.reject_numbers = {digits(rows[0]["to_phone"])}
    assert await pipeline.send_messages(_ids(rows)) == {"failed": 1}
    fallback = await _rows("parent = $1", rows[0]["id"])
    assert len(fallback) == 1
    assert await pipeline.send_messages(_ids(fallback)) == {"failed": 1}
    parent = (await _rows("id = $1", rows[0]["id"]))[0]
    assert parent["status"] == "failed" and "fallback failed too" in parent["error"]
    assert fake.messages == {}


# --- automatic notices ---


async def _klass(tenant, students: int = 1) -> tuple[uuid.UUID, uuid.UUID, list[dict[str, Any]]]:
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, title="중2 수학")
    sessions, _ = await create_sessions(tenant, lecture, 1)
    made = [await create_student(tenant, headers) for _ in range(students)]
    await enroll(tenant, lecture, [uuid.UUID(s["id"]) for s in made])
    return lecture, sessions[0], made


async def _event_rows(tenant) -> list[dict[str, Any]]:
    return await _rows("tenant = $1 AND event_id IS NOT NULL", tenant.id)


async def test_absence_and_lateness_notices_once_per_event(tenant, client, fake):
    await connect_tenant(tenant.id)
    _, session, students = await _klass(tenant, 2)
    await check(tenant, session, students[0]["id"], "absent")
    await check(tenant, session, students[1]["id"], "late")
    await pipeline.dispatch_events()
    await pipeline.dispatch_events()  # a redelivered dispatch adds nothing
    rows = await _event_rows(tenant)
    assert len(rows) == 2
    by_student = {str(r["student"]): r for r in rows}
    absent = by_student[students[0]["id"]]
    assert "결석" in absent["body"] and students[0]["name"] in absent["body"]
    assert "중2 수학" in absent["body"] and "3월 2일" in absent["body"]
    assert "지각" in by_student[students[1]["id"]]["body"]
    assert absent["to_phone"] == students[0]["guardians"][0]["phone"]
    assert absent["idempotency_key"].startswith(f"event:{absent['event_id']}:")
    await pipeline.send_messages(_ids(rows))
    await pipeline.send_messages(_ids(rows))
    assert len(fake.messages) == 2 and set(fake.sends_by_key().values()) == {1}
    async with connection() as conn:
        events = await conn.fetch("SELECT * FROM outbox_event WHERE tenant = $1", tenant.id)
    assert all(e["processed_at"] is not None and e["last_error"] is None for e in events)


async def test_a_rounds_notices_go_out_in_one_batch_per_academy(make_tenant, messaging_queue):
    from tests.sqs_helpers import decode, receive

    await pipeline.dispatch_events()  # other tests' events are not this round's
    purge(messaging_queue)
    academies = []
    for size in (3, 2):
        t = await make_tenant()
        await connect_tenant(t.id)
        _, session, students = await _klass(t, size)
        for s in students:
            await check(t, session, s["id"], "absent")
        academies.append(t)
    assert await pipeline.dispatch_events() == {"queued": 5}
    batches = [
        set(m.kwargs["message_ids"])
        for m in (decode(r["Body"]) for r in receive(messaging_queue))
        if m.actor_name == "messaging.send_batch"
    ]
    # One message per academy holding all its notices (it was one per notice).
    notices = [{str(r["id"]) for r in await _event_rows(t)} for t in academies]
    assert [len(n) for n in notices] == [3, 2]
    assert sorted(batches, key=len) == sorted(notices, key=len)


async def test_notices_switched_off_or_no_longer_true_are_skipped(tenant, client, fake):
    await connect_tenant(tenant.id, auto_late=False)
    _, session, students = await _klass(tenant, 2)
    await check(tenant, session, students[0]["id"], "late")
    await check(tenant, session, students[1]["id"], "absent")
    await check(tenant, session, students[1]["id"], "present")  # corrected before sending
    assert await pipeline.dispatch_events() == {"off": 1, "stale": 1}
    assert await _event_rows(tenant) == []
    async with connection() as conn:
        notes = {
            e["kind"]: e["last_error"]
            for e in await conn.fetch("SELECT * FROM outbox_event WHERE tenant = $1", tenant.id)
        }
    assert "switched off" in notes["attendance.late"]
    assert "no longer true" in notes["attendance.absent"]


async def test_score_notice_uses_the_academys_template(tenant, client, fake):
    await connect_tenant(tenant.id)
    await pipeline.dispatch_events()  # other tests' events are not this one's to count
    r = await client.post(
        "/api/v1/messaging/templates",
        json={"code": "score.recorded", "body": "#{학생}: #{시험} #{점수}/#{만점}"},
        headers=await tenant.headers(),
    )
    assert r.status_code == 201
    lecture, _, students = await _klass(tenant, 1)
    exam = await create_exam(tenant, lecture, title="3월 모의고사", max_score=100)
    put = await client.put(
        f"/api/v1/exams/{exam['id']}/scores/{students[0]['id']}",
        json={"score": 87.5},
        headers=await tenant.headers(),
    )
    assert put.status_code == 200, put.text
    assert await pipeline.dispatch_events() == {"queued": 1}
    rows = await _event_rows(tenant)
    assert [r["body"] for r in rows] == [f"{students[0]['name']}: 3월 모의고사 87.5/100"]
    assert rows[0]["template_code"] == "score.recorded"


async def test_videos_past_their_due_date_remind_once_per_unwatched_student(tenant, client, fake):
    import datetime as dt

    from models.videos import emit_due_reminders
    from pipelines.korean import today_kst
    from tests.factories.videos import create_video, mark_ready

    await connect_tenant(tenant.id)
    await pipeline.dispatch_events()  # other tests' events are not this one's to count
    headers = await tenant.headers()
    lecture, _, students = await _klass(tenant, 2)
    video = (await create_video(tenant, headers, lecture_id=lecture, title="3강 함수"))["video"]
    await mark_ready(video["id"])
    due = today_kst() - dt.timedelta(days=1)
    r = await client.patch(
        f"/api/v1/videos/{video['id']}", json={"due_date": due.isoformat()}, headers=headers
    )
    assert r.status_code == 200 and r.json()["due_date"] == due.isoformat(), r.text
    async with connection() as conn:  # the second student watched it all
        await conn.execute(
            "INSERT INTO video_watch (id, tenant, video, student, completed) "
            "VALUES ($1, $2, $3, $4, true)",
            uuid.uuid4(),
            tenant.id,
            uuid.UUID(video["id"]),
            uuid.UUID(students[1]["id"]),
        )
    assert await emit_due_reminders(today_kst()) == 1
    assert await emit_due_reminders(today_kst()) == 0  # once per (video, student)
    assert await pipeline.dispatch_events() == {"queued": 1}
    (row,) = await _event_rows(tenant)
    assert str(row["student"]) == students[0]["id"]
    assert "3강 함수" in row["body"] and f"{due.month}월 {due.day}일" in row["body"]
    # Not yet due: nothing.
    r = await client.patch(
        f"/api/v1/videos/{video['id']}", json={"due_date": today_kst().isoformat()}, headers=headers
    )
    assert r.status_code == 200
    async with connection() as conn:
        await conn.execute("DELETE FROM outbox_event WHERE tenant = $1", tenant.id)
    assert await emit_due_reminders(today_kst()) == 0


async def test_a_notice_without_a_sender_number_ends_with_a_reason(tenant, client):
    _, session, students = await _klass(tenant, 1)
    await check(tenant, session, students[0]["id"], "absent")
    assert await pipeline.dispatch_events() == {"no_sender": 1}
    async with connection() as conn:
        event = await conn.fetchrow("SELECT * FROM outbox_event WHERE tenant = $1", tenant.id)
    assert event["processed_at"] is not None
    assert event["last_error"] == "skipped: no registered sender number"


async def test_pump_sends_dispatch_when_events_wait(tenant, client, messaging_queue):
    from tests.sqs_helpers import counts

    _, session, students = await _klass(tenant, 1)
    await check(tenant, session, students[0]["id"], "absent")
    result = await pipeline.pump()
    assert result["events"] == 1
    assert counts(messaging_queue)["visible"] >= 1


async def test_without_a_provider_messages_fail_with_the_reason(tenant, client, monkeypatch):
    r = await client.post(
        "/api/v1/messaging/senders", json={"phone": "010-2000-0002"}, headers=await tenant.headers()
    )
    assert r.status_code == 201
    rows = await _queue(tenant, client, students=1)  # queued while the console was the default
    monkeypatch.setenv("MESSAGING_PROVIDER", "")
    get_settings.cache_clear()
    try:
        assert await pipeline.send_messages(_ids(rows)) == {"failed": 1}
        (row,) = await _rows("id = $1", rows[0]["id"])
        assert row["status"] == "failed" and "no messaging provider" in row["error"]
        r = await client.post(
            "/api/v1/messaging/send",
            json={"text": "안내", "target": {"recipients": [{"phone": "01020011000"}]}},
            headers=await tenant.headers(),
        )
        assert r.status_code == 422 and r.json()["type"] == "/problems/messaging-no-provider"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
