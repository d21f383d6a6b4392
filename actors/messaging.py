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

The rows, the claim and the rate bucket are ``models.messaging``; recipients
``models.recipients``; settings, senders and templates ``models.messaging_config``; outbox
events ``models.notices``. Texts, keys and notice values are ``pipelines.messaging``.

Exactly once, although SQS delivers at least once and workers die:

* Every message is a row with a unique ``idempotency_key`` -- (request or event, recipient,
  channel) -- inserted before any provider call (``models.messaging.insert_messages``; the
  keys are built by ``pipelines.messaging.rows``). A redelivered expand inserts nothing new.
* A row is *claimed* (``queued -> sending``, committed: ``models.messaging.claim``) before
  the provider call, and the provider's message id is recorded when it answers
  (``mark_accepted``). A redelivered batch skips rows that are no longer ``queued``.
* A row left in ``sending`` -- the worker died between the provider call and our commit, or
  the call timed out after the provider accepted -- is not sent again blindly: once its
  claim is older than the lease, the provider is asked whether it has a message with that
  idempotency key; if so, the row takes that id; only if not is it sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import dramatiq

from actors.jobs import Chain, Claim, finish_job, job, run_step, set_progress, when_last
from models.db import on_commit, transaction
from models.jobs import JobRecord
from models.messaging import (
    Claimed,
    Failure,
    MessageRecord,
    Polled,
    acquire_rate,
    apply_reports,
    claim,
    held_seconds,
    insert_fallbacks,
    insert_messages,
    job_tally,
    mark_accepted,
    mark_failed,
    queued_among,
    queued_of_job,
    refund_rate,
    release,
    stale_messages,
    take_polls,
    tenants_of,
)
from models.messaging_config import default_sender, template_by_code, tenant_messaging
from models.notices import (
    OutboxEvent,
    attendance_fact,
    events_waiting,
    mark_attempt_failed,
    mark_processed,
    score_fact,
    take_event,
    unprocessed_events,
    video_fact,
)
from models.recipients import resolve_recipients
from models.scope import TenantScope
from models.videos import emit_due_reminders
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.korean import today_kst
from pipelines.messaging import notices, policy
from pipelines.messaging.compose import Spec, compose_all
from pipelines.messaging.config import TenantMessaging, lease_seconds, spec_of_template
from pipelines.messaging.providers import (
    DeliveryState,
    Provider,
    ProviderError,
    ProviderRateLimited,
    ProviderUncertain,
    Report,
)
from pipelines.messaging.rows import chunks, outgoing, rows_for

log = logging.getLogger("actors.messaging")

TIER = "messaging"
# How often a sent message's status is polled before it is left at "sent".
MAX_POLLS = 10
# A rate-limit wait longer than this is a delayed retry instead of a sleep in the worker.
MAX_INLINE_WAIT_SECONDS = 5.0


async def enqueue_batches(ids: Sequence[Any], job_id: Any = None) -> int:
    """One ``send_batch`` per batch of ids, after the current transaction commits."""
    batches = chunks(ids, get_settings().messaging_batch_size)
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


# Expand, then one send per batch of the job's queued rows (a fan-out), whose fan-in is
# ``finish_if_done``. Expanding again is always safe: rows are keyed, so nothing is
# inserted twice, and the fan-out re-sends every batch still queued.
EXPAND = Chain(("expand", "send"))


@job("messaging.expand", tier=TIER, max_retries=5)
async def expand(
    job_id: str,
    spec: dict[str, Any],
    target: dict[str, Any],
    variables: dict[str, Any],
    sender: str,
) -> None:
    """A send request's recipients -> message rows (keyed by job, recipient, channel)."""

    async def claim(job_row: JobRecord) -> Claim:
        return Claim(job_row, "")

    async def body(job_row: JobRecord) -> Callable[[], Awaitable[None]]:
        the_spec = Spec(**spec)
        config = await tenant_messaging(job_row.tenant)
        recipients = await resolve_recipients(TenantScope(job_row.tenant), target)
        composed = compose_all(the_spec, recipients, config.academy, variables)
        rows = rows_for(composed, the_spec, sender, f"job:{job_id}")
        failed = sum(1 for c in composed if c.error)
        log_event(log, "MESSAGING_EXPANDED", job_id=job_id, recipients=len(rows), failed=failed)

        async def record() -> None:
            await insert_messages(job_row.tenant, rows, job_id=job_id)

        return record

    await run_step(
        EXPAND,
        "expand",
        job_id=job_id,
        stage="expanding",
        claim=claim,
        body=body,
        next_kwargs={"job_id": job_id},
    )


