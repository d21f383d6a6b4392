"""Checking a send request before anything is queued: the target (every id this
academy's, explicit phones canonical), the template or text, the sender number, the
advertising rules, and a preview of what every recipient would get (count, channels,
estimated cost, a sample, each recipient's problem)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec

from api.errors import Problem, field_error
from models.errors import fail_fields
from models.lectures import lecture_exists
from models.limits import Name, Phone, Text
from models.messaging_config import default_sender, get_template, sender_phone, tenant_messaging
from models.recipients import resolve_recipients, unknown_ids
from models.scope import NotFoundInTenant, TenantScope
from pipelines.korean import InvalidPhone, normalize_phone
from pipelines.messaging import cost, policy
from pipelines.messaging.compose import Composed, Recipient, Spec, compose_all
from pipelines.messaging.config import TenantMessaging, spec_of_template
from pipelines.messaging.providers import PROVIDERS
from pipelines.messaging.text import Channel

MAX_EXPLICIT_RECIPIENTS = 1000
MAX_IDS = 5000
# Errors that are about the text (the same for everyone), not about one recipient.
TEXT_ERRORS = {"missing_variable", "too_long", "subject_too_long", "unencodable", "empty"}


class ExplicitRecipient(msgspec.Struct, forbid_unknown_fields=True):
    phone: Phone
    name: Name = ""


class Target(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of: guardians, a student's (students') guardians, the guardians of a
    lecture's active students, or an explicit list of phones."""

    guardian_ids: list[uuid.UUID] | None = None
    student_ids: list[uuid.UUID] | None = None
    lecture_id: uuid.UUID | None = None
    recipients: list[ExplicitRecipient] | None = None


class SendRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A template (``template_id``) or a one-off ``text`` (SMS/LMS, with ``subject``)."""

    target: Target
    template_id: uuid.UUID | None = None
    text: Text | None = None
    subject: Name = ""
    sender_id: uuid.UUID | None = None
    variables: dict[Name, Text] = {}
    dry_run: bool = False


class RecipientError(msgspec.Struct):
    phone: str
    code: str
    message: str
    student_id: uuid.UUID | None = None


class Preview(msgspec.Struct):
    recipients: int
    by_channel: dict[str, int]
    cost_krw: str
    cost_is_estimate: bool
    sample: str | None
    errors: list[RecipientError]


class SendAccepted(msgspec.Struct):
    job_id: uuid.UUID
    preview: Preview


def problem(code: str, detail: str, status: int = 422, **extensions: Any) -> Problem:
    return Problem(status, detail, type_=f"/problems/messaging-{code}", **extensions)


@dataclass(frozen=True)
class Prepared:
    """A checked send request: what the ``messaging.expand`` job takes, and the preview."""

    spec: Spec
    sender: str
    target: dict[str, Any]
    recipients: list[Recipient]
    preview: Preview


async def prepare_send(scope: TenantScope, data: SendRequest) -> Prepared:
    """Every check that does not depend on one recipient raises its problem here; the
    recipients' own problems are in the preview."""
    config = await tenant_messaging(scope.tenant_id)
    if config.provider not in PROVIDERS:
        raise problem(
            "no-provider",
            "no messaging provider is configured: store the academy's provider "
            "credentials (PUT /api/v1/messaging/settings)",
        )
    spec = await _spec(scope, data, config)
    sender = await _sender(scope, data.sender_id)
    target = await _check_target(scope, data.target)
    recipients = await resolve_recipients(scope, target)
    preview = _preview(compose_all(spec, recipients, config.academy, data.variables))
    return Prepared(spec, sender, target, recipients, preview)


async def _check_target(scope: TenantScope, target: Target) -> dict[str, Any]:
    """The target as the worker takes it, after checking every id is this academy's."""
    given = [
        name
        for name in ("guardian_ids", "student_ids", "lecture_id", "recipients")
        if getattr(target, name) is not None
    ]
    if len(given) != 1:
        raise field_error(
            "target", "give exactly one of guardian_ids, student_ids, lecture_id, recipients"
        )
    if target.lecture_id is not None:
        try:
            await lecture_exists(scope, target.lecture_id)
        except NotFoundInTenant:
            raise field_error("target.lecture_id", "no such lecture") from None
        return {"lecture_id": str(target.lecture_id)}
    if target.recipients is not None:
        return {"recipients": _explicit(target.recipients)}
    name: Literal["student_ids", "guardian_ids"] = (
        "student_ids" if target.student_ids is not None else "guardian_ids"
    )
    ids = list(dict.fromkeys(getattr(target, name)))
    if not 1 <= len(ids) <= MAX_IDS:
        raise field_error(f"target.{name}", f"between 1 and {MAX_IDS} ids")
    unknown = [str(i) for i in await unknown_ids(scope, name, ids)]
    if unknown:
        raise field_error(f"target.{name}", f"unknown id(s): {', '.join(unknown[:20])}")
    return {name: [str(i) for i in ids]}


