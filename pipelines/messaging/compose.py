"""From a template and a recipient to the exact text that goes out, on which channel.

Pure: the caller loads the template, the recipients and the academy's settings. Every
check a message must pass (variables, EUC-KR, byte limits, advertising marks) happens here,
before anything is stored, so a message that cannot go out fails with a readable reason
instead of reaching the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipelines.korean import InvalidPhone, normalize_phone, phone_digits
from pipelines.messaging.policy import with_advertising_marks
from pipelines.messaging.templates import TemplateError, render
from pipelines.messaging.text import Channel, MessageTextError, prepare_sms

ALIMTALK_MAX_CHARS = 1000


@dataclass(frozen=True)
class Spec:
    """What to send: a template's content and options."""

    kind: str  # "sms" (SMS or LMS by length) | "alimtalk"
    body: str
    subject: str = ""
    code: str = ""
    kakao_template_id: str = ""
    pf_id: str = ""
    advertising: bool = False
    strip_unencodable: bool = False
    opt_out_number: str = ""


@dataclass(frozen=True)
class Recipient:
    phone: str
    student_id: uuid.UUID | None = None
    guardian_id: uuid.UUID | None = None
    student_name: str = ""
    guardian_name: str = ""

    @property
    def key(self) -> str:
        """Who this is, for the idempotency key: a guardian about one student, or a phone."""
        if self.guardian_id is not None:
            return f"{self.guardian_id}:{self.student_id or '-'}"
        return phone_digits(self.phone)


@dataclass
class Composed:
    recipient: Recipient
    channel: Channel
    subject: str
    body: str
    variables: dict[str, str] = field(default_factory=dict)
    error_code: str = ""
    error: str = ""


def family(channel: Channel | str) -> str:
    """The channel part of an idempotency key: SMS and LMS are one ("text")."""
    return "alimtalk" if Channel(channel) == Channel.alimtalk else "text"


def values_for(recipient: Recipient, academy: str, extra: dict[str, Any]) -> dict[str, str]:
    values = {str(k): str(v) for k, v in extra.items() if v is not None}
    values.setdefault("학원", academy)
    if recipient.student_name:
        values.setdefault("학생", recipient.student_name)
    if recipient.guardian_name:
        values.setdefault("보호자", recipient.guardian_name)
    return values


def compose(spec: Spec, recipient: Recipient, values: dict[str, str]) -> Composed:
    """The message for one recipient; problems are returned in ``error``, not raised, so
    one bad row does not stop a broadcast."""
    try:
        body = render(spec.body, values)
        subject = render(spec.subject, values) if spec.subject else ""
    except TemplateError as exc:
        return Composed(recipient, Channel.sms, "", "", values, exc.code, str(exc))
    if spec.advertising:
        body = with_advertising_marks(body, spec.opt_out_number)
    used = {k: v for k, v in values.items() if f"#{{{k}}}" in spec.body + spec.subject}
    if spec.kind == "alimtalk":
        if len(body) > ALIMTALK_MAX_CHARS:
            return Composed(
                recipient,
                Channel.alimtalk,
                subject,
                body,
                used,
                "too_long",
                f"Alimtalk allows {ALIMTALK_MAX_CHARS} characters; the text has {len(body)}",
            )
        return Composed(recipient, Channel.alimtalk, subject, body, used)
    try:
        prepared = prepare_sms(body, subject, strip=spec.strip_unencodable)
    except MessageTextError as exc:
        return Composed(recipient, Channel.sms, subject, body, used, exc.code, str(exc))
    return Composed(recipient, prepared.channel, prepared.subject, prepared.body, used)


def explicit_recipients(listed: Iterable[dict[str, Any]]) -> list[Recipient]:
    """An explicit ``[{phone, name}]`` list: one recipient per phone, however often the
    list names it (the first name given wins)."""
    by_phone: dict[str, Recipient] = {}
    for entry in listed:
        phone = entry["phone"]
        by_phone.setdefault(
            phone_digits(phone), Recipient(phone=phone, guardian_name=entry.get("name") or "")
        )
    return list(by_phone.values())


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
