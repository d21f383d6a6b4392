"""What an academy sets up to send messages: its provider settings (credentials stored
encrypted), its registered sender numbers (발신번호) and its templates.

An academy without its own provider account sends through the server's
(``MESSAGING_PROVIDER``); a setting never stored reads as the table's default.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec

from models import db
from models.db import as_struct, transaction
from models.errors import Problem
from models.pages import Page, Params, keyset, keyset_page, page_from
from models.pages import as_datetime as cursor_datetime
from models.pages import as_text as cursor_text
from models.pages import as_uuid as cursor_uuid
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import MessageTemplate, SenderNumber
from ops.settings import get_settings
from pipelines.messaging.config import SWITCHES, TenantMessaging
from pipelines.messaging.credentials import Credentials, decrypt
from pipelines.messaging.templates import variables_of


class StoredSettings(msgspec.Struct):
    """An academy's row of ``messaging_config`` (its defaults when it has none), with the
    academy's name and slug."""

    tenant_id: uuid.UUID
    academy: str
    slug: str
    provider: str  # the academy's own, or "" for the server default
    credentials: str | None  # encrypted
    pf_id: str
    opt_out_number: str
    auto_absence: bool
    auto_late: bool
    auto_score: bool
    auto_video_reminder: bool


# The defaults are the table's (``models.tables.MessagingConfig``).
SETTINGS_SELECT = """
    SELECT t.id AS tenant_id, t.name AS academy, t.slug,
           coalesce(c.provider, '') AS provider, c.credentials,
           coalesce(c.pf_id, '') AS pf_id, coalesce(c.opt_out_number, '') AS opt_out_number,
           coalesce(c.auto_absence, true) AS auto_absence,
           coalesce(c.auto_late, true) AS auto_late,
           coalesce(c.auto_score, true) AS auto_score,
           coalesce(c.auto_video_reminder, true) AS auto_video_reminder
    FROM tenant t LEFT JOIN messaging_config c ON c.tenant = t.id
    WHERE t.id = $1
"""


async def stored_settings(scope: TenantScope) -> StoredSettings:
    found = await scope.row(StoredSettings, SETTINGS_SELECT)
    if found is None:
        raise LookupError(f"tenant {scope.tenant_id} not found")
    return found


async def tenant_messaging(tenant_id: Any) -> TenantMessaging:
    """The academy's settings as the pipeline uses them, credentials decrypted."""
    stored = await stored_settings(TenantScope(tenant_id))
    own = bool(stored.provider)
    return TenantMessaging(
        tenant_id=stored.tenant_id,
        academy=stored.academy,
        provider=stored.provider if own else get_settings().messaging_provider,
        credentials=decrypt(stored.credentials) if own else Credentials(),
        pf_id=stored.pf_id,
        opt_out_number=stored.opt_out_number,
        switches={name: getattr(stored, name) for name in SWITCHES},
        own_account=own,
    )


async def save_settings(scope: TenantScope, values: Mapping[str, Any]) -> None:
    """Store the given columns of ``messaging_config`` (names checked by the caller), the
    academy's row created on its first change."""
    columns = list(values)
    await scope.execute(
        f"""
        INSERT INTO messaging_config (id, tenant, {", ".join(columns)}, updated_at)
        VALUES (gen_random_uuid(), $1,
                {", ".join(f"${i + 2}" for i in range(len(columns)))}, now())
        ON CONFLICT (tenant) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in columns)},
            updated_at = now()
        """,
        *values.values(),
    )


async def tenant_by_slug(slug: str) -> uuid.UUID | None:
    """The academy a webhook URL names (not tenant-scoped: the caller is the provider)."""
    found: uuid.UUID | None = await db.value("SELECT id FROM tenant WHERE slug = $1", slug)
    return found


# --- sender numbers ----------------------------------------------------------------------


# A registered number as the API shows it.
class Sender(msgspec.Struct):
    id: uuid.UUID
    phone: str
    label: str
    is_default: bool
    created_at: dt.datetime


SENDER_COLUMNS = "id, phone, label, is_default, created_at"
OLDEST_FIRST = keyset(("created_at", cursor_datetime), ("id", cursor_uuid))


async def list_senders(scope: TenantScope, *, cursor: str | None, limit: int) -> Page[Sender]:
    return await keyset_page(
        scope,
        Sender,
        select=f"SELECT {SENDER_COLUMNS} FROM sender_number",
        where=["tenant = $1"],
        params=Params(),
        key=OLDEST_FIRST,
        cursor=cursor,
        limit=limit,
    )


async def add_sender(scope: TenantScope, phone: str, label: str, is_default: bool) -> Sender:
    """Register a number: the first one is the default, and a new default takes over from
    the old. A number registered already is a 409."""
    try:
        async with transaction():
            if is_default:
                await scope.execute("UPDATE sender_number SET is_default = false WHERE tenant = $1")
            elif await scope.value("SELECT 1 FROM sender_number WHERE tenant = $1 LIMIT 1") is None:
                is_default = True
            added = await scope.row(
                Sender,
                f"""
                INSERT INTO sender_number (id, tenant, phone, label, is_default, created_at)
                VALUES (gen_random_uuid(), $1, $2, $3, $4, now())
                RETURNING {SENDER_COLUMNS}
                """,
                phone,
                label,
                is_default,
            )
    except asyncpg.UniqueViolationError:
        raise Problem(
            409, f"{phone} is already registered", type_="/problems/messaging-sender-exists"
        ) from None
    assert added is not None  # an INSERT ... RETURNING has its row
    return added


