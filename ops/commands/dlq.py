"""Dead-letter queue tools: ``just dlq-list TIER``, ``just dlq-redrive TIER [--id ...]``,
``just dlq-purge TIER``.

A message reaches a tier's ``-dlq`` three ways:

* **retries exhausted**: our consumer's nack copies it there (message attribute
  ``source_queue``) after ``FailJobWhenExhausted`` marked its job FAILED with the error;
* **worker_killed**: our consumer copies it there too, when it came back
  ``JOB_MAX_RECEIVES`` times from workers that died holding it (``FailKilledJobs`` marked
  its job FAILED ``worker_killed``);
* **native redrive**: SQS moved it after ``SQS_MAX_RECEIVE_COUNT`` receives because every
  worker that took it died or timed out. Nobody marked its job, which is still RUNNING (or
  PENDING). Listing reconciles those jobs: FAILED, with a reason that says what happened.

Each line links the job row (status and error), so an operator sees why a job failed.
Redrive puts the job back to PENDING *before* re-sending (a worker skips finished jobs),
gives the message a fresh retry budget, and deletes the dead letter only once the copy is
sent. Reading a DLQ means receiving from it: messages are held for a few seconds while they
are read, then made visible again.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq

from models.db import configure_db
from models.jobs import fail_job, job_states, reopen, restore
from ops.commands.worker import GROUPS
from ops.queues import sqs_client
from ops.settings import Settings, get_settings

READ_VISIBILITY_SECONDS = 30
NATIVE_REASON = (
    "dead-lettered by SQS after {n} receives: the worker died or timed out while running it"
)


@dataclass
class DeadLetter:
    sqs_message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    source: str  # "retries exhausted" | "worker_killed" | "native redrive"
    message_id: str = ""
    actor: str = ""
    job_id: str = ""
    args: str = ""
    job_status: str = ""
    job_error: str = ""
    decodable: bool = True
    reconciled_from: str = ""  # the job's status before listing marked it FAILED

    @property
    def error(self) -> str:
        if self.job_error:
            return self.job_error
        if not self.decodable:
            return "undecodable message body"
        return self.source

    def matches(self, wanted: set[str]) -> bool:
        return bool({self.sqs_message_id, self.message_id, self.job_id} & wanted)


def tiers_for(name: str) -> list[str]:
    settings = get_settings()
    tiers = list(GROUPS.get(name, (name,)))
    for tier in tiers:
        settings.queue_for(tier)  # a clear error for an unknown tier
    return tiers


def _url(client: Any, name: str) -> str:
    return str(client.get_queue_url(QueueName=name)["QueueUrl"])


def _read_all(client: Any, url: str) -> list[dict[str, Any]]:
    """Receive every message (held briefly so one pass sees each once)."""
    seen: dict[str, dict[str, Any]] = {}
    while True:
        got = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=READ_VISIBILITY_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return list(seen.values())
        for m in got:
            seen[m["MessageId"]] = m


def _batches(letters: Iterable[DeadLetter], **extra: Any) -> Iterator[list[dict[str, Any]]]:
    """Batch-call entries for the letters, 10 at a time (the SQS limit)."""
    batch = list(letters)
    for start in range(0, len(batch), 10):
        yield [
            {"Id": str(i), "ReceiptHandle": d.receipt_handle, **extra}
            for i, d in enumerate(batch[start : start + 10])
        ]


def _release(client: Any, url: str, letters: Iterable[DeadLetter]) -> None:
    for entries in _batches(letters, VisibilityTimeout=0):
        client.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _delete(client: Any, url: str, letters: Iterable[DeadLetter]) -> None:
    for entries in _batches(letters):
        failed = client.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        if failed:
            # A batch call reports per-entry failures instead of raising; keep them loud.
            raise RuntimeError(f"could not delete {len(failed)} dead letters: {failed[0]}")


def _parse(raw: dict[str, Any]) -> DeadLetter:
    attributes = raw.get("MessageAttributes") or {}
    letter = DeadLetter(
        sqs_message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw["Body"],
        receive_count=int((raw.get("Attributes") or {}).get("ApproximateReceiveCount", 0)),
        source=_source(attributes),
    )
    try:
        message = dramatiq.Message.decode(base64.b64decode(raw["Body"]))
    except Exception:
        letter.decodable = False
        return letter
    kwargs = dict(message.kwargs or {})
    letter.message_id = message.message_id
    letter.actor = message.actor_name
    letter.job_id = str(kwargs.pop("job_id", "") or "")
    kwargs.pop("request_id", None)
    summary = json.dumps(kwargs, ensure_ascii=False, default=str)
    letter.args = summary if len(summary) <= 80 else summary[:77] + "..."
    return letter


def _source(attributes: dict[str, Any]) -> str:
    if "source_queue" not in attributes:
        return "native redrive"
    return str(attributes.get("reason", {}).get("StringValue") or "retries exhausted")


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def _link_jobs(letters: list[DeadLetter]) -> None:
    ids = [u for u in (_uuid(d.job_id) for d in letters) if u is not None]
    if not ids:
        return
    by_id = {str(state.id): state for state in await job_states(ids)}
    for d in letters:
        state = by_id.get(d.job_id)
        if state is not None:
            d.job_status, d.job_error = state.status, state.error or ""


async def reconcile(letters: list[DeadLetter]) -> list[DeadLetter]:
    """Mark FAILED the jobs whose message is dead but which still look alive."""
    fixed = []
    for d in letters:
        if d.job_status in ("PENDING", "RUNNING"):
            reason = NATIVE_REASON.format(n=d.receive_count)
            await fail_job(d.job_id, reason)
            d.reconciled_from = d.job_status
            d.job_status, d.job_error = "FAILED", reason
            fixed.append(d)
    return fixed


async def read(tier: str, settings: Settings | None = None) -> tuple[list[DeadLetter], Any, str]:
    """The tier's dead letters, still held (release or delete them)."""
    s = settings or get_settings()
    client = sqs_client(s)
    url = _url(client, s.dlq_for(tier))
    letters = [_parse(m) for m in await asyncio.to_thread(_read_all, client, url)]
    await _link_jobs(letters)
    return letters, client, url


