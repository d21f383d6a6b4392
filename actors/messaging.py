"""The messaging pipeline: small retryable steps on the ``messaging`` tier.

1. ``messaging.expand``: a send request's recipients become ``message`` rows, in one
   statement; then one ``send_batch`` message per batch, after the commit.
2. ``messaging.send_batch``: claims its rows, waits for the provider rate limit, calls the
   provider once per batch and records the provider's ids.
3. ``messaging.poll_status``: asks the provider for delivery results (the delivery-report
   webhook does the same when the provider calls us first).
4. Alimtalk that fails (at send, in a poll or a report) gets its SMS/LMS fallback: a new row
   with its own idempotency key, sent by ``send_batch``.

``messaging.dispatch_events`` turns outbox events (absence, lateness, new score, unwatched
video) into notices.

Exactly once, although SQS delivers at least once and workers die:

* Every message is a row with a unique ``idempotency_key`` -- (request or event, recipient,
  channel) -- inserted before any provider call. A redelivered expand inserts nothing new.
* A row is *claimed* (``queued -> sending``, committed) before the provider call, and the
  provider's message id is recorded when it answers. A redelivered batch skips rows that
  are no longer ``queued``.
* A row left in ``sending`` -- the worker died between the provider call and our commit, or
  the call timed out after the provider accepted -- is not sent again blindly: once its
  claim is older than the lease, the provider is asked whether it has a message with that
  idempotency key; if so, the row takes that id; only if not is it sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import dramatiq

from actors.jobs import finish_job, job, set_progress, start_job, utcnow
from models.db import connection, on_commit, transaction
from models.videos import emit_due_reminders
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.korean import InvalidPhone, normalize_phone, phone_digits, today_kst
from pipelines.messaging import policy
from pipelines.messaging.compose import Composed, Recipient, Spec, compose, family, values_for
from pipelines.messaging.credentials import Credentials, decrypt
from pipelines.messaging.providers import (
    OutgoingMessage,
    Provider,
    ProviderError,
    ProviderRateLimited,
    ProviderUncertain,
    Report,
    build_provider,
)
from pipelines.messaging.providers.base import DeliveryState
from pipelines.messaging.text import Channel, MessageTextError, prepare_sms

log = logging.getLogger("actors.messaging")

TIER = "messaging"
# How often a sent message's status is polled before it is left at "sent".
MAX_POLLS = 10
# A rate-limit wait longer than this is a delayed retry instead of a sleep in the worker.
MAX_INLINE_WAIT_SECONDS = 5.0

EVENT_KINDS = ("attendance.absent", "attendance.late", "score.recorded", "video.unwatched")
# Which switch of ``messaging_config`` turns each kind of automatic notice on.
EVENT_SWITCH = {
    "attendance.absent": "auto_absence",
    "attendance.late": "auto_late",
    "score.recorded": "auto_score",
    "video.unwatched": "auto_video_reminder",
}
# Used when the academy has no template of that code.
DEFAULT_NOTICES = {
    "attendance.absent": "[#{학원}] #{학생} 학생이 #{날짜} #{강의} 수업에 결석했습니다.",
    "attendance.late": "[#{학원}] #{학생} 학생이 #{날짜} #{강의} 수업에 지각했습니다.",
    "score.recorded": "[#{학원}] #{학생} 학생의 #{시험} 점수는 #{점수}점(만점 #{만점}점)입니다.",
    "video.unwatched": "[#{학원}] #{학생} 학생이 '#{영상}' 영상을 아직 시청하지 않았습니다. "
    "시청 기한: #{기한}",
}


def lease_seconds() -> float:
    """How old a claim must be before it is reconciled: beyond any provider call in flight."""
    s = get_settings()
    return max(float(s.messaging_send_lease_seconds), s.messaging_http_timeout_seconds * 2 + 1)


# --- tenant settings and the provider ----------------------------------------------------


@dataclass(frozen=True)
class TenantMessaging:
    tenant_id: uuid.UUID
    academy: str
    provider: str
    credentials: Credentials
    pf_id: str
    opt_out_number: str
    switches: dict[str, bool]
    own_account: bool = False  # its own provider credentials (else the server's account)

    def build(self) -> Provider:
        return build_provider(self.provider, self.credentials)

    @property
    def rate_key(self) -> str:
        """One rate-limit bucket per provider account."""
        return f"{self.provider}:{self.tenant_id if self.own_account else 'server'}"


async def tenant_messaging(tenant_id: Any) -> TenantMessaging:
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT t.name, c.provider, c.credentials, c.pf_id, c.opt_out_number,
                   c.auto_absence, c.auto_late, c.auto_score, c.auto_video_reminder
            FROM tenant t LEFT JOIN messaging_config c ON c.tenant = t.id
            WHERE t.id = $1
            """,
            uuid.UUID(str(tenant_id)),
        )
    if row is None:
        raise LookupError(f"tenant {tenant_id} not found")
    own = bool(row["provider"])
    return TenantMessaging(
        tenant_id=uuid.UUID(str(tenant_id)),
        academy=row["name"],
        provider=row["provider"] if own else get_settings().messaging_provider,
        credentials=decrypt(row["credentials"]) if own else Credentials(),
        pf_id=row["pf_id"] or "",
        opt_out_number=row["opt_out_number"] or "",
        switches={
            name: True if row[name] is None else bool(row[name])
            for name in ("auto_absence", "auto_late", "auto_score", "auto_video_reminder")
        },
        own_account=own,
    )


