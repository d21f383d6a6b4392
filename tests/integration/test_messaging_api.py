"""Messaging API over real Postgres: settings with encrypted credentials, sender numbers,
templates, sending (dry run, validation, the night block), the log, the signed webhook,
and tenant isolation."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

import pytest

from actors import messaging as pipeline
from models.db import connection
from models.messaging_config import default_sender, tenant_messaging
from models.tables import Job
from ops.settings import get_settings
from pipelines.messaging import policy
from pipelines.messaging.policy import KST
from pipelines.messaging.signing import WEBHOOK_HEADER, sign_webhook, webhook_secret
from tests.factories import create_student
from tests.sqs_helpers import purge

pytestmark = pytest.mark.usefixtures("broker")

SECRET = "sk-very-secret-value-987654"


@pytest.fixture(autouse=True)
def messaging_queue(broker):
    q = get_settings().queue_for("messaging")
    purge(q)
    yield q
    purge(q)


async def _setup(tenant) -> dict[str, str]:
    headers = await tenant.headers()
    r = await tenant.client.post(
        "/api/v1/messaging/senders", json={"phone": "01020003000", "label": "대표"},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["phone"] == "010-2000-3000" and r.json()["is_default"] is True
    return headers


async def _run_job(job_id: Any) -> None:
    """Run the job's first step in-process, as a worker would."""
    row = await Job.select().where(Job.id == job_id).first()
    payload = dict(row["message"])
    await pipeline.expand(job_id=str(job_id), **payload)


async def _job_messages(job_id: Any) -> list[dict[str, Any]]:
    async with connection() as conn:
        return [
            dict(r)
            for r in await conn.fetch(
                "SELECT * FROM message WHERE job = $1 ORDER BY to_phone", job_id
            )
        ]


# --- settings and credentials ---


