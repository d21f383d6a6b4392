"""Messaging API: the academy's provider settings, sender numbers and templates; sending
(with a dry run that counts and prices); the message log; the delivery-report webhook.

Sending is asynchronous: ``POST /api/v1/messaging/send`` checks everything it can up front
(template variables for every recipient, EUC-KR text, byte limits, the advertising night
block, a registered sender number) and answers ``202 {job_id, preview}``; the ``messaging``
workers expand, send, poll and fall back (see ``actors/messaging.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from actors import messaging as pipeline
from actors.jobs import submit
from api.auth import Principal, require_admin, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import connection, transaction
from models.pages import Page, as_datetime, as_text, as_uuid, decode_cursor_as, page_of
from models.scope import NotFoundInTenant, TenantScope
from models.tables import Lecture as LectureRow
from models.tables import Message as MessageRow
from models.tables import MessageStatus, MessageTemplate, MessagingConfig, SenderNumber, Tenant
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.korean import KST, InvalidPhone, normalize_phone
from pipelines.messaging import cost, policy
from pipelines.messaging.compose import Recipient, Spec
from pipelines.messaging.credentials import Credentials, CredentialsError, decrypt, encrypt
from pipelines.messaging.providers import PROVIDERS, console, solapi
from pipelines.messaging.signing import WEBHOOK_HEADER, verify_webhook, webhook_secret
from pipelines.messaging.templates import PLACEHOLDER, TemplateError, check_template
from pipelines.messaging.text import Channel, unencodable

log = logging.getLogger("api.messaging")

MAX_EXPLICIT_RECIPIENTS = 1000
MAX_IDS = 5000
TEMPLATE_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Errors that are about the text (the same for everyone), not about one recipient.
REPORT_PARSERS = {"solapi": solapi.parse_reports, "console": console.parse_reports}
TEXT_ERRORS = {"missing_variable", "too_long", "subject_too_long", "unencodable", "empty"}


# --- schemas ---------------------------------------------------------------------------


class ProviderCredentials(msgspec.Struct, forbid_unknown_fields=True):
    api_key: str
    api_secret: str


class SettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. ``provider: ""`` returns to the server default;
    ``credentials`` replace the stored ones (they are never shown again)."""

    provider: str | msgspec.UnsetType = msgspec.UNSET
    credentials: ProviderCredentials | msgspec.UnsetType | None = msgspec.UNSET
    pf_id: str | msgspec.UnsetType = msgspec.UNSET
    opt_out_number: str | msgspec.UnsetType = msgspec.UNSET
    auto_absence: bool | msgspec.UnsetType = msgspec.UNSET
    auto_late: bool | msgspec.UnsetType = msgspec.UNSET
    auto_score: bool | msgspec.UnsetType = msgspec.UNSET
    auto_video_reminder: bool | msgspec.UnsetType = msgspec.UNSET


class MessagingSettings(msgspec.Struct):
    provider: str  # the academy's own, or "" for the server default
    effective_provider: str
    credentials: dict[str, str]  # masked
    pf_id: str
    opt_out_number: str
    auto_absence: bool
    auto_late: bool
    auto_score: bool
    auto_video_reminder: bool
    webhook_url: str
    webhook_secret: str


