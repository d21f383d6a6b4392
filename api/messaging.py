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
import uuid
from typing import Annotated, Any, Literal, get_args

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from actors.jobs import submit
from actors.messaging import expand, send_batch
from api import rules
from api.auth import Principal, require_admin, require_staff
from api.errors import Problem, field_error
from api.messaging_send import SendAccepted, SendRequest, prepare_send, problem, refuse_text_errors
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models import messaging as message_store
from models import messaging_config
from models.errors import fail_fields
from models.limits import (
    TEMPLATE_CODE,
    Day,
    Key,
    Name,
    Phone,
    RequiredSecret,
    RequiredText,
)
from models.messaging import Message
from models.messaging_config import Sender, StoredSettings, Template, TemplateValues
from models.pages import Page
from models.scope import TenantScope
from models.tables import MessageStatus
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.korean import KST, InvalidPhone, normalize_phone
from pipelines.messaging.config import SWITCHES
from pipelines.messaging.credentials import Credentials, CredentialsError, decrypt, encrypt
from pipelines.messaging.providers import PROVIDERS, console, solapi
from pipelines.messaging.rows import chunks
from pipelines.messaging.signing import WEBHOOK_HEADER, verify_webhook, webhook_secret
from pipelines.messaging.templates import PLACEHOLDER, TemplateError, check_template
from pipelines.messaging.text import unencodable

log = logging.getLogger("api.messaging")

# Litestar names a page's component after the module of its item (``Page_<module>.<Item>_``);
# the items are the query layer's Structs now, and these keep the published names.
SenderPage = Annotated[Page[Sender], page_schema(Sender)]
TemplatePage = Annotated[Page[Template], page_schema(Template)]
MessagePage = Annotated[Page[Message], page_schema(Message)]

REPORT_PARSERS = {"solapi": solapi.parse_reports, "console": console.parse_reports}


# --- schemas ---------------------------------------------------------------------------


class ProviderCredentials(msgspec.Struct, forbid_unknown_fields=True):
    api_key: RequiredSecret
    api_secret: RequiredSecret


# The providers an academy may choose, or "" for the server's default.
ProviderChoice = Literal["", "console", "solapi"]
assert set(get_args(ProviderChoice)) == {"", *PROVIDERS}, "a provider to list in ProviderChoice"


class SettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. ``provider: ""`` returns to the server default;
    ``credentials`` replace the stored ones (they are never shown again)."""

    provider: ProviderChoice | msgspec.UnsetType = msgspec.UNSET
    credentials: ProviderCredentials | msgspec.UnsetType | None = msgspec.UNSET
    pf_id: Key | msgspec.UnsetType = msgspec.UNSET
    opt_out_number: Phone | msgspec.UnsetType = msgspec.UNSET
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
    phone: Phone
    label: Name = ""
    is_default: bool = False


class TemplateIn(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(pattern=TEMPLATE_CODE)]
    body: RequiredText
    name: Name = ""
    channel: Literal["sms", "alimtalk"] = "sms"  # sms: SMS or LMS by length
    subject: Name = ""
    kakao_template_id: Key = ""
    advertising: bool = False
    strip_unencodable: bool = False


class WebhookResult(msgspec.Struct):
    reports: int
    delivered: int
    failed: int


# --- helpers ---------------------------------------------------------------------------


def _settings_out(stored: StoredSettings) -> MessagingSettings:
    effective = stored.provider or get_settings().messaging_provider
    try:
        masked = decrypt(stored.credentials).masked() if stored.credentials else {}
    except CredentialsError as exc:
        # Still answer, so an admin can see the problem and store them again.
        masked = {"error": str(exc)}
    # The stored settings by name (the academy's id, name and slug are not shown), the
    # credentials masked, and what the provider's side needs.
    return msgspec.convert(
        {
            **msgspec.structs.asdict(stored),
            "effective_provider": effective,
            "credentials": masked,
            "webhook_url": f"{get_settings().site_url}/api/v1/messaging/webhooks/"
            f"{effective or 'solapi'}?tenant={stored.slug}",
            "webhook_secret": webhook_secret(stored.tenant_id),
        },
        MessagingSettings,
    )


def _settings_values(data: SettingsUpdate, stored: StoredSettings) -> dict[str, Any]:
    """The columns to store (credentials encrypted); every field error at once."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    if data.provider is not msgspec.UNSET:
        values["provider"] = data.provider
    if data.credentials is not msgspec.UNSET:
        creds = data.credentials
        if creds is None:
            values["credentials"] = None
        else:
            values["credentials"] = encrypt(
                Credentials(
                    {"api_key": creds.api_key.strip(), "api_secret": creds.api_secret.strip()}
                )
            )
    provider = values.get("provider", stored.provider)
    has_creds = values.get("credentials", stored.credentials)
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
    for name in SWITCHES:
        value = getattr(data, name)
        if value is not msgspec.UNSET:
            values[name] = value
    fail_fields(errors)
    return values