async def _send_queued(job_id: str) -> None:
    """The fan-out after expanding: every queued row of the job in batches (not only the
    new ones: a redelivered expand sends again the batches a crash may have lost, and
    ``send_batch`` skips what is done); with none queued the job is done already."""
    batches = await enqueue_batches(await queued_of_job(job_id), job_id)
    if batches:
        await on_commit(functools.partial(set_progress, job_id, 5, "sending"))
    else:
        await on_commit(functools.partial(finish_if_done, job_id))


EXPAND.bind(send=_send_queued)


async def finish_if_done(job_id: Any) -> bool:
    """Fan-in: the job is done once none of its messages is queued or being sent (the
    count is ``models.messaging.job_tally``); until then it shows how far it got."""
    tally = await job_tally(job_id)
    result = {"recipients": tally.total, "sent": tally.sent, "failed": tally.failed}
    if await when_last(tally.done, tally.total, functools.partial(finish_job, str(job_id), result)):
        return True
    progress = min(99, 5 + int(94 * tally.done / max(tally.total, 1)))
    await set_progress(str(job_id), progress, "sending")
    return False


# --- 2. send -----------------------------------------------------------------------------


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
    counts: dict[str, int] = defaultdict(int)
    for tenant_id in await tenants_of(ids):
        for k, v in (await _send_for_tenant(tenant_id, ids)).items():
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
        queued = await queued_among(tenant_id, ids)
        await mark_failed([(i, "", str(exc)) for i in queued])
        return {"failed": len(queued)}
    claimed = await claim(tenant_id, ids, lease)
    try:
        fresh = [r for r in claimed if r.was == "queued"]
        stale = [r for r in claimed if r.was == "sending"]
        if stale:
            found = await _reconcile(provider, stale)
            counts["reconciled"] += len(found)
            fresh += [r for r in stale if r.idempotency_key not in found]
        fresh = await _refuse_at_night(fresh, counts)
        for start in range(0, len(fresh), provider.max_batch):
            part = fresh[start : start + provider.max_batch]
            for k, v in (await _send_part(provider, config, part)).items():
                counts[k] += v
    finally:
        await provider.aclose()

    # Rows of this batch someone else claimed moments ago: if that sender dies, this
    # message comes back for them once the claim is stale.
    held = await held_seconds(tenant_id, ids, lease)
    if held is not None:
        raise RetryLater(delay=int(max(float(held), 0.5) * 1000) + 250)
    return dict(counts)


async def _refuse_at_night(rows: list[Claimed], counts: dict[str, int]) -> list[Claimed]:
    """Advertising rows that reach the sender in the night block fail instead of going
    out; the rest are returned."""
    now = policy.utcnow()
    if not policy.is_night(now):
        return rows
    blocked = [r for r in rows if r.advertising]
    if blocked:
        reason = str(policy.AdvertisingBlocked(policy.next_allowed(now)))
        await mark_failed([(r.id, "", reason) for r in blocked])
        counts["failed"] += len(blocked)
    return [r for r in rows if not r.advertising]


async def _reconcile(provider: Provider, stale: list[Claimed]) -> dict[str, Report]:
    """Ask the provider about rows whose send may have happened; record what it has."""
    by_sender: dict[str, list[Claimed]] = defaultdict(list)
    for r in stale:
        by_sender[r.from_phone].append(r)
    found: dict[str, Report] = {}
    for sender, rows in by_sender.items():
        since = min(r.was_claimed or r.created_at for r in rows) - dt.timedelta(minutes=5)
        found.update(await provider.find([r.idempotency_key for r in rows], sender, since))
    if found:
        key_to_id = {r.idempotency_key: r.id for r in stale}
        known = [(key_to_id[k], rep) for k, rep in found.items() if k in key_to_id]
        async with transaction():
            await mark_accepted(
                provider.name, [(i, rep) for i, rep in known if rep.state != DeliveryState.failed]
            )
            await fail_and_fall_back(
                [(i, rep.code, rep.reason) for i, rep in known if rep.state == DeliveryState.failed]
            )
        pending = [str(i) for i, rep in known if rep.state == DeliveryState.pending]
        if pending:
            await schedule_poll(pending)
        log_event(log, "MESSAGING_RECONCILED", found=len(found), asked=len(stale))
    return found


