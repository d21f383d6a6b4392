"""Provider credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).

Keys come from ``MESSAGING_CREDENTIALS_KEYS`` (comma-separated, the first encrypts, all
decrypt: rotate by prepending a new key). Without it, one key is derived from SECRET_KEY
with HKDF, so development needs no extra setting. Decrypted credentials live only in
memory; ``Credentials.__repr__`` masks them so a log line cannot leak them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ops.settings import Settings, get_settings


class CredentialsError(ValueError):
    pass


def _derived_key(secret_key: str) -> bytes:
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"academy.messaging", info=b"credentials"
    ).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


def _fernet(settings: Settings | None = None) -> MultiFernet:
    s = settings or get_settings()
    keys = [k.encode() for k in s.messaging_credentials_keys] or [_derived_key(s.secret_key)]
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError:
        raise CredentialsError(
            "MESSAGING_CREDENTIALS_KEYS must hold Fernet keys (32 url-safe base64 bytes each)"
        ) from None


@dataclass(frozen=True)
class Credentials:
    """A provider's secrets (Solapi: ``api_key`` and ``api_secret``)."""

    values: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        value = self.values.get(name, "")
        if not value:
            raise CredentialsError(f"the provider credentials lack {name!r}")
        return value

    def masked(self) -> dict[str, str]:
        """For display: the last four characters of non-secret ids, nothing of secrets."""
        out = {}
        for name, value in self.values.items():
            out[name] = "••••" if "secret" in name else f"••••{value[-4:]}"
        return out

    def __repr__(self) -> str:
        return f"Credentials({sorted(self.values)} masked)"

    __str__ = __repr__


def encrypt(credentials: Credentials, settings: Settings | None = None) -> str:
    payload = json.dumps(credentials.values, separators=(",", ":")).encode()
    return _fernet(settings).encrypt(payload).decode()


def decrypt(token: str | None, settings: Settings | None = None) -> Credentials:
    if not token:
        return Credentials()
    try:
        values: Any = json.loads(_fernet(settings).decrypt(token.encode()))
    except InvalidToken:
        raise CredentialsError(
            "stored provider credentials cannot be decrypted with the configured keys "
            "(MESSAGING_CREDENTIALS_KEYS changed without keeping the old key?)"
        ) from None
    return Credentials({str(k): str(v) for k, v in dict(values).items()})
