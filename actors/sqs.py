"""Our SQS broker and consumer, over dramatiq-sqs.

What we change, and why (each is a trap we verified in dramatiq-sqs 0.4.4):

* Queue names are the seed's, verbatim; the DLQ is ``<queue>-dlq`` with a native
  ``RedrivePolicy`` set by provisioning (the library's own DLQ is only a client-side copy,
  so a message that kills its worker would loop forever).
* The visibility timeout is per tier (the library's default is 12 h, which strands the
  message of a ``kill -9``-ed worker for half a day), and a heartbeat thread extends it for
  every message this consumer holds -- prefetched or running -- so a live worker's job is
  never redelivered however long it runs.
* Delays are clamped to SQS's 900 s limit (above it the library raises inside
  ``after_process_message``, where Dramatiq swallows the error and acks: the message is lost).
* A message whose retry could not be re-enqueued is not deleted on ack; it becomes visible
  again after a short delay, so SQS redelivers it (and, past maxReceiveCount, dead-letters it).
* Empty long polls do not add Dramatiq's extra back-off sleep on top of the 20 s wait, so a
  new message is picked up as soon as it arrives. Consecutive empty polls are counted for the
  idle-shutdown middleware (``ops.idle``), which can also suspend receiving while it decides.
* Tier weights (``AI_WORKER_BASIC_POLL_WEIGHT`` / ``AI_WORKER_LITE_POLL_WEIGHT``) scale how
  many messages each queue's consumer may hold. Dramatiq's work queue is FIFO across queues,
  so with every queue backed up each queue's share of the threads is its share of the held
  messages: 3:1 by default. The library's cap of 10 held messages is lifted for that (a
  receive call still asks for at most 10).
* On close, messages received but not yet handed to the worker go back to the queue at once
  (visibility 0) instead of staying invisible for a whole visibility timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from base64 import b64decode
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq_sqs.broker import MAX_DELAY_SECONDS, SQSBroker, SQSConsumer, _SQSMessage

from ops.settings import Settings

log = logging.getLogger("actors.sqs")

# After a failed re-enqueue, how soon SQS shows the message again.
REDELIVER_AFTER_FAILED_RETRY_SECONDS = 30


class AcademySQSBroker(SQSBroker):
    def __init__(self, settings: Settings, middleware: list[dramatiq.Middleware], **options: Any):
        self.settings = settings
        super().__init__(
            namespace=None,
            middleware=middleware,
            dead_letter=True,
            visibility_timeout=None,
            **options,
        )

    def _ensure_queue(self, queue_name: str) -> None:
        if queue_name not in self.queue_names:
            raise dramatiq.QueueNotFound(queue_name)
        if queue_name in self.queues and queue_name in self.dead_letter_queues:
            return
        client = self.sqs.meta.client
        try:
            queue = self.sqs.get_queue_by_name(QueueName=queue_name)
            dlq = self.sqs.get_queue_by_name(QueueName=f"{queue_name}-dlq")
        except client.exceptions.QueueDoesNotExist:
            if self.settings.is_production:
                raise RuntimeError(
                    f"SQS queue {queue_name!r} (or its -dlq) does not exist: run `just provision`"
                ) from None
            # Outside production, provision on first use so a bare dev setup works.
            from ops.queues import ensure_queues

            ensure_queues(self.settings, client=client)
            queue = self.sqs.get_queue_by_name(QueueName=queue_name)
            dlq = self.sqs.get_queue_by_name(QueueName=f"{queue_name}-dlq")
        self.queues[queue_name] = queue
        self.dead_letter_queues[queue_name] = dlq

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        if delay is not None and delay > MAX_DELAY_SECONDS * 1000:
            log.info(
                "delay clamped to the SQS maximum",
                extra={"message_id": message.message_id, "requested_ms": delay},
            )
            delay = MAX_DELAY_SECONDS * 1000
        return super().enqueue(message, delay=delay)

    def poll_weight(self, tier: str | None) -> int:
        """How many times Dramatiq's prefetch this tier's consumer may hold (at least 1)."""
        weights = {
            "ai-basic": self.settings.ai_worker_basic_poll_weight,
            "ai-lite": self.settings.ai_worker_lite_poll_weight,
        }
        return max(1, weights.get(tier or "", 1))

    def consume(
        self, queue_name: str, prefetch: int = 1, timeout: int = 20_000
    ) -> dramatiq.Consumer:
        self._ensure_queue(queue_name)
        tier = self.settings.tier_of_queue(queue_name)
        visibility = self.settings.visibility_timeouts.get(tier or "", 120)
        return AcademySQSConsumer(
            self.queues[queue_name],
            prefetch * self.poll_weight(tier),
            # Long polling is the cost rule: one receive call per 20 s per idle queue.
            self.settings.sqs_wait_time_seconds * 1000,
            dead_letter_queue=self.dead_letter_queues[queue_name],
            visibility_timeout=visibility,
        )


class AcademySQSConsumer(SQSConsumer):
    def __init__(self, queue: Any, prefetch: int, timeout: int, **kwargs: Any) -> None:
        super().__init__(queue, prefetch, timeout, **kwargs)
        # The library caps prefetch at 10; tier weights need more (see the module doc).
        self.prefetch = max(1, prefetch)
        self.queue_name: str = queue.url.rsplit("/", 1)[-1]
        self.held: dict[str, _SQSMessage] = {}  # receipt handle -> message
        self.lock = threading.Lock()
        self.empty_polls = 0  # consecutive receive calls that returned nothing
        self.last_receive_at = time.monotonic()
        self.receive_calls = 0
        # Set: no new receive call starts. Held during a receive call, so that whoever
        # suspends can wait for a long poll already under way to return.
        self.suspended = threading.Event()
        self._receiving = threading.Lock()
        self._closed = threading.Event()
        assert self.visibility_timeout is not None
        self.heartbeat_interval = max(1.0, self.visibility_timeout / 3)
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name=f"sqs-heartbeat-{self.queue_name}", daemon=True
        )
        self._heartbeat.start()

    # --- bookkeeping -----------------------------------------------------------------
    def _hold(self, message: _SQSMessage) -> None:
        with self.lock:
            self.held[message._sqs_message.receipt_handle] = message

    def _release(self, message: _SQSMessage) -> None:
        with self.lock:
            self.held.pop(message._sqs_message.receipt_handle, None)

    @property
    def in_flight(self) -> int:
        """Messages this consumer holds: prefetched, queued for a thread, or running."""
        with self.lock:
            return len(self.held)

    def suspend(self, timeout: float) -> bool:
        """Stop starting receive calls and wait (up to ``timeout`` s) for one under way to
        return. True when no receive call is running any more."""
        self.suspended.set()
        if self._receiving.acquire(timeout=timeout):
            self._receiving.release()
            return True
        return False

    def resume(self) -> None:
        self.suspended.clear()

    def _heartbeat_loop(self) -> None:
        while not self._closed.wait(self.heartbeat_interval):
            with self.lock:
                messages = list(self.held.values())
            for start in range(0, len(messages), 10):
                batch = messages[start : start + 10]
                try:
                    response = self.queue.change_message_visibility_batch(
                        Entries=[
                            {
                                "Id": str(i),
                                "ReceiptHandle": m._sqs_message.receipt_handle,
                                "VisibilityTimeout": self.visibility_timeout,
                            }
                            for i, m in enumerate(batch)
                        ]
                    )
                    for failure in response.get("Failed", []):
                        log.warning(
                            "SQS_HEARTBEAT_FAILED",
                            extra={
                                "event": "SQS_HEARTBEAT_FAILED",
                                "queue": self.queue_name,
                                "reason": failure.get("Message"),
                            },
                        )
                except Exception:
                    log.exception("SQS heartbeat failed", extra={"queue": self.queue_name})

    # --- dramatiq consumer API ---------------------------------------------------------
    def ack(self, message: _SQSMessage) -> None:
        self._release(message)
        if getattr(message, "_academy_redeliver", False):
            # The retry could not be enqueued: let SQS deliver this copy again instead.
            message._sqs_message.change_visibility(
                VisibilityTimeout=REDELIVER_AFTER_FAILED_RETRY_SECONDS
            )
        else:
            message._sqs_message.delete()
        self.message_refc -= 1

    def nack(self, message: _SQSMessage) -> None:
        self._release(message)
        self.dead_letter_queue.send_message(
            MessageBody=message._sqs_message.body,
            MessageAttributes={
                "source_queue": {"DataType": "String", "StringValue": self.queue_name},
                "reason": {
                    "DataType": "String",
                    "StringValue": getattr(message, "_academy_dead_reason", "retries exhausted"),
                },
            },
        )
        message._sqs_message.delete()
        self.message_refc -= 1

    def requeue(self, messages: Iterable[_SQSMessage]) -> None:
        messages = list(messages)
        for m in messages:
            self._release(m)
        super().requeue(messages)

    def close(self) -> None:
        self.suspended.set()
        leftover = list(self.messages)
        self.messages.clear()
        if leftover:
            # Received in a batch but never handed to a worker thread: make them visible
            # now rather than after the visibility timeout.
            try:
                self.requeue(leftover)
            except Exception:
                log.exception("requeue on close failed", extra={"queue": self.queue_name})
        super().close()
        self._closed.set()

    def __next__(self) -> dramatiq.Message | None:
        try:
            return self.messages.popleft()
        except IndexError:
            pass
        if self.message_refc >= self.prefetch:
            # Every slot is taken by messages still being processed: don't poll.
            time.sleep(0.05)
            return None
        if self.suspended.is_set():
            time.sleep(0.05)
            return None
        kw: dict[str, Any] = {
            "MaxNumberOfMessages": min(10, self.prefetch - self.message_refc),
            "WaitTimeSeconds": self.wait_time_seconds,
            "VisibilityTimeout": self.visibility_timeout,
            "AttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        }
        with self._receiving:
            if self.suspended.is_set():
                return None
            self.receive_calls += 1
            received = self.queue.receive_messages(**kw)
            self.last_receive_at = time.monotonic()
            self._accept(received)
        if not self.messages:
            self.empty_polls += 1
            if self.wait_time_seconds == 0:
                time.sleep(0.2)  # short polling configured: don't spin
            return None
        self.empty_polls = 0
        return self.messages.popleft()

    def _accept(self, received: list[Any]) -> None:
        # Inside the receive lock, so a message is held before the lock is released and an
        # idle check that waited for the lock sees it.
        for sqs_message in received:
            try:
                decoded = dramatiq.Message.decode(b64decode(sqs_message.body))
            except Exception:
                # Left in flight: SQS redelivers it until maxReceiveCount moves it to the DLQ.
                log.exception("undecodable SQS message", extra={"queue": self.queue_name})
                continue
            proxy = _SQSMessage(sqs_message, decoded)
            # How many times SQS handed this message out: above one, a worker held it and
            # died (``actors.middleware.FailKilledJobs``).
            attributes = sqs_message.attributes or {}
            proxy.receive_count = int(attributes.get("ApproximateReceiveCount", 1))
            self.messages.append(proxy)
            self.message_refc += 1
            self._hold(proxy)