# --- recipients --------------------------------------------------------------------------

GUARDIANS_OF_STUDENTS = """
    SELECT g.id AS guardian_id, g.name AS guardian_name, g.phone,
           s.id AS student_id, s.name AS student_name
    FROM student s
    JOIN student_guardian sg ON sg.student = s.id AND sg.tenant = $1
    JOIN guardian g ON g.id = sg.guardian AND g.tenant = $1
    WHERE s.tenant = $1 AND s.deleted_at IS NULL AND s.id = ANY($2::uuid[])
    ORDER BY s.id, sg.is_primary DESC, g.id
"""

GUARDIANS_OF_LECTURE = """
    SELECT g.id AS guardian_id, g.name AS guardian_name, g.phone,
           s.id AS student_id, s.name AS student_name
    FROM enrollment e
    JOIN student s ON s.id = e.student AND s.tenant = $1 AND s.deleted_at IS NULL
    JOIN student_guardian sg ON sg.student = s.id AND sg.tenant = $1
    JOIN guardian g ON g.id = sg.guardian AND g.tenant = $1
    WHERE e.tenant = $1 AND e.lecture = $2::uuid AND e.status = 'active'
    ORDER BY s.id, sg.is_primary DESC, g.id
"""

# A guardian alone: the student is known when the guardian has exactly one (live) student.
GUARDIANS = """
    SELECT g.id AS guardian_id, g.name AS guardian_name, g.phone,
           (CASE WHEN count(s.id) = 1 THEN (array_agg(s.id))[1] END) AS student_id,
           (CASE WHEN count(s.id) = 1 THEN (array_agg(s.name))[1] END) AS student_name
    FROM guardian g
    LEFT JOIN student_guardian sg ON sg.guardian = g.id AND sg.tenant = $1
    LEFT JOIN student s ON s.id = sg.student AND s.deleted_at IS NULL
    WHERE g.tenant = $1 AND g.id = ANY($2::uuid[])
    GROUP BY g.id
    ORDER BY g.id
"""


async def _fetch(sql: str, tenant_id: Any, *args: Any) -> list[asyncpg.Record]:
    from models.scope import TenantScope

    return await TenantScope(tenant_id).fetch(sql, *args)


async def resolve_recipients(tenant_id: Any, target: dict[str, Any]) -> list[Recipient]:
    """The people a target names, in a stable order. Targets: ``guardian_ids``,
    ``student_ids`` (their guardians), ``lecture_id`` (guardians of its active students),
    or ``recipients`` (explicit ``{phone, name}``)."""
    if target.get("recipients") is not None:
        # One message per phone, however often the list names it.
        by_phone: dict[str, Recipient] = {}
        for r in target["recipients"]:
            key = phone_digits(r["phone"])
            by_phone.setdefault(key, Recipient(phone=r["phone"], guardian_name=r.get("name") or ""))
        return list(by_phone.values())
    if target.get("lecture_id"):
        rows = await _fetch(GUARDIANS_OF_LECTURE, tenant_id, uuid.UUID(str(target["lecture_id"])))
    elif target.get("student_ids") is not None:
        rows = await _fetch(
            GUARDIANS_OF_STUDENTS, tenant_id, [uuid.UUID(str(s)) for s in target["student_ids"]]
        )
    elif target.get("guardian_ids") is not None:
        rows = await _fetch(
            GUARDIANS, tenant_id, [uuid.UUID(str(g)) for g in target["guardian_ids"]]
        )
    else:
        raise ValueError("a target needs guardian_ids, student_ids, lecture_id or recipients")
    return [
        Recipient(
            phone=r["phone"],
            student_id=r["student_id"],
            guardian_id=r["guardian_id"],
            student_name=r["student_name"] or "",
            guardian_name=r["guardian_name"] or "",
        )
        for r in rows
    ]


def compose_all(
    spec: Spec, recipients: Iterable[Recipient], academy: str, variables: dict[str, Any]
) -> list[Composed]:
    """One composed message per recipient with a valid phone (an invalid phone is an error
    on that recipient)."""
    out = []
    for r in recipients:
        try:
            phone = normalize_phone(r.phone)
        except InvalidPhone as exc:
            out.append(Composed(r, Channel.sms, "", "", {}, "invalid_phone", str(exc)))
            continue
        recipient = Recipient(phone, r.student_id, r.guardian_id, r.student_name, r.guardian_name)
        out.append(compose(spec, recipient, values_for(recipient, academy, variables)))
    return out


# --- message rows ------------------------------------------------------------------------


@dataclass
class NewMessage:
    key: str
    to_phone: str
    from_phone: str
    channel: str
    body: str
    subject: str = ""
    student: uuid.UUID | None = None
    guardian: uuid.UUID | None = None
    parent: uuid.UUID | None = None
    template_code: str = ""
    kakao_template_id: str = ""
    pf_id: str = ""
    variables: dict[str, str] | None = None
    strip_unencodable: bool = False
    advertising: bool = False
    status: str = "queued"
    error: str | None = None


