"""Signatures: Solapi's request auth header, and our delivery-report webhook's.

Solapi v4: ``Authorization: HMAC-SHA256 ApiKey=<key>, Date=<ISO 8601>, salt=<random>,
signature=<hex HMAC-SHA256(api_secret, Date + salt)>``.

Webhook: ``X-Academy-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." +
body)>``, with a per-tenant secret derived from SECRET_KEY (shown to the academy's admins
to configure at the provider). Reports older than five minutes are refused (replays).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time

from ops.settings import get_settings

WEBHOOK_HEADER = "X-Academy-Signature"
WEBHOOK_TOLERANCE_SECONDS = 300


def solapi_authorization(api_key: str, api_secret: str, *, now: dt.datetime | None = None) -> str:
    date = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    salt = secrets.token_hex(16)
    signature = hmac.new(api_secret.encode(), (date + salt).encode(), hashlib.sha256).hexdigest()
    return f"HMAC-SHA256 ApiKey={api_key}, Date={date}, salt={salt}, signature={signature}"


def webhook_secret(tenant_id: object) -> str:
    key = get_settings().secret_key.encode()
    return hmac.new(key, f"messaging-webhook:{tenant_id}".encode(), hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, *, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_webhook(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - t) > WEBHOOK_TOLERANCE_SECONDS:
        return False
    expected = sign_webhook(secret, body, at=t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