async def test_credentials_are_encrypted_masked_and_never_logged(tenant, client, caplog):
    headers = await tenant.headers()
    caplog.set_level(logging.DEBUG)
    r = await client.put(
        "/api/v1/messaging/settings",
        json={"provider": "solapi", "credentials": {"api_key": "NCSKEY12345678", "api_secret": SECRET},
              "pf_id": "KA01PF1", "opt_out_number": "080-123-4567", "auto_score": False},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["provider"] == "solapi" and body["auto_score"] is False
    assert body["credentials"] == {"api_key": "••••5678", "api_secret": "••••"}
    assert SECRET not in r.text
    assert body["webhook_url"].endswith(f"/api/v1/messaging/webhooks/solapi?tenant={tenant.slug}")
    async with connection() as conn:
        stored = await conn.fetchval(
            "SELECT credentials FROM messaging_config WHERE tenant = $1", tenant.id
        )
    assert stored and SECRET not in stored and "NCSKEY" not in stored
    assert (await tenant_messaging(tenant.id)).credentials.get("api_secret") == SECRET
    assert caplog.records and SECRET not in caplog.text
    assert not any(SECRET in str(vars(record)) for record in caplog.records)

    got = await client.get("/api/v1/messaging/settings", headers=headers)
    assert got.status_code == 200 and SECRET not in got.text


async def test_settings_validation_lists_every_error(tenant, client):
    h = await tenant.headers()
    url = "/api/v1/messaging/settings"
    # The provider is one of the schema's enum: refused with the body's shape.
    r = await client.put(url, json={"provider": "nope", "opt_out_number": "12"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "provider"
    r = await client.put(
        url,
        json={"provider": "solapi", "opt_out_number": "12", "credentials": None},
        headers=h,
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"credentials", "opt_out_number"}
    spec = (await client.get("/schema/openapi.json")).json()
    provider = spec["components"]["schemas"]["SettingsUpdate"]["properties"]["provider"]
    assert [set(p["enum"]) for p in provider["oneOf"]] == [{"", "console", "solapi"}]


async def test_solapi_without_credentials_is_refused(tenant, client):
    r = await client.put(
        "/api/v1/messaging/settings", json={"provider": "solapi"}, headers=await tenant.headers()
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "credentials"


async def test_staff_cannot_read_settings(tenant, client):
    email = await tenant.add_user("teacher")
    r = await client.get(
        "/api/v1/messaging/settings", headers=await tenant.headers(email, "password-123")
    )
    assert r.status_code == 403


async def test_tenant_credentials_are_isolated(make_tenant, client):
    a, b = await make_tenant(), await make_tenant()
    await client.put(
        "/api/v1/messaging/settings",
        json={"provider": "solapi", "credentials": {"api_key": "AKEY0000", "api_secret": SECRET}},
        headers=await a.headers(),
    )
    r = await client.get("/api/v1/messaging/settings", headers=await b.headers())
    assert r.json()["provider"] == "" and r.json()["credentials"] == {}
    assert (await tenant_messaging(b.id)).provider == get_settings().messaging_provider
    assert (
        r.json()["webhook_secret"]
        != (await client.get("/api/v1/messaging/settings", headers=await a.headers())).json()[
            "webhook_secret"
        ]
    )


# --- senders and templates ---


async def test_sender_numbers(tenant, client):
    headers = await _setup(tenant)
    again = await client.post(
        "/api/v1/messaging/senders", json={"phone": "010-2000-3000"}, headers=headers
    )
    assert again.status_code == 409
    bad = await client.post("/api/v1/messaging/senders", json={"phone": "12"}, headers=headers)
    assert bad.status_code == 422
    second = await client.post(
        "/api/v1/messaging/senders", json={"phone": "02-555-1234", "is_default": True},
        headers=headers,
    )  # fmt: skip
    assert second.status_code == 201
    listed = (await client.get("/api/v1/messaging/senders", headers=headers)).json()["items"]
    assert [s["is_default"] for s in listed] == [False, True]
    first = (await client.get("/api/v1/messaging/senders?limit=1", headers=headers)).json()
    rest = await client.get(
        f"/api/v1/messaging/senders?limit=1&cursor={first['next_cursor']}", headers=headers
    )
    assert [s["phone"] for s in first["items"] + rest.json()["items"]] == [
        s["phone"] for s in listed
    ]
    assert rest.json()["next_cursor"] is None
    assert await default_sender(tenant.id) == "02-555-1234"


async def test_template_validation(tenant, client):
    headers = await tenant.headers()
    r = await client.post(
        "/api/v1/messaging/templates",
        json={"code": "Bad Code", "body": " ", "channel": "fax"},
        headers=headers,
    )
    assert r.status_code == 422
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert errors.keys() == {"code", "body", "channel"}
    assert errors["body"] == "must not be empty"
    r = await client.post(
        "/api/v1/messaging/templates",
        json={"code": "bad", "body": "안녕 😀 #{학생", "channel": "alimtalk"},
        headers=headers,
    )
    assert r.status_code == 422
    fields = [e["field"] for e in r.json()["errors"]]
    assert "kakao_template_id" in fields and fields.count("body") == 2
    ok = await client.post(
        "/api/v1/messaging/templates",
        json={"code": "notice", "body": "#{학생} 학생 😀 공지", "strip_unencodable": True},
        headers=headers,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["variables"] == ["학생"]
    taken = await client.post(
        "/api/v1/messaging/templates", json={"code": "notice", "body": "x"}, headers=headers
    )
    assert taken.status_code == 409
    more = await client.post(
        "/api/v1/messaging/templates", json={"code": "a-first", "body": "x"}, headers=headers
    )
    assert more.status_code == 201, more.text
    first = (await client.get("/api/v1/messaging/templates?limit=1", headers=headers)).json()
    assert [t["code"] for t in first["items"]] == ["a-first"] and first["next_cursor"]
    rest = await client.get(
        f"/api/v1/messaging/templates?cursor={first['next_cursor']}", headers=headers
    )
    assert [t["code"] for t in rest.json()["items"]] == ["notice"]


async def test_templates_are_isolated(make_tenant, client):
    a, b = await make_tenant(), await make_tenant()
    r = await client.post(
        "/api/v1/messaging/templates", json={"code": "t1", "body": "A 학원"},
        headers=await a.headers(),
    )  # fmt: skip
    assert r.status_code == 201
    listed = await client.get("/api/v1/messaging/templates", headers=await b.headers())
    assert listed.json()["items"] == []
    # B's sends cannot use A's template.
    await _setup(b)
    s = await client.post(
        "/api/v1/messaging/send",
        json={"template_id": r.json()["id"], "target": {"recipients": [{"phone": "01020004000"}]}},
        headers=await b.headers(),
    )
    assert s.status_code == 422 and s.json()["errors"][0]["field"] == "template_id"


# --- sending ---


async def test_dry_run_counts_and_prices_a_students_guardians(tenant, client):
    headers = await _setup(tenant)
    student = await create_student(
        tenant,
        headers,
        guardians=[
            {"name": "엄마", "phone": "010-2100-0001", "relation": "mother", "is_primary": True},
            {"name": "아빠", "phone": "010-2100-0002", "relation": "father"},
        ],
    )
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "#{보호자}님, #{학생} 학생 상담 안내", "dry_run": True,
              "target": {"student_ids": [student["id"]]}},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["recipients"] == 2 and p["by_channel"] == {"sms": 2} and p["errors"] == []
    assert p["cost_krw"] == "40" and p["cost_is_estimate"] is True
    assert p["sample"] == f"엄마님, {student['name']} 학생 상담 안내"
    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM message WHERE tenant = $1", tenant.id) == 0


async def test_missing_variable_refuses_the_send(tenant, client):
    headers = await _setup(tenant)
    r = await client.post(
        "/api/v1/messaging/send",
        json={
            "text": "#{학생} 학생 #{시험} 결과",
            "target": {"recipients": [{"phone": "01020005000"}]},
        },
        headers=headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "/problems/messaging-template"
    assert "#{학생}" in r.json()["detail"] and "#{시험}" in r.json()["detail"]
    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM job WHERE tenant = $1", tenant.id) == 0


async def test_emoji_refused_unless_stripped(tenant, client):
    headers = await _setup(tenant)
    target = {"recipients": [{"phone": "01020006000"}]}
    r = await client.post(
        "/api/v1/messaging/send", json={"text": "축하해요 🎉", "target": target}, headers=headers
    )
    assert r.status_code == 422 and "EUC-KR" in r.json()["detail"]


async def test_no_sender_number_is_a_clear_error(tenant, client):
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "안내", "target": {"recipients": [{"phone": "01020007000"}]}},
        headers=await tenant.headers(),
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/messaging-no-sender"


async def test_unknown_and_foreign_ids_in_the_target(make_tenant, client):
    a, b = await make_tenant(), await make_tenant()
    headers = await _setup(b)
    foreign = await create_student(a)
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "안내", "target": {"student_ids": [foreign["id"], str(uuid.uuid4())]}},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "target.student_ids"
    two = await client.post(
        "/api/v1/messaging/send",
        json={
            "text": "안내",
            "target": {"student_ids": [foreign["id"]], "lecture_id": str(uuid.uuid4())},
        },
        headers=headers,
    )
    assert two.status_code == 422 and two.json()["errors"][0]["field"] == "target"


async def test_advertising_is_blocked_at_night(tenant, client, monkeypatch):
    headers = await _setup(tenant)
    await client.put(
        "/api/v1/messaging/settings", json={"opt_out_number": "080-123-4567"}, headers=headers
    )
    t = await client.post(
        "/api/v1/messaging/templates",
        json={"code": "ad", "body": "봄 특강 모집", "advertising": True},
        headers=headers,
    )
    body = {"template_id": t.json()["id"], "target": {"recipients": [{"phone": "01020008000"}]}}
    night = dt.datetime(2026, 3, 2, 21, 0, tzinfo=KST)
    monkeypatch.setattr(policy, "utcnow", lambda: night.astimezone(dt.UTC))
    r = await client.post("/api/v1/messaging/send", json=body, headers=headers)
    assert r.status_code == 422 and r.json()["type"] == "/problems/messaging-night-block"
    assert r.json()["next_allowed"].startswith("2026-03-03T08:00:00+09:00")

    day = dt.datetime(2026, 3, 2, 10, 0, tzinfo=KST)
    monkeypatch.setattr(policy, "utcnow", lambda: day.astimezone(dt.UTC))
    ok = await client.post(
        "/api/v1/messaging/send", json={**body, "dry_run": True}, headers=headers
    )
    assert ok.status_code == 200
    assert ok.json()["sample"] == "(광고) 봄 특강 모집\n무료수신거부 080-123-4567"
    # A queued advertising row that reaches the sender at night is failed, not sent.
    sent = await client.post("/api/v1/messaging/send", json=body, headers=headers)
    assert sent.status_code == 202
    await _run_job(sent.json()["job_id"])
    monkeypatch.setattr(policy, "utcnow", lambda: night.astimezone(dt.UTC))
    rows = await _job_messages(uuid.UUID(sent.json()["job_id"]))
    await pipeline.send_messages([str(r["id"]) for r in rows])
    rows = await _job_messages(uuid.UUID(sent.json()["job_id"]))
    assert rows[0]["status"] == "failed" and "20:50" in rows[0]["error"]


async def test_send_through_the_console_provider_and_the_log(tenant, client):
    headers = await _setup(tenant)
    students = [await create_student(tenant, headers) for _ in range(3)]
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "#{학생} 학생 보강 안내 " + "가" * 40,
              "target": {"student_ids": [s["id"] for s in students]}},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 202, r.text
    job_id = uuid.UUID(r.json()["job_id"])
    assert r.json()["preview"]["by_channel"] == {"lms": 3}
    await _run_job(job_id)
    await _run_job(job_id)  # a redelivered expand adds nothing
    rows = await _job_messages(job_id)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"queued"}
    await pipeline.send_messages([str(r["id"]) for r in rows])
    await pipeline.finish_if_done(job_id)
    rows = await _job_messages(job_id)
    assert {r["status"] for r in rows} == {"delivered"}
    assert all(r["provider"] == "console" and r["provider_message_id"] for r in rows)
    job = (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
    assert job["status"] == "DONE" and job["result"] == {"recipients": 3, "sent": 3, "failed": 0}

    # The log: filters and cursor pages.
    page1 = (await client.get("/api/v1/messaging/messages?limit=2", headers=headers)).json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = (
        await client.get(
            f"/api/v1/messaging/messages?limit=2&cursor={page1['next_cursor']}", headers=headers
        )
    ).json()
    assert len(page2["items"]) == 1 and page2["next_cursor"] is None
    ids = {m["id"] for m in page1["items"] + page2["items"]}
    assert ids == {str(r["id"]) for r in rows}
    one = await client.get(
        f"/api/v1/messaging/messages?student_id={students[0]['id']}", headers=headers
    )
    assert [m["student_id"] for m in one.json()["items"]] == [students[0]["id"]]
    assert one.json()["items"][0]["body"].startswith(students[0]["name"])
    failed = await client.get("/api/v1/messaging/messages?status=failed", headers=headers)
    assert failed.json()["items"] == []
    today = dt.datetime.now(KST).date()
    dated = await client.get(
        f"/api/v1/messaging/messages?date_from={today}&date_to={today}", headers=headers
    )
    assert len(dated.json()["items"]) == 3
    before = await client.get(
        f"/api/v1/messaging/messages?date_to={today - dt.timedelta(days=1)}", headers=headers
    )
    assert before.json()["items"] == []
    bad = await client.get("/api/v1/messaging/messages?cursor=zzz", headers=headers)
    assert bad.status_code == 422


async def test_message_logs_are_isolated(make_tenant, client):
    a, b = await make_tenant(), await make_tenant()
    headers = await _setup(a)
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "안내", "target": {"recipients": [{"phone": "01020009000"}]}},
        headers=headers,
    )
    await _run_job(r.json()["job_id"])
    mine = (await client.get("/api/v1/messaging/messages", headers=headers)).json()["items"]
    assert len(mine) == 1
    theirs = await client.get("/api/v1/messaging/messages", headers=await b.headers())
    assert theirs.json()["items"] == []
    other = await client.get(
        f"/api/v1/messaging/messages/{mine[0]['id']}", headers=await b.headers()
    )
    assert other.status_code == 404