async def _send_part(
    provider: Provider, config: TenantMessaging, rows: list[Claimed]
) -> dict[str, int]:
    if not rows:
        return {}
    by_key = {r.idempotency_key: r for r in rows}
    try:
        outcome = await provider.send([outgoing(r) for r in rows])
    except ProviderUncertain as exc:
        # Left in "sending": the retry, after the lease, asks the provider before resending.
        log_event(log, "MESSAGING_SEND_UNCERTAIN", logging.WARNING, rows=len(rows), error=str(exc))
        raise RetryLater(delay=int(lease_seconds() * 1000) + 500) from None
    except ProviderRateLimited as exc:
        await release(r.id for r in rows)
        raise RetryLater(delay=int(exc.retry_after * 1000)) from None
    except ProviderError as exc:
        if exc.retryable:
            await release(r.id for r in rows)
            raise
        await mark_failed([(r.id, "", str(exc)) for r in rows])
        return {"failed": len(rows)}
    accepted = [(by_key[k].id, rep) for k, rep in outcome.accepted.items() if k in by_key]
    rejected: list[Failure] = [
        (by_key[k].id, rep.code, rep.reason) for k, rep in outcome.rejected.items() if k in by_key
    ]
    unanswered = [
        r for k, r in by_key.items() if k not in outcome.accepted and k not in outcome.rejected
    ]
    async with transaction():
        # One transaction: an Alimtalk row is never left failed without its fallback.
        await mark_accepted(provider.name, accepted)
        failed = await fail_and_fall_back(
            rejected
            + [(r.id, "", "the provider did not answer for this message") for r in unanswered]
        )
    pending = [str(i) for i, rep in accepted if rep.state == DeliveryState.pending]
    if pending:
        await schedule_poll(pending)
    return {"sent": len(accepted), "failed": len(failed)}


# --- 4. fallback -------------------------------------------------------------------------


async def fail_and_fall_back(failures: Sequence[Failure]) -> list[MessageRecord]:
    """(id, code, reason) -> failed, and an SMS/LMS row for each failed Alimtalk row, sent
    by ``send_batch`` after the caller's transaction commits."""
    failed = await mark_failed(failures)
    await send_fallbacks(await insert_fallbacks(failed))
    return failed


async def send_fallbacks(fallbacks: dict[uuid.UUID, list[uuid.UUID]]) -> None:
    """The new fallback rows (by tenant) go to ``send_batch`` after the commit."""
    for ids in fallbacks.values():
        await enqueue_batches(ids)
    created = sum(len(ids) for ids in fallbacks.values())
    if created:
        log_event(log, "MESSAGING_FALLBACK", messages=created)


# --- 3. delivery status ------------------------------------------------------------------


async def schedule_poll(message_ids: Sequence[str]) -> None:
    delay_ms = get_settings().messaging_poll_delay_seconds * 1000
    for batch in chunks(list(message_ids), 500):
        await asyncio.to_thread(
            poll_status.actor.send_with_options,
            kwargs={"message_ids": batch},
            delay=min(delay_ms, 900_000),
        )


@job("messaging.poll_status", tier=TIER, max_retries=5)
async def poll_status(message_ids: list[str]) -> dict[str, int]:
    """Ask the provider how sent messages fared; poll again later while any is pending."""
    polled = await take_polls([uuid.UUID(i) for i in message_ids])
    counts: dict[str, int] = defaultdict(int)
    by_tenant: dict[uuid.UUID, list[Polled]] = defaultdict(list)
    for r in polled:
        by_tenant[r.tenant].append(r)
    again: list[str] = []
    for tenant_id, tenant_rows in by_tenant.items():
        provider = (await tenant_messaging(tenant_id)).build()
        try:
            reports = await provider.status([r.provider_message_id for r in tenant_rows])
        finally:
            await provider.aclose()
        applied = await apply_reports(tenant_id, reports)
        await send_fallbacks(applied.fallbacks)
        for k, v in applied.counts().items():
            counts[k] += v
        reported = {
            rep.provider_message_id for rep in reports if rep.state != DeliveryState.pending
        }
        again += [
            str(r.id)
            for r in tenant_rows
            if r.provider_message_id not in reported and r.polls < MAX_POLLS
        ]
    if again:
        await schedule_poll(again)
    return dict(counts)


# --- automatic notices from the outbox ---------------------------------------------------


