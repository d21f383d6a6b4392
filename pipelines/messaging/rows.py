"""Message rows before they are stored, and what a stored row becomes on its way out.

Every message is one row keyed by (request or event, recipient, channel family): the key
is built here (``rows_for``, ``fallback_row``), so a redelivered step that builds the same
rows again inserts nothing new.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.messaging.compose import Composed, Spec, family
from pipelines.messaging.providers import OutgoingMessage
from pipelines.messaging.text import Channel, MessageTextError, prepare_sms


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


class StoredMessage(Protocol):
    """The fields of a stored message row that sending and falling back read."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def parent(self) -> uuid.UUID | None: ...
    @property
    def student(self) -> uuid.UUID | None: ...
    @property
    def guardian(self) -> uuid.UUID | None: ...
    @property
    def to_phone(self) -> str: ...
    @property
    def from_phone(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def template_code(self) -> str: ...
    @property
    def kakao_template_id(self) -> str: ...
    @property
    def pf_id(self) -> str: ...
    @property
    def variables(self) -> dict[str, Any] | None: ...
    @property
    def strip_unencodable(self) -> bool: ...
    @property
    def advertising(self) -> bool: ...


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


def fallback_row(failed: StoredMessage) -> NewMessage | None:
    """The SMS/LMS row that replaces a failed Alimtalk row (None for any other row: a
    fallback has no fallback). Text SMS/LMS cannot carry makes it a failed row that says
    why."""
    if failed.channel != Channel.alimtalk.value or failed.parent is not None:
        return None
    base = failed.idempotency_key.rsplit(":", 1)[0]
    try:
        text = prepare_sms(failed.body, failed.subject, strip=failed.strip_unencodable)
        status, error, channel = "queued", None, text.channel.value
        body, subject = text.body, text.subject
    except MessageTextError as exc:
        status, error, channel = "failed", f"SMS/LMS fallback impossible: {exc}", "sms"
        body, subject = failed.body, failed.subject
    return NewMessage(
        key=f"{base}:text",
        to_phone=failed.to_phone,
        from_phone=failed.from_phone,
        channel=channel,
        body=body,
        subject=subject,
        student=failed.student,
        guardian=failed.guardian,
        parent=failed.id,
        template_code=failed.template_code,
        strip_unencodable=failed.strip_unencodable,
        advertising=failed.advertising,
        status=status,
        error=error,
    )


def outgoing(row: StoredMessage) -> OutgoingMessage:
    """A claimed row as the provider takes it."""
    return OutgoingMessage(
        key=row.idempotency_key,
        channel=Channel(row.channel),
        to=row.to_phone,
        sender=row.from_phone,
        text=row.body,
        subject=row.subject,
        pf_id=row.pf_id,
        template_id=row.kakao_template_id,
        variables=dict(row.variables or {}),
    )


def chunks(ids: Sequence[Any], size: int) -> list[list[str]]:
    """Ids as strings (what crosses the queue), ``size`` at a time."""
    return [[str(i) for i in ids[k : k + size]] for k in range(0, len(ids), size)]