INSERT_MESSAGES = """
    INSERT INTO message (id, tenant, job, event_id, idempotency_key, parent, student, guardian,
        to_phone, from_phone, channel, subject, body, template_code, kakao_template_id, pf_id,
        variables, strip_unencodable, advertising, status, error, created_at, updated_at)
    SELECT gen_random_uuid(), $1, $2, $3, u.key, u.parent, u.student, u.guardian,
        u.to_phone, u.from_phone, u.channel, u.subject, u.body, u.template_code, u.kakao_id,
        u.pf_id, u.variables::jsonb, u.strip, u.ad, u.status, u.error, now(), now()
    FROM unnest($4::text[], $5::uuid[], $6::uuid[], $7::uuid[], $8::text[], $9::text[],
                $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                $16::text[], $17::bool[], $18::bool[], $19::text[], $20::text[])
         AS u(key, parent, student, guardian, to_phone, from_phone, channel, subject, body,
              template_code, kakao_id, pf_id, variables, strip, ad, status, error)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, status
"""


async def insert_messages(
    tenant_id: Any,
    rows: Sequence[NewMessage],
    *,
    job_id: Any = None,
    event_id: Any = None,
) -> list[uuid.UUID]:
    """Insert rows whose key is new (one statement); returns the ids of new queued rows."""
    if not rows:
        return []
    cols: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        cols["key"].append(r.key)
        cols["parent"].append(r.parent)
        cols["student"].append(r.student)
        cols["guardian"].append(r.guardian)
        cols["to"].append(r.to_phone)
        cols["from"].append(r.from_phone)
        cols["channel"].append(r.channel)
        cols["subject"].append(r.subject)
        cols["body"].append(r.body)
        cols["code"].append(r.template_code)
        cols["kakao"].append(r.kakao_template_id)
        cols["pf"].append(r.pf_id)
        cols["vars"].append(json.dumps(r.variables or {}, ensure_ascii=False))
        cols["strip"].append(r.strip_unencodable)
        cols["ad"].append(r.advertising)
        cols["status"].append(r.status)
        cols["error"].append(r.error)
    async with connection() as conn:
        inserted = await conn.fetch(
            INSERT_MESSAGES,
            uuid.UUID(str(tenant_id)),
            uuid.UUID(str(job_id)) if job_id else None,
            uuid.UUID(str(event_id)) if event_id else None,
            *cols.values(),
        )
    return [r["id"] for r in inserted if r["status"] == "queued"]


def rows_for(
    composed: Sequence[Composed], spec: Spec, sender: str, key_prefix: str
) -> list[NewMessage]:
    """Rows for composed messages; a message that could not be composed is stored failed,
    with its reason, so the log shows every recipient."""
    out = []
    for c in composed:
        out.append(
            NewMessage(
                key=f"{key_prefix}:{c.recipient.key}:{family(c.channel)}",
                to_phone=c.recipient.phone,
                from_phone=sender,
                channel=c.channel.value,
                subject=c.subject,
                body=c.body,
                student=c.recipient.student_id,
                guardian=c.recipient.guardian_id,
                template_code=spec.code,
                kakao_template_id=spec.kakao_template_id,
                pf_id=spec.pf_id,
                variables=c.variables,
                strip_unencodable=spec.strip_unencodable,
                advertising=spec.advertising,
                status="failed" if c.error else "queued",
                error=c.error or None,
            )
        )
    return out


def _chunks(ids: Sequence[Any], size: int) -> list[list[str]]:
    return [[str(i) for i in ids[k : k + size]] for k in range(0, len(ids), size)]


async def enqueue_batches(ids: Sequence[Any], job_id: Any = None) -> int:
    """One ``send_batch`` per batch of ids, after the current transaction commits."""
    batches = _chunks(ids, get_settings().messaging_batch_size)
    extra = {"job_id": str(job_id)} if job_id else {}
    for batch in batches:
        await on_commit(functools.partial(_send_batch_message, batch, extra))
    return len(batches)


async def _send_batch_message(batch: list[str], extra: dict[str, str]) -> None:
    try:
        await send_batch.send_async(message_ids=batch, **extra)
    except Exception:
        # Committed but not sent: the pump finds the rows once they are stale.
        log.exception("send_batch could not be enqueued; the pump will resend it")


# --- 1. expand ---------------------------------------------------------------------------


@job("messaging.expand", tier=TIER, max_retries=5)
async def expand(
    job_id: str,
    spec: dict[str, Any],
    target: dict[str, Any],
    variables: dict[str, Any],
    sender: str,
) -> dict[str, Any] | None:
    """A send request's recipients -> message rows (keyed by job, recipient, channel)."""
    row = await start_job(job_id, stage="expanding")
    if row is None:
        return None
    tenant_id = row.tenant
    the_spec = Spec(**spec)
    config = await tenant_messaging(tenant_id)
    recipients = await resolve_recipients(tenant_id, target)
    composed = compose_all(the_spec, recipients, config.academy, variables)
    rows = rows_for(composed, the_spec, sender, f"job:{job_id}")
    async with transaction():
        await insert_messages(tenant_id, rows, job_id=job_id)
        # Every queued row of the job, not only the new ones: a redelivered expand sends
        # again the batches a crash may have lost (send_batch skips what is done).
        async with connection() as conn:
            queued = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM message WHERE job = $1 AND status = 'queued' ORDER BY id",
                    uuid.UUID(job_id),
                )
            ]
        batches = await enqueue_batches(queued, job_id)
    failed = sum(1 for c in composed if c.error)
    log_event(
        log,
        "MESSAGING_EXPANDED",
        job_id=job_id,
        recipients=len(rows),
        failed=failed,
        batches=batches,
    )
    if batches:
        await set_progress(job_id, 5, "sending")
    else:
        await finish_if_done(job_id)
    return {"recipients": len(rows), "batches": batches}