@job("messaging.dispatch_events", tier=TIER, max_retries=5)
async def dispatch_events(limit: int = 200) -> dict[str, int]:
    """Turn unprocessed outbox events into notices: one per event and guardian, whatever
    the retries (the idempotency key is the event's).

    Each event is its own transaction, but an academy's notices of the round go out
    together, in ``send_batch`` messages of up to ``messaging_batch_size`` rows (a batch is
    one academy's: its rate limit and provider), sent once the events are committed. One
    message (and its status polls) per notice flooded the messaging queue on a busy day,
    and a broadcast waited minutes behind them. Rows committed but not sent (the worker
    died before the end of the round) are sent by the pump once stale."""
    events = await unprocessed_events(notices.EVENT_KINDS, limit)
    counts: dict[str, int] = defaultdict(int)
    queued: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    try:
        for event_id in events:
            outcome, tenant_id, rows = await _dispatch_one(event_id)
            counts[outcome] += 1
            if tenant_id is not None:
                queued[tenant_id] += rows
    finally:
        for rows in queued.values():
            await enqueue_batches(rows)
    if len(events) == limit:
        # More may wait: keep going without waiting for the next pump.
        await dispatch_events.send_async(limit=limit)
    return dict(counts)


async def _dispatch_one(event_id: uuid.UUID) -> tuple[str, uuid.UUID | None, list[uuid.UUID]]:
    """The event's outcome, its academy and the notice rows it committed."""
    try:
        async with transaction():
            event = await take_event(event_id)
            if event is None:
                return "taken", None, []
            outcome, note, rows = await _notice_for(event)
            await mark_processed(event_id, note)
            return outcome, event.tenant, rows
    except Exception as exc:
        await mark_attempt_failed(event_id, f"{type(exc).__name__}: {exc}")
        log.exception("outbox event failed", extra={"event_id": str(event_id)})
        return "error", None, []


async def _notice_for(event: OutboxEvent) -> tuple[str, str | None, list[uuid.UUID]]:
    """Insert the notice row(s) of one event (in the caller's transaction). Returns the
    outcome, the note kept on the event when nothing was sent, and the rows inserted."""
    tenant_id, kind, payload = event.tenant, event.kind, event.payload
    config = await tenant_messaging(tenant_id)
    if not config.switches.get(notices.EVENT_SWITCH[kind], False):
        return "off", "skipped: this kind of automatic notice is switched off", []
    values = await _event_values(tenant_id, kind, payload)
    if values is None:
        return "stale", "skipped: no longer true (the record changed since)", []
    sender = await default_sender(tenant_id)
    if sender is None:
        return "no_sender", "skipped: no registered sender number", []
    template = await template_by_code(tenant_id, kind)
    spec = notices.default_spec(kind) if template is None else spec_of_template(template, config)
    scope = TenantScope(tenant_id)
    recipients = await resolve_recipients(scope, {"student_ids": [payload["student_id"]]})
    if not recipients:
        return "no_guardian", "skipped: the student has no guardian", []
    composed = compose_all(spec, recipients, config.academy, values)
    rows = await insert_messages(
        tenant_id, rows_for(composed, spec, sender, f"event:{event.id}"), event_id=event.id
    )
    errors = [c.error for c in composed if c.error]
    return "queued", ("; ".join(errors)[:2000] if errors else None), rows


async def _event_values(
    tenant_id: uuid.UUID, kind: str, payload: dict[str, Any]
) -> dict[str, str] | None:
    """The template values of an event, from its facts read afresh; None when the fact no
    longer holds (absent changed to present; a score overwritten; a video watched)."""
    if kind.startswith("attendance."):
        return notices.attendance_values(payload, await attendance_fact(tenant_id, payload))
    if kind == "score.recorded":
        return notices.score_values(payload, await score_fact(tenant_id, payload))
    # video.unwatched (models.videos.emit_due_reminders)
    return notices.video_values(await video_fact(tenant_id, payload))


# --- the pump (a round of the scheduler, ops.commands.scheduler, every few seconds) ------


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
    waiting = await events_waiting(notices.EVENT_KINDS)
    stale = await stale_messages(max(600.0, lease_seconds() * 3))
    if waiting:
        await dispatch_events.send_async()
    groups: dict[tuple[uuid.UUID, uuid.UUID | None], list[uuid.UUID]] = defaultdict(list)
    for r in stale:
        groups[(r.tenant, r.job)].append(r.id)
    for (_, job_id), ids in groups.items():
        async with transaction():
            await enqueue_batches(ids, job_id)
    return {"events": int(waiting), "stale": len(stale)}