async def list_letters(tier: str) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(dead letters, jobs reconciled); leaves every message in the DLQ."""
    letters, client, url = await read(tier)
    try:
        fixed = await reconcile(letters)
    finally:
        await asyncio.to_thread(_release, client, url, letters)
    return letters, fixed


def _fresh_body(letter: DeadLetter) -> str:
    """The message with a fresh retry budget (its old count would fail it at once)."""
    message = dramatiq.Message.decode(base64.b64decode(letter.body))
    options = {k: v for k, v in message.options.items() if k not in ("retries", "traceback")}
    return base64.b64encode(message.copy(options=options).encode()).decode()


async def redrive(tier: str, ids: set[str] | None = None) -> tuple[int, list[str]]:
    """Send the dead letters (all, or those whose SQS id, message id or job id is in
    ``ids``) back to the tier's queue. Returns (moved, problems)."""
    s = get_settings()
    letters, client, url = await read(tier, s)
    chosen = [d for d in letters if ids is None or d.matches(ids)]
    keep = [d for d in letters if d not in chosen]
    problems: list[str] = []
    if ids:
        missing = ids - {v for d in chosen for v in (d.sqs_message_id, d.message_id, d.job_id)}
        problems += [f"{i}: not in {s.dlq_for(tier)}" for i in sorted(missing)]
    target = _url(client, s.queue_for(tier))
    moved = 0
    for d in chosen:
        if not d.decodable:
            problems.append(f"{d.sqs_message_id}: undecodable body, left in the DLQ")
            keep.append(d)
            continue
        job_id = _uuid(d.job_id)
        previous = None if job_id is None else await reopen(job_id, "redriven")
        try:
            await asyncio.to_thread(
                client.send_message, QueueUrl=target, MessageBody=_fresh_body(d)
            )
        except Exception as exc:
            if job_id is not None and previous is not None:
                await restore(job_id, previous)
            problems.append(f"{d.sqs_message_id}: not sent ({type(exc).__name__}: {exc})")
            keep.append(d)
            continue
        await asyncio.to_thread(client.delete_message, QueueUrl=url, ReceiptHandle=d.receipt_handle)
        moved += 1
    await asyncio.to_thread(_release, client, url, keep)
    return moved, problems


async def purge(tier: str) -> int:
    """Delete every dead letter of the tier; jobs still looking alive are marked FAILED."""
    letters, client, url = await read(tier)
    await reconcile(letters)
    await asyncio.to_thread(_delete, client, url, letters)
    return len(letters)


# --- command line ---------------------------------------------------------------------------


def render(letters: list[DeadLetter]) -> str:
    header = ("message_id", "actor", "job", "status", "receives", "args", "error")
    rows = [
        (
            d.message_id or d.sqs_message_id,
            d.actor or "?",
            d.job_id or "-",
            d.job_status or "-",
            str(d.receive_count),
            d.args,
            d.error.splitlines()[0][:100] if d.error else "",
        )
        for d in letters
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _confirm(queue: str, count: int, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print("refusing to purge without a terminal to confirm on; pass --yes", file=sys.stderr)
        return False
    answer = input(f"Delete {count} message(s) from {queue} for good? Type the queue name: ")
    return answer.strip() == queue


async def _main(args: argparse.Namespace) -> int:
    configure_db()
    status = 0
    for tier in tiers_for(args.tier):
        dlq = get_settings().dlq_for(tier)
        if args.command == "list":
            letters, fixed = await list_letters(tier)
            print(f"{dlq}: {len(letters)} message(s)")
            if letters:
                print(render(letters))
            for d in fixed:
                print(
                    f"job {d.job_id}: was still {d.reconciled_from}; marked FAILED ({d.job_error})"
                )
        elif args.command == "redrive":
            moved, problems = await redrive(tier, set(args.id) if args.id else None)
            print(f"{dlq}: {moved} message(s) sent back to {get_settings().queue_for(tier)}")
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            status = status or (1 if problems else 0)
        else:
            letters, client, url = await read(tier)
            await asyncio.to_thread(_release, client, url, letters)
            if not letters:
                print(f"{dlq}: empty")
                continue
            if not _confirm(dlq, len(letters), args.yes):
                print("not purged")
                status = 1
                continue
            print(f"{dlq}: {await purge(tier)} message(s) deleted")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dlq", description="Inspect and repair the DLQs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show dead letters with their job's status and error")
    p_list.add_argument("tier")
    p_redrive = sub.add_parser("redrive", help="send dead letters back to their queue")
    p_redrive.add_argument("tier")
    p_redrive.add_argument(
        "--id", action="append", help="SQS message id, message id or job id (repeatable)"
    )
    p_purge = sub.add_parser("purge", help="delete every dead letter (asks first)")
    p_purge.add_argument("tier")
    p_purge.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
