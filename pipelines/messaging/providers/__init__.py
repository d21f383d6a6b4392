"""Providers by name. A tenant's stored credentials pick its provider; without them the
process default (``MESSAGING_PROVIDER``, ``console`` outside production) applies."""

from __future__ import annotations

from ops.settings import Settings, get_settings
from pipelines.messaging.credentials import Credentials
from pipelines.messaging.providers.base import (
    DeliveryState,
    OutgoingMessage,
    Provider,
    ProviderError,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ProviderUnavailable,
    ProviderUncertain,
    Report,
    SendOutcome,
)
from pipelines.messaging.providers.console import ConsoleProvider
from pipelines.messaging.providers.solapi import SolapiProvider

# name -> the credential fields it needs
PROVIDERS: dict[str, tuple[str, ...]] = {
    "console": (),
    "solapi": ("api_key", "api_secret"),
}


class ProviderNotConfigured(ProviderRejectedRequest):
    pass


def build_provider(
    name: str, credentials: Credentials, settings: Settings | None = None
) -> Provider:
    s = settings or get_settings()
    if name == "console":
        return ConsoleProvider(s.messaging_console_outbox or None)
    if name == "solapi":
        return SolapiProvider(credentials, s.solapi_base_url, s.messaging_http_timeout_seconds)
    if not name:
        raise ProviderNotConfigured(
            "no messaging provider: store the academy's provider credentials "
            "(PUT /api/v1/messaging/settings) or set MESSAGING_PROVIDER"
        )
    raise ProviderNotConfigured(f"unknown messaging provider {name!r}; one of {sorted(PROVIDERS)}")


__all__ = [
    "PROVIDERS",
    "ConsoleProvider",
    "DeliveryState",
    "OutgoingMessage",
    "Provider",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderRateLimited",
    "ProviderRejectedRequest",
    "ProviderUnavailable",
    "ProviderUncertain",
    "Report",
    "SendOutcome",
    "SolapiProvider",
    "build_provider",
]
