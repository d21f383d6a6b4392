"""The provider interface every SMS/Alimtalk provider implements (Solapi and the console
today; NHN Cloud and Aligo fit the same shape: a batch send that answers per message, a
look-up of recent messages, a status query by the provider's ids, and a report parser).

The exceptions tell the pipeline what it needs for exactly-once sending: whether the
provider may have accepted the request (``ProviderUncertain``: reconcile before any
resend) or certainly did not (everything else: safe to send again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from pipelines.korean import phone_digits
from pipelines.messaging.text import Channel


class DeliveryState(str, Enum):
    pending = "pending"  # accepted, not yet reported
    delivered = "delivered"
    failed = "failed"


@dataclass(frozen=True)
class OutgoingMessage:
    key: str  # our idempotency key, sent along where the provider keeps custom fields
    channel: Channel
    to: str  # 010-1234-5678
    sender: str  # a registered sender number
    text: str
    subject: str = ""
    pf_id: str = ""  # Alimtalk sender profile (pfId / senderKey)
    template_id: str = ""  # Alimtalk template code
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """What the provider says about one message."""

    provider_message_id: str
    state: DeliveryState
    code: str = ""
    reason: str = ""
    key: str = ""


@dataclass
class SendOutcome:
    accepted: dict[str, Report] = field(default_factory=dict)  # by key
    rejected: dict[str, Report] = field(default_factory=dict)  # by key; never sent


class ProviderError(Exception):
    """The whole request failed and the provider accepted none of it."""

    retryable = False


class ProviderRejectedRequest(ProviderError):
    """Refused as a whole (credentials, configuration): retrying will not help."""


class ProviderUnavailable(ProviderError):
    """Not reached, or refused before accepting anything (connect error): retry later."""

    retryable = True


class ProviderRateLimited(ProviderUnavailable):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUncertain(Exception):
    """The request may have been accepted (a timeout after sending, a 5xx): reconcile by
    looking the messages up before sending any of them again."""


class Provider(Protocol):
    name: str
    max_batch: int

    async def send(self, messages: Sequence[OutgoingMessage]) -> SendOutcome: ...

    async def find(
        self, keys: Sequence[str], sender: str, since: dt.datetime
    ) -> dict[str, Report]: ...

    async def status(self, provider_message_ids: Sequence[str]) -> list[Report]: ...

    def parse_reports(self, payload: Any) -> list[Report]: ...

    async def aclose(self) -> None: ...


def mask_phone(phone: str) -> str:
    d = phone_digits(phone)
    return f"{d[:3]}-****-{d[-4:]}" if len(d) >= 8 else "****"
