"""BOLA cases of the messaging API: sender numbers, templates and logged messages."""

from __future__ import annotations

import uuid
from typing import Any

from models.scope import TenantScope
from models.tables import Message, MessageTemplate, SenderNumber
from tests.bola import bola_case
from tests.factories import unique_mobile


async def _sender(tenant: Any) -> str:
    row = TenantScope(tenant.id).new(SenderNumber, phone=unique_mobile(), label="대표")
    await row.save()
    return str(row.id)


async def _template(tenant: Any) -> str:
    row = TenantScope(tenant.id).new(
        MessageTemplate, code=f"t{uuid.uuid4().hex[:8]}", body="#{학생} 학생 안내"
    )
    await row.save()
    return str(row.id)


async def _message(tenant: Any) -> str:
    row = TenantScope(tenant.id).new(
        Message,
        idempotency_key=f"test:{uuid.uuid4()}",
        to_phone=unique_mobile(),
        from_phone=unique_mobile(),
        channel="sms",
        body="안내",
        status="sent",
    )
    await row.save()
    return str(row.id)


TEMPLATE = {"code": "hijacked", "body": "바뀐 내용"}

bola_case("DELETE", "/api/v1/messaging/senders/{id}", read_path="/api/v1/messaging/senders")(
    _sender
)
bola_case("GET", "/api/v1/messaging/templates/{id}")(_template)
bola_case(
    "PUT",
    "/api/v1/messaging/templates/{id}",
    json=TEMPLATE,
    read_path="/api/v1/messaging/templates/{id}",
)(_template)
bola_case(
    "DELETE", "/api/v1/messaging/templates/{id}", read_path="/api/v1/messaging/templates/{id}"
)(_template)
bola_case("GET", "/api/v1/messaging/messages/{id}")(_message)