async def delete_sender(scope: TenantScope, sender_id: Any) -> None:
    await _delete(scope, SenderNumber, sender_id)


async def sender_phone(scope: TenantScope, sender_id: Any) -> str:
    sender = await scope.one(
        Sender,
        SenderNumber,
        f"SELECT {SENDER_COLUMNS} FROM sender_number WHERE tenant = $1 AND id = $2",
        sender_id,
    )
    return sender.phone


async def default_sender(tenant_id: Any) -> str | None:
    """The default number, else the oldest; None when the academy has none."""
    phone: str | None = await TenantScope(tenant_id).value(
        """
        SELECT phone FROM sender_number WHERE tenant = $1
        ORDER BY is_default DESC, created_at, id LIMIT 1
        """
    )
    return phone


# --- templates ---------------------------------------------------------------------------


# A template as the API shows it: its columns, and the variables its text uses.
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


class TemplateValues(msgspec.Struct):
    """What an academy writes into a template (checked by the caller)."""

    code: str
    name: str
    channel: str
    subject: str
    body: str
    kakao_template_id: str
    advertising: bool
    strip_unencodable: bool


TEMPLATE_COLUMNS = (
    "id, code, name, channel, subject, body, kakao_template_id, advertising, "
    "strip_unencodable, created_at, updated_at"
)
BY_CODE = keyset(("code", cursor_text))


def _with_variables(record: Mapping[str, Any]) -> dict[str, Any]:
    """A template row and the ``#{variables}`` of its text, in order of appearance."""
    return {**record, "variables": variables_of(record["subject"] + record["body"])}


def _template(record: Mapping[str, Any] | None, template_id: Any) -> Template:
    if record is None:
        raise NotFoundInTenant(MessageTemplate, template_id)
    return as_struct(Template, _with_variables(record))


def _code_taken(code: str) -> Problem:
    return Problem(
        409, f"template code {code!r} is taken", type_="/problems/messaging-template-exists"
    )


async def list_templates(scope: TenantScope, *, cursor: str | None, limit: int) -> Page[Template]:
    params = Params()
    where = ["tenant = $1"]
    after = BY_CODE.after(cursor, params)
    if after is not None:
        where.append(after)
    rows = await scope.fetch(
        f"SELECT {TEMPLATE_COLUMNS} FROM message_template WHERE {' AND '.join(where)} "
        f"ORDER BY {BY_CODE.order_by} LIMIT {params(limit + 1)}",
        *params.values,
    )
    return page_from([_with_variables(dict(r)) for r in rows], limit, BY_CODE, Template)


async def get_template(scope: TenantScope, template_id: Any) -> Template:
    found = await scope.fetchrow(
        f"SELECT {TEMPLATE_COLUMNS} FROM message_template WHERE tenant = $1 AND id = $2",
        parse_id(MessageTemplate, template_id),
    )
    return _template(found, template_id)


async def template_by_code(tenant_id: Any, code: str) -> Template | None:
    found = await TenantScope(tenant_id).fetchrow(
        f"SELECT {TEMPLATE_COLUMNS} FROM message_template WHERE tenant = $1 AND code = $2", code
    )
    return None if found is None else _template(found, code)


async def create_template(scope: TenantScope, values: TemplateValues) -> Template:
    """A new template; a code the academy uses already is a 409."""
    try:
        found = await scope.fetchrow(
            f"""
            INSERT INTO message_template (id, tenant, code, name, channel, subject, body,
                kakao_template_id, advertising, strip_unencodable, created_at, updated_at)
            VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now())
            RETURNING {TEMPLATE_COLUMNS}
            """,
            *msgspec.structs.astuple(values),
        )
    except asyncpg.UniqueViolationError:
        raise _code_taken(values.code) from None
    return _template(found, values.code)


async def replace_template(
    scope: TenantScope, template_id: Any, values: TemplateValues
) -> Template:
    try:
        found = await scope.fetchrow(
            f"""
            UPDATE message_template SET code = $3, name = $4, channel = $5, subject = $6,
                body = $7, kakao_template_id = $8, advertising = $9, strip_unencodable = $10,
                updated_at = now()
            WHERE tenant = $1 AND id = $2
            RETURNING {TEMPLATE_COLUMNS}
            """,
            parse_id(MessageTemplate, template_id),
            *msgspec.structs.astuple(values),
        )
    except asyncpg.UniqueViolationError:
        raise _code_taken(values.code) from None
    return _template(found, template_id)


async def delete_template(scope: TenantScope, template_id: Any) -> None:
    await _delete(scope, MessageTemplate, template_id)


# --- both ----------------------------------------------------------------------------------


class _Deleted(msgspec.Struct):
    id: uuid.UUID


async def _delete(
    scope: TenantScope, table: type[SenderNumber | MessageTemplate], row_id: Any
) -> None:
    """Delete the academy's sender number or template ``row_id``; any other id is a 404."""
    await scope.one(
        _Deleted,
        table,
        f"DELETE FROM {table._meta.tablename} WHERE tenant = $1 AND id = $2 RETURNING id",
        row_id,
    )
