"""An academy's messaging settings as the pipeline uses them: the provider to build (its
own account, or the server's), the Kakao sender profile, the opt-out number, the switches
of automatic notices, and what a stored template becomes when it is sent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from ops.settings import get_settings
from pipelines.messaging.compose import Spec
from pipelines.messaging.credentials import Credentials
from pipelines.messaging.providers import Provider, build_provider

# The switches of ``messaging_config``, one per kind of automatic notice.
SWITCHES = ("auto_absence", "auto_late", "auto_score", "auto_video_reminder")


def lease_seconds() -> float:
    """How old a claim must be before it is reconciled: beyond any provider call in flight."""
    s = get_settings()
    return max(float(s.messaging_send_lease_seconds), s.messaging_http_timeout_seconds * 2 + 1)


@dataclass(frozen=True)
class TenantMessaging:
    tenant_id: uuid.UUID
    academy: str
    provider: str
    credentials: Credentials
    pf_id: str
    opt_out_number: str
    switches: dict[str, bool]
    own_account: bool = False  # its own provider credentials (else the server's account)

    def build(self) -> Provider:
        return build_provider(self.provider, self.credentials)

    @property
    def rate_key(self) -> str:
        """One rate-limit bucket per provider account."""
        return f"{self.provider}:{self.tenant_id if self.own_account else 'server'}"


class StoredTemplate(Protocol):
    """The fields of a stored template that sending uses."""

    @property
    def channel(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def kakao_template_id(self) -> str: ...
    @property
    def advertising(self) -> bool: ...
    @property
    def strip_unencodable(self) -> bool: ...


def spec_of_template(template: StoredTemplate, config: TenantMessaging) -> Spec:
    return Spec(
        kind=template.channel,
        body=template.body,
        subject=template.subject,
        code=template.code,
        kakao_template_id=template.kakao_template_id,
        pf_id=config.pf_id,
        advertising=template.advertising,
        strip_unencodable=template.strip_unencodable,
        opt_out_number=config.opt_out_number,
    )