def _explicit(recipients: list[ExplicitRecipient]) -> list[dict[str, str]]:
    if not 1 <= len(recipients) <= MAX_EXPLICIT_RECIPIENTS:
        raise field_error(
            "target.recipients", f"between 1 and {MAX_EXPLICIT_RECIPIENTS} recipients"
        )
    errors = []
    explicit = []
    for i, r in enumerate(recipients):
        try:
            # Canonical here, so "+82 10-…" and "010-…" are one recipient downstream.
            explicit.append({"phone": normalize_phone(r.phone), "name": r.name})
        except InvalidPhone as exc:
            errors.append({"field": f"target.recipients[{i}].phone", "message": str(exc)})
    fail_fields(errors)
    return explicit


async def _spec(scope: TenantScope, data: SendRequest, config: TenantMessaging) -> Spec:
    if (data.template_id is None) == (data.text is None):
        raise field_error("template_id", "give a template_id or a text (not both)")
    if data.template_id is not None:
        try:
            template = await get_template(scope, data.template_id)
        except NotFoundInTenant:
            raise field_error("template_id", "no such template") from None
        spec = spec_of_template(template, config)
    else:
        assert data.text is not None
        spec = Spec(kind="sms", body=data.text, subject=data.subject)
    if spec.kind == "alimtalk" and not config.pf_id:
        raise problem(
            "no-sender-profile",
            "Alimtalk needs the academy's Kakao sender profile (pf_id) in the messaging settings",
        )
    if spec.advertising:
        _check_advertising(config)
    return spec


def _check_advertising(config: TenantMessaging) -> None:
    if not config.opt_out_number:
        raise problem(
            "no-opt-out-number",
            "advertising messages need the academy's free opt-out number "
            "(opt_out_number in the messaging settings)",
        )
    now = policy.utcnow()
    if policy.is_night(now):
        nxt = policy.next_allowed(now)
        raise problem(
            "night-block",
            f"advertising messages cannot be sent between 20:50 and 08:00 KST; "
            f"send after {nxt.isoformat()}",
            next_allowed=nxt.isoformat(),
        )


async def _sender(scope: TenantScope, sender_id: uuid.UUID | None) -> str:
    if sender_id is not None:
        try:
            return await sender_phone(scope, sender_id)
        except NotFoundInTenant:
            raise field_error("sender_id", "no such sender number") from None
    phone = await default_sender(scope.tenant_id)
    if phone is None:
        raise problem(
            "no-sender",
            "register a sender number (발신번호) first: POST /api/v1/messaging/senders",
        )
    return phone


def _preview(composed: list[Composed]) -> Preview:
    by_channel: dict[Channel, int] = {}
    errors = []
    for c in composed:
        if c.error:
            errors.append(
                RecipientError(
                    phone=c.recipient.phone,
                    code=c.error_code,
                    message=c.error,
                    student_id=c.recipient.student_id,
                )
            )
        else:
            by_channel[c.channel] = by_channel.get(c.channel, 0) + 1
    ok = next((c for c in composed if not c.error), None)
    return Preview(
        recipients=len(composed),
        by_channel={ch.value: n for ch, n in by_channel.items()},
        cost_krw=str(cost.estimate(by_channel).quantize(Decimal("1"))),
        cost_is_estimate=True,
        sample=ok.body if ok else None,
        errors=errors[:100],
    )


def refuse_text_errors(preview: Preview) -> None:
    """A text error (the same for everyone) refuses the whole send."""
    text_errors = [e for e in preview.errors if e.code in TEXT_ERRORS]
    if text_errors:
        raise Problem(
            422,
            f"{len(text_errors)} recipient(s) cannot get this message: {text_errors[0].message}",
            type_="/problems/messaging-template",
            errors=[
                {"field": "template", "message": e.message, "phone": e.phone}
                for e in text_errors[:20]
            ],
        )