class SenderCreate(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    label: str = ""
    is_default: bool = False


class Sender(msgspec.Struct):
    id: uuid.UUID
    phone: str
    label: str
    is_default: bool
    created_at: dt.datetime


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    body: str
    name: str = ""
    channel: str = "sms"  # sms (SMS or LMS by length) | alimtalk
    subject: str = ""
    kakao_template_id: str = ""
    advertising: bool = False
    strip_unencodable: bool = False


class Template(msgspec.Struct):
    id: uuid.UUID
    code: str
    name: str
    channel: str
    subject: str
    body: str
    variables: list[str]
    kakao_template_id: str
    advertising: bool
    strip_unencodable: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class ExplicitRecipient(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    name: str = ""


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
    text: str | None = None
    subject: str = ""
    sender_id: uuid.UUID | None = None
    variables: dict[str, str] = {}
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


class Message(msgspec.Struct):
    id: uuid.UUID
    job_id: uuid.UUID | None
    event_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    student_id: uuid.UUID | None
    guardian_id: uuid.UUID | None
    to: str
    sender: str
    channel: str
    subject: str
    body: str
    template_code: str
    status: str
    error: str | None
    provider: str
    provider_message_id: str | None
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    updated_at: dt.datetime


class WebhookResult(msgspec.Struct):
    reports: int
    delivered: int
    failed: int


# --- helpers ---------------------------------------------------------------------------


def _problem(code: str, detail: str, status: int = 422, **extensions: Any) -> Problem:
    return Problem(status, detail, type_=f"/problems/messaging-{code}", **extensions)


async def _config(scope: TenantScope) -> dict[str, Any]:
    row = await scope.select(MessagingConfig).first()
    if row is not None:
        return dict(row)
    defaults = MessagingConfig(tenant=scope.tenant_id)
    return {c._meta.name: getattr(defaults, c._meta.name) for c in MessagingConfig._meta.columns}


def _settings_out(config: dict[str, Any], tenant_id: uuid.UUID, slug: str) -> MessagingSettings:
    effective = config["provider"] or get_settings().messaging_provider
    try:
        masked = decrypt(config["credentials"]).masked() if config["credentials"] else {}
    except CredentialsError as exc:
        # Still answer, so an admin can see the problem and store them again.
        masked = {"error": str(exc)}
    return MessagingSettings(
        provider=config["provider"],
        effective_provider=effective,
        credentials=masked,
        pf_id=config["pf_id"],
        opt_out_number=config["opt_out_number"],
        auto_absence=config["auto_absence"],
        auto_late=config["auto_late"],
        auto_score=config["auto_score"],
        auto_video_reminder=config["auto_video_reminder"],
        webhook_url=f"{get_settings().site_url}/api/v1/messaging/webhooks/{effective or 'solapi'}"
        f"?tenant={slug}",
        webhook_secret=webhook_secret(tenant_id),
    )


async def _slug(tenant_id: uuid.UUID) -> str:
    row = await Tenant.select(Tenant.slug).where(Tenant.id == tenant_id).first()
    return str(row["slug"]) if row else ""


def _template_out(row: dict[str, Any]) -> Template:
    from pipelines.messaging.templates import variables_of

    return Template(
        id=row["id"],
        code=row["code"],
        name=row["name"],
        channel=row["channel"],
        subject=row["subject"],
        body=row["body"],
        variables=variables_of(row["subject"] + row["body"]),
        kakao_template_id=row["kakao_template_id"],
        advertising=row["advertising"],
        strip_unencodable=row["strip_unencodable"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _validate_template(data: TemplateIn) -> dict[str, Any]:
    errors: list[dict[str, Any]] = []
    if not TEMPLATE_CODE.match(data.code):
        errors.append({"field": "code", "message": "lowercase letters, digits, '.', '_', '-'"})
    if data.channel not in ("sms", "alimtalk"):
        errors.append({"field": "channel", "message": "sms or alimtalk"})
    if not data.body.strip():
        errors.append({"field": "body", "message": "must not be empty"})
    for field, text in (("body", data.body), ("subject", data.subject)):
        try:
            check_template(text)
        except TemplateError as exc:
            errors.append({"field": field, "message": str(exc)})
    if data.channel == "alimtalk" and not data.kakao_template_id.strip():
        errors.append(
            {"field": "kakao_template_id", "message": "an Alimtalk template needs its code"}
        )
    if data.channel == "alimtalk" and data.advertising:
        errors.append({"field": "advertising", "message": "Alimtalk cannot carry advertising"})
    # The fixed text must be sendable by SMS/LMS (also Alimtalk's, for its fallback),
    # unless the template strips what EUC-KR cannot carry.
    if not data.strip_unencodable:
        for field, text in (("body", data.body), ("subject", data.subject)):
            bad = unencodable(PLACEHOLDER.sub("", text))
            if bad:
                shown = ", ".join(repr(ch) for _, ch in bad[:5])
                errors.append(
                    {
                        "field": field,
                        "message": f"characters SMS/LMS cannot carry (not EUC-KR): {shown}; "
                        "remove them or set strip_unencodable",
                    }
                )
    if len(data.subject) > 120 or len(data.name) > 100:
        errors.append({"field": "subject", "message": "at most 120 characters"})
    if errors:
        raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
    return {
        "code": data.code,
        "name": data.name.strip(),
        "channel": data.channel,
        "subject": data.subject,
        "body": data.body,
        "kakao_template_id": data.kakao_template_id.strip(),
        "advertising": data.advertising,
        "strip_unencodable": data.strip_unencodable,
    }


def _message_out(r: Any) -> Message:
    return Message(
        id=r["id"],
        job_id=r["job"],
        event_id=r["event_id"],
        parent_id=r["parent"],
        student_id=r["student"],
        guardian_id=r["guardian"],
        to=r["to_phone"],
        sender=r["from_phone"],
        channel=r["channel"],
        subject=r["subject"],
        body=r["body"],
        template_code=r["template_code"],
        status=r["status"],
        error=r["error"],
        provider=r["provider"],
        provider_message_id=r["provider_message_id"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        sent_at=r["sent_at"],
        delivered_at=r["delivered_at"],
        updated_at=r["updated_at"],
    )


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
            await scope.get(LectureRow, target.lecture_id)
        except NotFoundInTenant:
            raise field_error("target.lecture_id", "no such lecture") from None
        return {"lecture_id": str(target.lecture_id)}
    if target.recipients is not None:
        if not 1 <= len(target.recipients) <= MAX_EXPLICIT_RECIPIENTS:
            raise field_error(
                "target.recipients", f"between 1 and {MAX_EXPLICIT_RECIPIENTS} recipients"
            )
        errors = []
        explicit = []
        for i, r in enumerate(target.recipients):
            try:
                # Canonical here, so "+82 10-…" and "010-…" are one recipient downstream.
                explicit.append({"phone": normalize_phone(r.phone), "name": r.name})
            except InvalidPhone as exc:
                errors.append({"field": f"target.recipients[{i}].phone", "message": str(exc)})
        if errors:
            raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
        return {"recipients": explicit}
    name, table = (
        ("student_ids", "student")
        if target.student_ids is not None
        else ("guardian_ids", "guardian")
    )
    ids = list(dict.fromkeys(getattr(target, name)))
    if not 1 <= len(ids) <= MAX_IDS:
        raise field_error(f"target.{name}", f"between 1 and {MAX_IDS} ids")
    extra = " AND deleted_at IS NULL" if table == "student" else ""
    found = {
        r["id"]
        for r in await scope.fetch(
            f"SELECT id FROM {table} WHERE tenant = $1 AND id = ANY($2::uuid[]){extra}", ids
        )
    }
    unknown = [str(i) for i in ids if i not in found]
    if unknown:
        raise field_error(f"target.{name}", f"unknown id(s): {', '.join(unknown[:20])}")
    return {name: [str(i) for i in ids]}


async def _spec(scope: TenantScope, data: SendRequest, config: pipeline.TenantMessaging) -> Spec:
    if (data.template_id is None) == (data.text is None):
        raise field_error("template_id", "give a template_id or a text (not both)")
    if data.template_id is not None:
        try:
            template = await scope.get(MessageTemplate, data.template_id)
        except NotFoundInTenant:
            raise field_error("template_id", "no such template") from None
        spec = pipeline.spec_of_template(template, config)
    else:
        assert data.text is not None
        spec = Spec(kind="sms", body=data.text, subject=data.subject)
    if spec.kind == "alimtalk" and not config.pf_id:
        raise _problem(
            "no-sender-profile",
            "Alimtalk needs the academy's Kakao sender profile (pf_id) in the messaging settings",
        )
    if spec.advertising:
        if not config.opt_out_number:
            raise _problem(
                "no-opt-out-number",
                "advertising messages need the academy's free opt-out number "
                "(opt_out_number in the messaging settings)",
            )
        now = pipeline.utcnow()
        if policy.is_night(now):
            nxt = policy.next_allowed(now)
            raise _problem(
                "night-block",
                f"advertising messages cannot be sent between 20:50 and 08:00 KST; "
                f"send after {nxt.isoformat()}",
                next_allowed=nxt.isoformat(),
            )
    return spec


async def _sender(scope: TenantScope, sender_id: uuid.UUID | None) -> str:
    if sender_id is not None:
        try:
            return str((await scope.get(SenderNumber, sender_id))["phone"])
        except NotFoundInTenant:
            raise field_error("sender_id", "no such sender number") from None
    phone = await pipeline.default_sender(scope.tenant_id)
    if phone is None:
        raise _problem(
            "no-sender",
            "register a sender number (발신번호) first: POST /api/v1/messaging/senders",
        )
    return phone


def _preview(composed: list[Any]) -> Preview:
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


# --- routes ----------------------------------------------------------------------------


class MessagingController(Controller):
    path = "/api/v1/messaging"
    tags = ["messaging"]
    guards = [require_staff]

    @get("/settings", guards=[require_admin], summary="The academy's messaging settings")
    async def get_settings_(self, tenant_scope: NamedDependency[TenantScope]) -> MessagingSettings:
        """Credentials are masked; the webhook URL and secret are what to configure at the
        provider for delivery reports."""
        config = await _config(tenant_scope)
        return _settings_out(config, tenant_scope.tenant_id, await _slug(tenant_scope.tenant_id))

    @put("/settings", guards=[require_admin], summary="Change the messaging settings")
    async def put_settings(
        self, data: JSONBody[SettingsUpdate], tenant_scope: NamedDependency[TenantScope]
    ) -> MessagingSettings:
        config = await _config(tenant_scope)
        values: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        if data.provider is not msgspec.UNSET:
            if data.provider and data.provider not in PROVIDERS:
                errors.append({"field": "provider", "message": f'one of {sorted(PROVIDERS)} or ""'})
            values["provider"] = data.provider
        if data.credentials is not msgspec.UNSET:
            creds = data.credentials
            if creds is None:
                values["credentials"] = None
            elif not creds.api_key.strip() or not creds.api_secret.strip():
                errors.append({"field": "credentials", "message": "api_key and api_secret"})
            else:
                values["credentials"] = encrypt(
                    Credentials(
                        {"api_key": creds.api_key.strip(), "api_secret": creds.api_secret.strip()}
                    )
                )
        provider = values.get("provider", config["provider"])
        has_creds = values.get("credentials", config["credentials"])
        if provider and PROVIDERS.get(provider) and not has_creds:
            errors.append(
                {"field": "credentials", "message": f"the {provider} provider needs credentials"}
            )
        if data.opt_out_number is not msgspec.UNSET:
            digits = "".join(ch for ch in data.opt_out_number if ch.isdigit())
            if data.opt_out_number and not 8 <= len(digits) <= 12:
                errors.append({"field": "opt_out_number", "message": "a phone number (080-...)"})
            values["opt_out_number"] = data.opt_out_number.strip()
        if data.pf_id is not msgspec.UNSET:
            values["pf_id"] = data.pf_id.strip()
        for name in ("auto_absence", "auto_late", "auto_score", "auto_video_reminder"):
            value = getattr(data, name)
            if value is not msgspec.UNSET:
                values[name] = value
        if errors:
            raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
        if values:
            columns = list(values)
            async with connection() as conn:
                await conn.execute(
                    f"""
                    INSERT INTO messaging_config (id, tenant, {", ".join(columns)}, updated_at)
                    VALUES (gen_random_uuid(), $1,
                            {", ".join(f"${i + 2}" for i in range(len(columns)))}, now())
                    ON CONFLICT (tenant) DO UPDATE SET
                        {", ".join(f"{c} = EXCLUDED.{c}" for c in columns)},
                        updated_at = now()
                    """,
                    tenant_scope.tenant_id,
                    *values.values(),
                )
            # Never the credentials themselves: only which fields changed.
            log_event(log, "MESSAGING_SETTINGS_CHANGED", fields=sorted(columns))
        return _settings_out(
            await _config(tenant_scope),
            tenant_scope.tenant_id,
            await _slug(tenant_scope.tenant_id),
        )

    # --- sender numbers ---

    @get("/senders", summary="Registered sender numbers (발신번호), oldest first")
    async def list_senders(
        self,
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[Sender]:
        limit = check_limit(limit)
        after_at, after_id = decode_cursor_as(cursor, as_datetime, as_uuid) or (None, None)
        rows = await tenant_scope.fetch(
            "SELECT id, phone, label, is_default, created_at FROM sender_number "
            "WHERE tenant = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid)) "
            "ORDER BY created_at, id LIMIT $4",
            after_at,
            after_id,
            limit + 1,
        )
        return page_of(
            rows,
            limit,
            lambda r: [r["created_at"].isoformat(), str(r["id"])],
            lambda r: Sender(r["id"], r["phone"], r["label"], r["is_default"], r["created_at"]),
        )

    @post("/senders", status_code=HTTP_201_CREATED, guards=[require_admin],
          summary="Register a sender number (as registered with the provider)")  # fmt: skip
    async def add_sender(
        self, data: JSONBody[SenderCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> Sender:
        try:
            phone = normalize_phone(data.phone)
        except InvalidPhone as exc:
            raise field_error("phone", str(exc)) from None
        row = tenant_scope.new(
            SenderNumber, phone=phone, label=data.label.strip()[:100], is_default=data.is_default
        )
        try:
            async with transaction():
                if data.is_default:
                    await tenant_scope.update(SenderNumber, {SenderNumber.is_default: False})
                elif not await tenant_scope.select(SenderNumber, SenderNumber.id).first():
                    row.is_default = True  # the first number is the default
                await row.save()
        except asyncpg.UniqueViolationError:
            raise _problem("sender-exists", f"{phone} is already registered", 409) from None
        return Sender(row.id, row.phone, row.label, row.is_default, row.created_at)

    @delete("/senders/{sender_id:str}", status_code=HTTP_204_NO_CONTENT, guards=[require_admin],
            summary="Remove a sender number")  # fmt: skip
    async def delete_sender(
        self, sender_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        row = await tenant_scope.get(SenderNumber, sender_id)
        await tenant_scope.delete(SenderNumber).where(SenderNumber.id == row["id"])

    # --- templates ---

    @get("/templates", summary="The academy's templates, by code")
    async def list_templates(
        self,
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[Template]:
        limit = check_limit(limit)
        after = decode_cursor_as(cursor, as_text)
        query = tenant_scope.select(MessageTemplate).order_by(MessageTemplate.code)
        if after is not None:
            query = query.where(MessageTemplate.code > after[0])
        rows = await query.limit(limit + 1)
        return page_of(rows, limit, lambda r: [r["code"]], _template_out)

    @post("/templates", status_code=HTTP_201_CREATED, guards=[require_admin],
          summary="Create a template")  # fmt: skip
    async def create_template(
        self, data: JSONBody[TemplateIn], tenant_scope: NamedDependency[TenantScope]
    ) -> Template:
        """Codes of automatic notices: ``attendance.absent``, ``attendance.late``,
        ``score.recorded``, ``video.unwatched``. A taken code is a 409."""
        row = tenant_scope.new(MessageTemplate, **_validate_template(data))
        try:
            await row.save()
        except asyncpg.UniqueViolationError:
            raise _problem(
                "template-exists", f"template code {data.code!r} is taken", 409
            ) from None
        return _template_out(await tenant_scope.get(MessageTemplate, row.id))

    @get("/templates/{template_id:str}", summary="One template")
    async def get_template(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Template:
        return _template_out(await tenant_scope.get(MessageTemplate, template_id))

    @put("/templates/{template_id:str}", guards=[require_admin], summary="Replace a template")
    async def put_template(
        self,
        template_id: FromPath[str],
        data: JSONBody[TemplateIn],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Template:
        current = await tenant_scope.get(MessageTemplate, template_id)
        values = _validate_template(data)
        try:
            await tenant_scope.update(
                MessageTemplate,
                {
                    **{getattr(MessageTemplate, k): v for k, v in values.items()},
                    MessageTemplate.updated_at: dt.datetime.now(dt.UTC),
                },
            ).where(MessageTemplate.id == current["id"])
        except asyncpg.UniqueViolationError:
            raise _problem(
                "template-exists", f"template code {data.code!r} is taken", 409
            ) from None
        return _template_out(await tenant_scope.get(MessageTemplate, current["id"]))

    @delete("/templates/{template_id:str}", status_code=HTTP_204_NO_CONTENT,
            guards=[require_admin], summary="Delete a template")  # fmt: skip
    async def delete_template(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        row = await tenant_scope.get(MessageTemplate, template_id)
        await tenant_scope.delete(MessageTemplate).where(MessageTemplate.id == row["id"])

    # --- sending ---

    @post("/send", status_code=HTTP_202_ACCEPTED, summary="Send, or preview (dry_run)")
    async def send(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[SendRequest],
        tenant_scope: NamedDependency[TenantScope],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        """``dry_run`` answers 200 with the count, channels, estimated cost, a sample and
        every recipient's problem, and sends nothing. Otherwise a template error for any
        recipient (a missing ``#{variable}``, text EUC-KR cannot carry, over the byte
        limits) refuses the whole send; a recipient without a valid phone is logged as a
        failed message. Answers 202 ``{job_id, preview}``; poll ``/api/v1/jobs/{job_id}``."""
        config = await pipeline.tenant_messaging(tenant_scope.tenant_id)
        if config.provider not in PROVIDERS:
            raise _problem(
                "no-provider",
                "no messaging provider is configured: store the academy's provider "
                "credentials (PUT /api/v1/messaging/settings)",
            )
        spec = await _spec(tenant_scope, data, config)
        sender = await _sender(tenant_scope, data.sender_id)
        target = await _check_target(tenant_scope, data.target)
        recipients: list[Recipient] = await pipeline.resolve_recipients(
            tenant_scope.tenant_id, target
        )
        composed = pipeline.compose_all(spec, recipients, config.academy, data.variables)
        preview = _preview(composed)
        if data.dry_run:
            return Response(preview, status_code=200)
        if not recipients:
            raise _problem("no-recipients", "the target has no one with a phone to send to")
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
        job = await submit(
            pipeline.expand,
            tenant_id=tenant_scope.tenant_id,
            kind="messaging.send",
            request_id=getattr(request.state, "request_id", "") or "",
            spec=dataclasses.asdict(spec),
            target=target,
            variables=dict(data.variables),
            sender=sender,
        )
        log_event(
            log,
            "MESSAGING_SEND_REQUESTED",
            job_id=str(job.id),
            recipients=preview.recipients,
            by=str(principal.user_id),
        )
        return Response(SendAccepted(job_id=job.id, preview=preview), status_code=202)

    # --- the log ---

    @get("/messages", summary="The message log: filters, newest first, cursor pages")
    async def list_messages(
        self,
        tenant_scope: NamedDependency[TenantScope],
        status: FromQuery[MessageStatus | None] = None,
        student_id: FromQuery[uuid.UUID | None] = None,
        job_id: FromQuery[uuid.UUID | None] = None,
        date_from: FromQuery[dt.date | None] = None,
        date_to: FromQuery[dt.date | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[Message]:
        """``date_from``/``date_to`` are days in Korea (inclusive) of when the message was
        created."""
        limit = check_limit(limit)
        after = decode_cursor_as(cursor, as_datetime, as_uuid)
        where = ["tenant = $1"]
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args) + 1}"

        if status is not None:
            where.append(f"status = {arg(status.value)}")
        if student_id is not None:
            where.append(f"student = {arg(student_id)}")
        if job_id is not None:
            where.append(f"job = {arg(job_id)}")
        if date_from is not None:
            start = dt.datetime.combine(date_from, dt.time(), tzinfo=KST)
            where.append(f"created_at >= {arg(start)}")
        if date_to is not None:
            end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tzinfo=KST)
            where.append(f"created_at < {arg(end)}")
        if after is not None:
            where.append(f"(created_at, id) < ({arg(after[0])}, {arg(after[1])})")
        rows = await tenant_scope.fetch(
            f"SELECT * FROM message WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}",
            *args,
        )
        return page_of(
            rows, limit, lambda r: [r["created_at"].isoformat(), str(r["id"])], _message_out
        )

    @get("/messages/{message_id:str}", summary="One message")
    async def get_message(
        self, message_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Message:
        return _message_out(await tenant_scope.get(MessageRow, message_id))


class MessagingWebhookController(Controller):
    """Delivery reports from the provider. No bearer token: the body is signed with the
    academy's webhook secret (``X-Academy-Signature``), and the academy is named by the
    ``tenant`` query parameter (its slug) of the URL it configured."""

    path = "/api/v1/messaging/webhooks"
    tags = ["messaging"]

    @post("/solapi", status_code=200, summary="Solapi delivery reports")
    async def solapi(
        self, request: Request[Any, Any, Any], tenant: FromQuery[str]
    ) -> WebhookResult:
        return await _webhook(request, tenant, "solapi")

    @post("/console", status_code=200, summary="Delivery reports in the console format")
    async def console(
        self, request: Request[Any, Any, Any], tenant: FromQuery[str]
    ) -> WebhookResult:
        return await _webhook(request, tenant, "console")


async def _webhook(request: Request[Any, Any, Any], slug: str, provider: str) -> WebhookResult:
    body = await request.body()
    row = await Tenant.select(Tenant.id).where(Tenant.slug == slug).first()
    signature = request.headers.get(WEBHOOK_HEADER, "")
    # One answer for an unknown academy and a bad signature: slugs cannot be probed.
    if row is None or not verify_webhook(webhook_secret(row["id"]), body, signature):
        log_event(log, "MESSAGING_WEBHOOK_REJECTED", logging.WARNING, provider=provider)
        raise Problem(
            401,
            "the report's signature is missing, stale or wrong",
            type_="/problems/bad-signature",
        )
    try:
        reports = REPORT_PARSERS[provider](msgspec.json.decode(body))
    except (msgspec.DecodeError, ValueError, KeyError, TypeError) as exc:
        raise field_error("body", f"not a {provider} delivery report: {exc}") from None
    counts = await pipeline.apply_reports(row["id"], reports)
    return WebhookResult(
        reports=len(reports),
        delivered=counts.get("delivered", 0),
        failed=counts.get("failed", 0),
    )


CONTROLLERS: list[type[Controller]] = [MessagingController, MessagingWebhookController]