async def finish_if_done(job_id: Any) -> bool:
    """Fan-in: the job is done once none of its messages is queued or being sent."""
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE status IN ('queued', 'sending')) AS open,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status IN ('sent', 'delivered', 'fallback_sent'))
                       AS sent
            FROM message WHERE job = $1 AND parent IS NULL
            """,
            uuid.UUID(str(job_id)),
        )
    assert row is not None
    total, open_ = row["total"], row["open"]
    if open_:
        done = total - open_
        await set_progress(str(job_id), min(99, 5 + int(94 * done / max(total, 1))), "sending")
        return False
    await finish_job(
        str(job_id), {"recipients": total, "sent": row["sent"], "failed": row["failed"]}
    )
    return True


# --- 2. send -----------------------------------------------------------------------------

CLAIM = """
    WITH c AS (
        SELECT id, status AS was, claimed_at AS was_claimed FROM message
        WHERE id = ANY($1::uuid[]) AND tenant = $3
          AND (status = 'queued'
               OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $2)))
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    )
    UPDATE message m SET status = 'sending', claimed_at = now(), attempts = m.attempts + 1,
                         updated_at = now()
    FROM c WHERE m.id = c.id
    RETURNING m.*, c.was, c.was_claimed
"""


async def acquire_rate(key: str, n: int) -> float:
    """Take ``n`` tokens from the shared bucket; returns how long to wait before sending.

    Tokens may go negative (a debt the next callers wait out), so one statement both
    reserves and tells the wait: no lock is held while waiting.
    """
    s = get_settings()
    rate = max(s.messaging_rate_per_second, 0.001)
    capacity = max(rate, float(s.messaging_batch_size))
    async with connection() as conn:
        tokens = await conn.fetchval(
            """
            INSERT INTO message_rate_bucket AS b (key, tokens, updated_at)
            VALUES ($1, $2::float8 - $4::float8, clock_timestamp())
            ON CONFLICT (key) DO UPDATE SET
                tokens = LEAST($2::float8, b.tokens
                    + EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)::float8 * $3::float8)
                    - $4::float8,
                updated_at = clock_timestamp()
            RETURNING tokens
            """,
            key,
            capacity,
            rate,
            float(n),
        )
    return max(0.0, -float(tokens) / rate)


async def refund_rate(key: str, n: int) -> None:
    async with connection() as conn:
        await conn.execute(
            "UPDATE message_rate_bucket SET tokens = tokens + $2::float8 WHERE key = $1",
            key,
            float(n),
        )


def _outgoing(row: asyncpg.Record | dict[str, Any]) -> OutgoingMessage:
    variables = row["variables"]
    if isinstance(variables, str):
        variables = json.loads(variables)
    return OutgoingMessage(
        key=row["idempotency_key"],
        channel=Channel(row["channel"]),
        to=row["to_phone"],
        sender=row["from_phone"],
        text=row["body"],
        subject=row["subject"],
        pf_id=row["pf_id"],
        template_id=row["kakao_template_id"],
        variables=dict(variables or {}),
    )


class RetryLater(dramatiq.Retry):
    """A delayed retry of the whole step (rows already done are skipped next time). The
    delay is capped at SQS's 15-minute limit; a longer wait simply retries again."""

    def __init__(self, delay: int) -> None:
        super().__init__(delay=max(0, min(int(delay), 900_000)))


@job("messaging.send_batch", tier=TIER, max_retries=20, min_backoff_ms=1_000)
async def send_batch(message_ids: list[str], job_id: str | None = None) -> dict[str, int]:
    """Send one batch of message rows (all of one tenant) to the provider."""
    result = await send_messages(message_ids)
    if job_id:
        await finish_if_done(job_id)
    return result


async def send_messages(message_ids: Sequence[str]) -> dict[str, int]:
    """The body of ``send_batch`` (callable in-process). Returns counts by outcome."""
    ids = [uuid.UUID(str(i)) for i in message_ids]
    if not ids:
        return {}
    async with connection() as conn:
        tenants = await conn.fetch(
            "SELECT DISTINCT tenant FROM message WHERE id = ANY($1::uuid[])", ids
        )
    counts: dict[str, int] = defaultdict(int)
    for t in tenants:
        for k, v in (await _send_for_tenant(t["tenant"], ids)).items():
            counts[k] += v
    return {k: v for k, v in counts.items() if v}