# --- webhook ---


async def _sent_message(tenant, client) -> dict[str, Any]:
    headers = await _setup(tenant)
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "안내", "target": {"recipients": [{"phone": "01020010000"}]}},
        headers=headers,
    )
    await _run_job(r.json()["job_id"])
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM message WHERE job = $1", uuid.UUID(r.json()["job_id"])
        )
        await conn.execute(
            "UPDATE message SET status = 'sent', provider = 'solapi', provider_message_id = $2 "
            "WHERE id = $1",
            row["id"],
            f"M4V{uuid.uuid4().hex[:20].upper()}",
        )
        return dict(await conn.fetchrow("SELECT * FROM message WHERE id = $1", row["id"]))


def _report(message_id: str, code: str = "4000") -> bytes:
    return json.dumps(
        [{"data": {"messageId": message_id, "statusCode": code, "statusMessage": "ok"}}]
    ).encode()


async def test_webhook_with_a_valid_signature_updates_the_status(tenant, client):
    msg = await _sent_message(tenant, client)
    body = _report(msg["provider_message_id"])
    r = await client.post(
        f"/api/v1/messaging/webhooks/solapi?tenant={tenant.slug}",
        content=body,
        headers={WEBHOOK_HEADER: sign_webhook(webhook_secret(tenant.id), body),
                 "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"reports": 1, "delivered": 1, "failed": 0}
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT status, delivered_at FROM message WHERE id = $1", msg["id"]
        )
    assert row["status"] == "delivered" and row["delivered_at"] is not None


async def test_webhook_with_a_forged_signature_changes_nothing(make_tenant, client):
    a, b = await make_tenant(), await make_tenant()
    msg = await _sent_message(a, client)
    body = _report(msg["provider_message_id"], "3059")
    for slug, header in (
        (a.slug, sign_webhook("not-the-secret", body)),
        (a.slug, ""),
        # B's valid signature, claiming to be A.
        (a.slug, sign_webhook(webhook_secret(b.id), body)),
        ("no-such-academy", sign_webhook(webhook_secret(a.id), body)),
    ):
        r = await client.post(
            f"/api/v1/messaging/webhooks/solapi?tenant={slug}",
            content=body,
            headers={WEBHOOK_HEADER: header},
        )
        assert r.status_code == 401, r.text
        assert r.json()["type"] == "/problems/bad-signature"
    # B, correctly signed for itself, cannot touch A's message.
    r = await client.post(
        f"/api/v1/messaging/webhooks/solapi?tenant={b.slug}",
        content=body,
        headers={WEBHOOK_HEADER: sign_webhook(webhook_secret(b.id), body)},
    )
    assert r.status_code == 200 and r.json()["failed"] == 0
    async with connection() as conn:
        assert await conn.fetchval("SELECT status FROM message WHERE id = $1", msg["id"]) == "sent"


async def test_webhook_garbage_body_is_a_field_error(tenant, client):
    body = b'{"not": "a list"}'
    r = await client.post(
        f"/api/v1/messaging/webhooks/solapi?tenant={tenant.slug}",
        content=body,
        headers={WEBHOOK_HEADER: sign_webhook(webhook_secret(tenant.id), body)},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"


async def test_an_explicit_list_sends_once_per_phone(tenant, client):
    headers = await _setup(tenant)
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "안내", "dry_run": True,
              "target": {"recipients": [{"phone": "010-2000-4444"}, {"phone": "01020004444"},
                                        {"phone": "+82 10-2000-4444"}, {"phone": "010.2000.4444"},
                                        {"phone": "010-2000-5555"}]}},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["recipients"] == 2
    bad = await client.post(
        "/api/v1/messaging/send",
        json={"text": "안내", "target": {"recipients": [{"phone": "12"}, {"phone": "x"}]}},
        headers=headers,
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == [
        "target.recipients[0].phone",
        "target.recipients[1].phone",
    ]


async def test_messaging_routes_are_in_the_openapi_schema(client):
    spec = (await client.get("/schema/openapi.json")).json()
    for path in (
        "/api/v1/messaging/send",
        "/api/v1/messaging/messages",
        "/api/v1/messaging/messages/{message_id}",
        "/api/v1/messaging/webhooks/solapi",
        "/api/v1/messaging/templates/{template_id}",
    ):
        assert path in spec["paths"], path