def _validate_template(data: TemplateIn) -> TemplateValues:
    errors: list[dict[str, Any]] = []
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
    fail_fields(errors)
    return TemplateValues(
        code=data.code,
        name=data.name.strip(),
        channel=data.channel,
        subject=data.subject,
        body=data.body,
        kakao_template_id=data.kakao_template_id.strip(),
        advertising=data.advertising,
        strip_unencodable=data.strip_unencodable,
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
        return _settings_out(await messaging_config.stored_settings(tenant_scope))

    @put(
        "/settings",
        opt=rules.MESSAGING_SETTINGS,
        guards=[require_admin],
        summary="Change the messaging settings",
    )
    async def put_settings(
        self, data: JSONBody[SettingsUpdate], tenant_scope: NamedDependency[TenantScope]
    ) -> MessagingSettings:
        stored = await messaging_config.stored_settings(tenant_scope)
        values = _settings_values(data, stored)
        if values:
            await messaging_config.save_settings(tenant_scope, values)
            # Never the credentials themselves: only which fields changed.
            log_event(log, "MESSAGING_SETTINGS_CHANGED", fields=sorted(values))
            stored = await messaging_config.stored_settings(tenant_scope)
        return _settings_out(stored)

    # --- sender numbers ---

    @get("/senders", summary="Registered sender numbers (발신번호), oldest first")
    async def list_senders(
        self,
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> SenderPage:
        return await messaging_config.list_senders(
            tenant_scope, cursor=cursor, limit=check_limit(limit)
        )

    @post("/senders", opt=rules.SENDER, status_code=HTTP_201_CREATED, guards=[require_admin],
          summary="Register a sender number (as registered with the provider)")  # fmt: skip
    async def add_sender(
        self, data: JSONBody[SenderCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> Sender:
        try:
            phone = normalize_phone(data.phone)
        except InvalidPhone as exc:
            raise field_error("phone", str(exc)) from None
        return await messaging_config.add_sender(
            tenant_scope, phone, data.label.strip()[:100], data.is_default
        )

    @delete("/senders/{sender_id:str}", status_code=HTTP_204_NO_CONTENT, guards=[require_admin],
            summary="Remove a sender number")  # fmt: skip
    async def delete_sender(
        self, sender_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        await messaging_config.delete_sender(tenant_scope, sender_id)

    # --- templates ---

    @get("/templates", summary="The academy's templates, by code")
    async def list_templates(
        self,
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> TemplatePage:
        return await messaging_config.list_templates(
            tenant_scope, cursor=cursor, limit=check_limit(limit)
        )

    @post("/templates", opt=rules.TEMPLATE_WRITE, status_code=HTTP_201_CREATED, guards=[require_admin],
          summary="Create a template")  # fmt: skip
    async def create_template(
        self, data: JSONBody[TemplateIn], tenant_scope: NamedDependency[TenantScope]
    ) -> Template:
        """Codes of automatic notices: ``attendance.absent``, ``attendance.late``,
        ``score.recorded``, ``video.unwatched``. A taken code is a 409."""
        return await messaging_config.create_template(tenant_scope, _validate_template(data))

    @get("/templates/{template_id:str}", summary="One template")
    async def get_template(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Template:
        return await messaging_config.get_template(tenant_scope, template_id)

    @put(
        "/templates/{template_id:str}",
        opt=rules.TEMPLATE_WRITE,
        guards=[require_admin],
        summary="Replace a template",
    )
    async def put_template(
        self,
        template_id: FromPath[str],
        data: JSONBody[TemplateIn],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Template:
        # An unknown template is a 404 before its new text is checked.
        current = await messaging_config.get_template(tenant_scope, template_id)
        return await messaging_config.replace_template(
            tenant_scope, current.id, _validate_template(data)
        )

    @delete("/templates/{template_id:str}", status_code=HTTP_204_NO_CONTENT,
            guards=[require_admin], summary="Delete a template")  # fmt: skip
    async def delete_template(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        await messaging_config.delete_template(tenant_scope, template_id)

    # --- sending ---

    @post(
        "/send", opt=rules.SEND, status_code=HTTP_202_ACCEPTED, summary="Send, or preview (dry_run)"
    )
    async def send(
        self,
        data: JSONBody[SendRequest],
        tenant_scope: NamedDependency[TenantScope],
        principal: NamedDependency[Principal],
    ) -> Response[Any]:
        """``dry_run`` answers 200 with the count, channels, estimated cost, a sample and
        every recipient's problem, and sends nothing. Otherwise a template error for any
        recipient (a missing ``#{variable}``, text EUC-KR cannot carry, over the byte
        limits) refuses the whole send; a recipient without a valid phone is logged as a
        failed message. Answers 202 ``{job_id, preview}``; poll ``/api/v1/jobs/{job_id}``."""
        prepared = await prepare_send(tenant_scope, data)
        if data.dry_run:
            return Response(prepared.preview, status_code=200)
        if not prepared.recipients:
            raise problem("no-recipients", "the target has no one with a phone to send to")
        refuse_text_errors(prepared.preview)
        job = await submit(
            expand,
            tenant_id=tenant_scope.tenant_id,
            kind="messaging.send",
            spec=dataclasses.asdict(prepared.spec),
            target=prepared.target,
            variables=dict(data.variables),
            sender=prepared.sender,
        )
        log_event(
            log,
            "MESSAGING_SEND_REQUESTED",
            job_id=str(job.id),
            recipients=prepared.preview.recipients,
            by=str(principal.user_id),
        )
        return Response(SendAccepted(job_id=job.id, preview=prepared.preview), status_code=202)

    # --- the log ---

    @get("/messages", summary="The message log: filters, newest first, cursor pages")
    async def list_messages(
        self,
        tenant_scope: NamedDependency[TenantScope],
        status: FromQuery[MessageStatus | None] = None,
        student_id: FromQuery[uuid.UUID | None] = None,
        job_id: FromQuery[uuid.UUID | None] = None,
        date_from: FromQuery[Day | None] = None,
        date_to: FromQuery[Day | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> MessagePage:
        """``date_from``/``date_to`` are days in Korea (inclusive) of when the message was
        created."""
        return await message_store.list_messages(
            tenant_scope,
            status=None if status is None else status.value,
            student_id=student_id,
            job_id=job_id,
            created_from=None if date_from is None else _kst_midnight(date_from),
            created_before=None if date_to is None else _kst_midnight(date_to, days=1),
            cursor=cursor,
            limit=check_limit(limit),
        )

    @get("/messages/{message_id:str}", summary="One message")
    async def get_message(
        self, message_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Message:
        return await message_store.get_message(tenant_scope, message_id)


def _kst_midnight(day: dt.date, days: int = 0) -> dt.datetime:
    """The start of ``day`` (plus ``days``) in Korea."""
    return dt.datetime.combine(day + dt.timedelta(days=days), dt.time(), tzinfo=KST)


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
    tenant_id = await messaging_config.tenant_by_slug(slug)
    signature = request.headers.get(WEBHOOK_HEADER, "")
    # One answer for an unknown academy and a bad signature: slugs cannot be probed.
    if tenant_id is None or not verify_webhook(webhook_secret(tenant_id), body, signature):
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
    applied = await message_store.apply_reports(tenant_id, reports)
    await _send_fallbacks(applied.fallbacks)
    return WebhookResult(reports=len(reports), delivered=applied.delivered, failed=applied.failed)


async def _send_fallbacks(fallbacks: dict[uuid.UUID, list[uuid.UUID]]) -> None:
    """The fallback rows a report created (committed) go to ``send_batch``; one that
    cannot be sent now is found by the pump once it is stale."""
    size = get_settings().messaging_batch_size
    for ids in fallbacks.values():
        for batch in chunks(ids, size):
            try:
                await send_batch.send_async(message_ids=batch)
            except Exception:
                log.exception("send_batch could not be enqueued; the pump will resend it")
    created = sum(len(ids) for ids in fallbacks.values())
    if created:
        log_event(log, "MESSAGING_FALLBACK", messages=created)


CONTROLLERS: list[type[Controller]] = [MessagingController, MessagingWebhookController]
