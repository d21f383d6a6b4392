"""Read and reset queues over the real SQS API."""

from __future__ import annotations

import base64
from typing import Any

import dramatiq

from ops.queues import sqs_client
from ops.settings import get_settings


def _url(name: str) -> str:
    return str(sqs_client(get_settings()).get_queue_url(QueueName=name)["QueueUrl"])


def counts(name: str) -> dict[str, int]:
    attrs = sqs_client(get_settings()).get_queue_attributes(
        QueueUrl=_url(name), AttributeNames=["All"]
    )["Attributes"]
    return {
        "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


def purge(*names: str) -> None:
    """Delete every visible message (PurgeQueue is limited to once a minute)."""
    client = sqs_client(get_settings())
    for name in names:
        url = _url(name)
        while True:
            got = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=30
            ).get("Messages", [])
            if not got:
                break
            client.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )


def receive(name: str, max_messages: int = 10, visibility: int = 0) -> list[dict[str, Any]]:
    out = sqs_client(get_settings()).receive_message(
        QueueUrl=_url(name),
        MaxNumberOfMessages=max_messages,
        VisibilityTimeout=visibility,
        WaitTimeSeconds=1,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
    )
    return list(out.get("Messages", []))


def release(name: str, receipt_handle: str) -> None:
    """Make a message received with ``receive`` visible again at once."""
    sqs_client(get_settings()).change_message_visibility(
        QueueUrl=_url(name), ReceiptHandle=receipt_handle, VisibilityTimeout=0
    )


def decode(body: str) -> dramatiq.Message[Any]:
    return dramatiq.Message.decode(base64.b64decode(body))