async def _send_for_tenant(tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> dict[str, int]:
    config = await tenant_messaging(tenant_id)
    lease = lease_seconds()
    bucket = config.rate_key
    counts: dict[str, int] = defaultdict(int)

    wait = await acquire_rate(bucket, len(ids))
    if wait > MAX_INLINE_WAIT_SECONDS:
        await refund_rate(bucket, len(ids))
        raise RetryLater(delay=int(wait * 1000))
    if wait:
        await asyncio.sleep(wait)

    try:
        provider = config.build()
    except ProviderError as exc:
        # Not configured (or an unknown provider): nothing can go out until an admin fixes
        # the settings; the rows say why instead of waiting forever.
        async with connection() as conn:
            queued = await conn.fetch(
                "SELECT id FROM message WHERE id = ANY($1::uuid[]) AND tenant = $2 "
                "AND status = 'queued'",
                ids,
                tenant_id,
            )
        await mark_failed([(r["id"], "", str(exc)) for r in queued])
        return {"failed": len(queued)}
    async with connection() as conn:
        claimed = await conn.fetch(CLAIM, ids, lease, tenant_id)
    try:
        fresh = [r for r in claimed if r["was"] == "queued"]
        stale = [r for r in claimed if r["was"] == "sending"]
        if stale:
            found = await _reconcile(provider, stale)
            counts["reconciled"] += len(found)
            fresh += [r for r in stale if r["idempotency_key"] not in found]
        now = utcnow()
        blocked = [r for r in fresh if r["advertising"] and policy.is_night(now)]
        if blocked:
            await mark_failed(
                [
                    (r["id"], "", str(policy.AdvertisingBlocked(policy.next_allowed(now))))
                    for r in blocked
                ]
            )
            counts["failed"] += len(blocked)
            fresh = [r for r in fresh if not (r["advertising"] and policy.is_night(now))]
        for start in range(0, len(fresh), provider.max_batch):
            part = fresh[start : start + provider.max_batch]
            for k, v in (await _send_part(provider, config, part)).items():
                counts[k] += v
    finally:
        await provider.aclose()

    # Rows of this batch someone else claimed moments ago: if that sender dies, this
    # message comes back for them once the claim is stale.
    async with connection() as conn:
        held = await conn.fetchval(
            """
            SELECT EXTRACT(EPOCH FROM max(claimed_at) + make_interval(secs => $3) - now())
            FROM message WHERE id = ANY($1::uuid[]) AND tenant = $2 AND status = 'sending'
            """,
            ids,
            tenant_id,
            lease,
        )
    if held is not None:
        raise RetryLater(delay=int(max(float(held), 0.5) * 1000) + 250)
    return dict(counts)


async def _reconcile(provider: Provider, stale: list[asyncpg.Record]) -> dict[str, Report]:
    """Ask the provider about rows whose send may have happened; record what it has."""
    by_sender: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in stale:
        by_sender[r["from_phone"]].append(r)
    found: dict[str, Report] = {}
    for sender, rows in by_sender.items():
        since = min(r["was_claimed"] or r["created_at"] for r in rows) - dt.timedelta(minutes=5)
        found.update(await provider.find([r["idempotency_key"] for r in rows], sender, since))
    if found:
        key_to_id = {r["idempotency_key"]: r["id"] for r in stale}
        known = [(key_to_id[k], rep) for k, rep in found.items() if k in key_to_id]
        async with transaction():
            await mark_accepted(
                provider.name, [(i, rep) for i, rep in known if rep.state != DeliveryState.failed]
            )
            failed = await mark_failed(
                [(i, rep.code, rep.reason) for i, rep in known if rep.state == DeliveryState.failed]
            )
            await fallback_for(failed)
        pending = [str(i) for i, rep in known if rep.state == DeliveryState.pending]
        if pending:
            await schedule_poll(pending)
        log_event(log, "MESSAGING_RECONCILED", found=len(found), asked=len(stale))
    return found


async def _send_part(
    provider: Provider, config: TenantMessaging, rows: list[asyncpg.Record]
) -> dict[str, int]:
    if not rows:
        return {}
    by_key = {r["idempotency_key"]: r for r in rows}
    try:
        outcome = await provider.send([_outgoing(r) for r in rows])
    except ProviderUncertain as exc:
        # Left in "sending": the retry, after the lease, asks the provider before resending.
        log_event(log, "MESSAGING_SEND_UNCERTAIN", logging.WARNING, rows=len(rows), error=str(exc))
        raise RetryLater(delay=int(lease_seconds() * 1000) + 500) from None
    except ProviderRateLimited as exc:
        await release(r["id"] for r in rows)
        raise RetryLater(delay=int(exc.retry_after * 1000)) from None
    except ProviderError as exc:
        if exc.retryable:
            await release(r["id"] for r in rows)
            raise
        await mark_failed([(r["id"], "", str(exc)) for r in rows])
        return {"failed": len(rows)}
    accepted = [(by_key[k]["id"], rep) for k, rep in outcome.accepted.items() if k in by_key]
    rejected = [
        (by_key[k]["id"], rep.code, rep.reason)
        for k, rep in outcome.rejected.items()
        if k in by_key
    ]
    unanswered = [
        r for k, r in by_key.items() if k not in outcome.accepted and k not in outcome.rejected
    ]
    async with transaction():
        # One transaction: an Alimtalk row is never left failed without its fallback.
        await mark_accepted(provider.name, accepted)
        failed = await mark_failed(
            rejected
            + [(r["id"], "", "the provider did not answer for this message") for r in unanswered]
        )
        await fallback_for(failed)
    pending = [str(i) for i, rep in accepted if rep.state == DeliveryState.pending]
    if pending:
        await schedule_poll(pending)
    return {"sent": len(accepted), "failed": len(failed)}


async def release(ids: Iterable[Any]) -> None:
    """Back to ``queued``: the provider certainly did not take them."""
    async with connection() as conn:
        await conn.execute(
            """
            UPDATE message SET status = 'queued', claimed_at = NULL, updated_at = now()
            WHERE id = ANY($1::uuid[]) AND status = 'sending'
            """,
            list(ids),
        )


async def mark_accepted(provider: str, accepted: Sequence[tuple[Any, Report]]) -> None:
    """Record the provider's ids; a fallback that went out marks its Alimtalk row."""
    if not accepted:
        return
    async with connection() as conn:
        rows = await conn.fetch(
            """
            UPDATE message m SET
                status = CASE WHEN u.state = 'delivered' THEN 'delivered' ELSE 'sent' END,
                provider = $1, provider_message_id = u.pid, provider_code = u.code,
                sent_at = COALESCE(m.sent_at, now()),
                delivered_at = CASE WHEN u.state = 'delivered' THEN now() END,
                error = NULL, updated_at = now()
            FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS u(id, pid, code, state)
            WHERE m.id = u.id AND m.status IN ('queued', 'sending')
            RETURNING m.parent
            """,
            provider,
            [a[0] for a in accepted],
            [a[1].provider_message_id for a in accepted],
            [a[1].code for a in accepted],
            [a[1].state.value for a in accepted],
        )
        parents = [r["parent"] for r in rows if r["parent"] is not None]
        if parents:
            await conn.execute(
                """
                UPDATE message SET status = 'fallback_sent', updated_at = now()
                WHERE id = ANY($1::uuid[]) AND status = 'failed'
                """,
                parents,
            )


async def mark_failed(failures: Sequence[tuple[Any, str, str]]) -> list[asyncpg.Record]:
    """(id, code, reason) -> failed. Returns the rows that changed (for fallback)."""
    if not failures:
        return []
    async with connection() as conn:
        rows = await conn.fetch(
            """
            UPDATE message m SET status = 'failed', provider_code = u.code, error = u.reason,
                                 updated_at = now()
            FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, code, reason)
            WHERE m.id = u.id AND m.status IN ('queued', 'sending', 'sent')
            RETURNING m.*
            """,
            [f[0] for f in failures],
            [f[1] for f in failures],
            [f[2][:2000] for f in failures],
        )
        fallbacks_failed = [(r["parent"], r["error"]) for r in rows if r["parent"] is not None]
        if fallbacks_failed:
            await conn.execute(
                """
                UPDATE message m SET error = m.error || '; the SMS/LMS fallback failed too: '
                                             || u.reason, updated_at = now()
                FROM unnest($1::uuid[], $2::text[]) AS u(id, reason) WHERE m.id = u.id
                """,
                [f[0] for f in fallbacks_failed],
                [f[1] or "" for f in fallbacks_failed],
            )
    return list(rows)


# --- 4. fallback -------------------------------------------------------------------------


async def fallback_for(failed: Sequence[asyncpg.Record | dict[str, Any]]) -> list[uuid.UUID]:
    """An SMS/LMS row for each failed Alimtalk row, sent by ``send_batch``."""
    rows: dict[Any, list[NewMessage]] = defaultdict(list)
    for r in failed:
        if r["channel"] != Channel.alimtalk.value or r["parent"] is not None:
            continue
        base = r["idempotency_key"].rsplit(":", 1)[0]
        try:
            text = prepare_sms(r["body"], r["subject"], strip=r["strip_unencodable"])
            status, error, channel = "queued", None, text.channel.value
            body, subject = text.body, text.subject
        except MessageTextError as exc:
            status, error, channel = "failed", f"SMS/LMS fallback impossible: {exc}", "sms"
            body, subject = r["body"], r["subject"]
        rows[r["tenant"]].append(
            NewMessage(
                key=f"{base}:text",
                to_phone=r["to_phone"],
                from_phone=r["from_phone"],
                channel=channel,
                body=body,
                subject=subject,
                student=r["student"],
                guardian=r["guardian"],
                parent=r["id"],
                template_code=r["template_code"],
                strip_unencodable=r["strip_unencodable"],
                advertising=r["advertising"],
                status=status,
                error=error,
            )
        )
    new_ids: list[uuid.UUID] = []
    parent_job = {r["id"]: r["job"] for r in failed}
    async with transaction():
        for tenant_id, tenant_rows in rows.items():
            job_id = parent_job.get(tenant_rows[0].parent)
            ids = await insert_messages(tenant_id, tenant_rows, job_id=job_id)
            new_ids += ids
            await enqueue_batches(ids)
    if new_ids:
        log_event(log, "MESSAGING_FALLBACK", messages=len(new_ids))
    return new_ids


# --- 3. delivery status ------------------------------------------------------------------


async def schedule_poll(message_ids: Sequence[str]) -> None:
    delay_ms = get_settings().messaging_poll_delay_seconds * 1000
    for batch in _chunks(list(message_ids), 500):
        await asyncio.to_thread(
            poll_status.actor.send_with_options,
            kwargs={"message_ids": batch},
            delay=min(delay_ms, 900_000),
        )


@job("messaging.poll_status", tier=TIER, max_retries=5)
async def poll_status(message_ids: list[str]) -> dict[str, int]:
    """Ask the provider how sent messages fared; poll again later while any is pending."""
    ids = [uuid.UUID(i) for i in message_ids]
    async with connection() as conn:
        rows = await conn.fetch(
            """
            UPDATE message SET polls = polls + 1
            WHERE id = ANY($1::uuid[]) AND status = 'sent' AND provider_message_id IS NOT NULL
            RETURNING id, tenant, provider_message_id, polls
            """,
            ids,
        )
    counts: dict[str, int] = defaultdict(int)
    by_tenant: dict[Any, list[asyncpg.Record]] = defaultdict(list)
    for r in rows:
        by_tenant[r["tenant"]].append(r)
    again: list[str] = []
    for tenant_id, tenant_rows in by_tenant.items():
        provider = (await tenant_messaging(tenant_id)).build()
        try:
            reports = await provider.status([r["provider_message_id"] for r in tenant_rows])
        finally:
            await provider.aclose()
        for k, v in (await apply_reports(tenant_id, reports)).items():
            counts[k] += v
        reported = {
            rep.provider_message_id for rep in reports if rep.state != DeliveryState.pending
        }
        again += [
            str(r["id"])
            for r in tenant_rows
            if r["provider_message_id"] not in reported and r["polls"] < MAX_POLLS
        ]
    if again:
        await schedule_poll(again)
    return dict(counts)


async def apply_reports(tenant_id: Any, reports: Sequence[Report]) -> dict[str, int]:
    """Delivery results (from a poll or the webhook) -> statuses; failed Alimtalk falls back.
    Only this tenant's rows are touched; a report for an unknown id is ignored."""
    done = [r for r in reports if r.state != DeliveryState.pending]
    if not done:
        return {}
    async with connection() as conn:
        delivered = await conn.fetch(
            """
            UPDATE message SET status = 'delivered', delivered_at = now(), provider_code = u.code,
                               updated_at = now()
            FROM unnest($2::text[], $3::text[]) AS u(pid, code)
            WHERE message.tenant = $1 AND message.provider_message_id = u.pid
              AND message.status IN ('sent', 'sending')
            RETURNING message.id
            """,
            uuid.UUID(str(tenant_id)),
            [r.provider_message_id for r in done if r.state == DeliveryState.delivered],
            [r.code for r in done if r.state == DeliveryState.delivered],
        )
        failed_reports = [r for r in done if r.state == DeliveryState.failed]
        rows = await conn.fetch(
            """
            SELECT id, provider_message_id FROM message
            WHERE tenant = $1 AND provider_message_id = ANY($2::text[])
            """,
            uuid.UUID(str(tenant_id)),
            [r.provider_message_id for r in failed_reports],
        )
    ids = {r["provider_message_id"]: r["id"] for r in rows}
    async with transaction():
        failed = await mark_failed(
            [
                (ids[r.provider_message_id], r.code, r.reason or f"provider status {r.code}")
                for r in failed_reports
                if r.provider_message_id in ids
            ]
        )
        await fallback_for(failed)
    return {"delivered": len(delivered), "failed": len(failed)}


# --- automatic notices from the outbox ---------------------------------------------------


@job("messaging.dispatch_events", tier=TIER, max_retries=5)
async def dispatch_events(limit: int = 200) -> dict[str, int]:
    """Turn unprocessed outbox events into notices: one per event and guardian, whatever
    the retries (the idempotency key is the event's)."""
    async with connection() as conn:
        events = await conn.fetch(
            """
            SELECT id FROM outbox_event
            WHERE processed_at IS NULL AND kind = ANY($1::text[])
            ORDER BY created_at LIMIT $2
            """,
            list(EVENT_KINDS),
            limit,
        )
    counts: dict[str, int] = defaultdict(int)
    for e in events:
        outcome = await _dispatch_one(e["id"])
        counts[outcome] += 1
    if len(events) == limit:
        # More may wait: keep going without waiting for the next pump.
        await dispatch_events.send_async(limit=limit)
    return dict(counts)


async def _dispatch_one(event_id: uuid.UUID) -> str:
    try:
        async with transaction():
            async with connection() as conn:
                event = await conn.fetchrow(
                    """
                    SELECT * FROM outbox_event
                    WHERE id = $1 AND processed_at IS NULL FOR UPDATE SKIP LOCKED
                    """,
                    event_id,
                )
            if event is None:
                return "taken"
            outcome, note = await _notice_for(event)
            async with connection() as conn:
                await conn.execute(
                    """
                    UPDATE outbox_event SET processed_at = now(), attempts = attempts + 1,
                                            last_error = $2
                    WHERE id = $1
                    """,
                    event_id,
                    note,
                )
            return outcome
    except Exception as exc:
        async with connection() as conn:
            await conn.execute(
                """
                UPDATE outbox_event SET attempts = attempts + 1, last_error = $2,
                       processed_at = CASE WHEN attempts + 1 >= 5 THEN now() END
                WHERE id = $1
                """,
                event_id,
                f"{type(exc).__name__}: {exc}"[:2000],
            )
        log.exception("outbox event failed", extra={"event_id": str(event_id)})
        return "error"


async def _notice_for(event: asyncpg.Record) -> tuple[str, str | None]:
    """Queue the notice(s) of one event (in the caller's transaction). Returns the outcome
    and the note kept on the event when nothing was sent."""
    kind = event["kind"]
    tenant_id = event["tenant"]
    payload = event["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    config = await tenant_messaging(tenant_id)
    if not config.switches.get(EVENT_SWITCH[kind], False):
        return "off", "skipped: this kind of automatic notice is switched off"
    context = await _event_context(tenant_id, kind, payload)
    if context is None:
        return "stale", "skipped: no longer true (the record changed since)"
    sender = await default_sender(tenant_id)
    if sender is None:
        return "no_sender", "skipped: no registered sender number"
    spec = await spec_for_code(tenant_id, kind, config)
    recipients = await resolve_recipients(tenant_id, {"student_ids": [payload["student_id"]]})
    if not recipients:
        return "no_guardian", "skipped: the student has no guardian"
    composed = compose_all(spec, recipients, config.academy, context)
    rows = rows_for(composed, spec, sender, f"event:{event['id']}")
    ids = await insert_messages(tenant_id, rows, event_id=event["id"])
    await enqueue_batches(ids)
    errors = [c.error for c in composed if c.error]
    return "queued", ("; ".join(errors)[:2000] if errors else None)


async def _event_context(
    tenant_id: Any, kind: str, payload: dict[str, Any]
) -> dict[str, str] | None:
    """The template values of an event, read afresh; None when the fact no longer holds
    (absent changed to present; a score overwritten)."""
    if kind.startswith("attendance."):
        rows = await _fetch(
            """
            SELECT a.status, l.title, s.date FROM attendance a
            JOIN lecture_session s ON s.id = a.session
            JOIN lecture l ON l.id = s.lecture
            WHERE a.tenant = $1 AND a.session = $2::uuid AND a.student = $3::uuid
            """,
            tenant_id,
            payload["session_id"],
            payload["student_id"],
        )
        if not rows or rows[0]["status"] != payload["status"]:
            return None
        return {"날짜": _korean_date(rows[0]["date"]), "강의": rows[0]["title"]}
    if kind == "score.recorded":
        rows = await _fetch(
            """
            SELECT sc.score, e.title, e.max_score FROM score sc JOIN exam e ON e.id = sc.exam
            WHERE sc.tenant = $1 AND sc.exam = $2::uuid AND sc.student = $3::uuid
            """,
            tenant_id,
            payload["exam_id"],
            payload["student_id"],
        )
        if not rows or float(rows[0]["score"]) != float(payload["score"]):
            return None
        return {
            "시험": rows[0]["title"],
            "점수": _number(rows[0]["score"]),
            "만점": _number(rows[0]["max_score"]),
        }
    # video.unwatched (models.videos.emit_due_reminders): skipped once the student has
    # completed the video, or the video is gone.
    rows = await _fetch(
        """
        SELECT v.title, v.due_date, coalesce(w.completed, false) AS completed
        FROM video v LEFT JOIN video_watch w ON w.video = v.id AND w.student = $3::uuid
        WHERE v.tenant = $1 AND v.id = $2::uuid
        """,
        tenant_id,
        payload["video_id"],
        payload["student_id"],
    )
    if not rows or rows[0]["completed"] or rows[0]["due_date"] is None:
        return None
    return {"영상": rows[0]["title"], "기한": _korean_date(rows[0]["due_date"])}


def _korean_date(d: dt.date) -> str:
    return f"{d.month}월 {d.day}일"


def _number(value: Any) -> str:
    text = f"{value}"
    return text.rstrip("0").rstrip(".") if "." in text else text


async def default_sender(tenant_id: Any) -> str | None:
    rows = await _fetch(
        """
        SELECT phone FROM sender_number WHERE tenant = $1
        ORDER BY is_default DESC, created_at, id LIMIT 1
        """,
        tenant_id,
    )
    return rows[0]["phone"] if rows else None


async def spec_for_code(tenant_id: Any, code: str, config: TenantMessaging) -> Spec:
    rows = await _fetch(
        "SELECT * FROM message_template WHERE tenant = $1 AND code = $2", tenant_id, code
    )
    if rows:
        return spec_of_template(dict(rows[0]), config)
    return Spec(kind="sms", body=DEFAULT_NOTICES[code], code=code)


def spec_of_template(template: dict[str, Any], config: TenantMessaging) -> Spec:
    return Spec(
        kind=template["channel"],
        body=template["body"],
        subject=template["subject"],
        code=template["code"],
        kakao_template_id=template["kakao_template_id"],
        pf_id=config.pf_id,
        advertising=template["advertising"],
        strip_unencodable=template["strip_unencodable"],
        opt_out_number=config.opt_out_number,
    )


# --- the pump (run by the API's background loop) -----------------------------------------


_reminders_checked_at: float | None = None
REMINDER_CHECK_SECONDS = 300.0


async def pump() -> dict[str, int]:
    """Send ``dispatch_events`` when outbox events wait, and ``send_batch`` for rows left
    open too long (their message was lost: dead-lettered, or never sent after a commit).
    Every few minutes it also records the reminders of videos past their due date."""
    global _reminders_checked_at
    now = time.monotonic()
    if _reminders_checked_at is None or now - _reminders_checked_at >= REMINDER_CHECK_SECONDS:
        _reminders_checked_at = now
        await emit_due_reminders(today_kst())
    stale_after = max(600.0, lease_seconds() * 3)
    async with connection() as conn:
        waiting = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM outbox_event "
            "WHERE processed_at IS NULL AND kind = ANY($1::text[]))",
            list(EVENT_KINDS),
        )
        stale = await conn.fetch(
            """
            SELECT id, tenant, job FROM message
            WHERE status IN ('queued', 'sending')
              AND updated_at < now() - make_interval(secs => $1)
            ORDER BY tenant, id LIMIT 1000
            """,
            stale_after,
        )
    if waiting:
        await dispatch_events.send_async()
    groups: dict[tuple[Any, Any], list[Any]] = defaultdict(list)
    for r in stale:
        groups[(r["tenant"], r["job"])].append(r["id"])
    for (_, job_id), ids in groups.items():
        async with transaction():
            await enqueue_batches(ids, job_id)
    return {"events": int(bool(waiting)), "stale": len(stale)}
