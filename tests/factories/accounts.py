"""Student and parent accounts linked to their records."""

from __future__ import annotations

import secrets
from typing import Any

from models.tables import User
from ops.passwords import hash_password

PASSWORD = "family-password-1"


async def family_headers(
    tenant: Any, role: str, *, student_id: Any = None, guardian_id: Any = None
) -> dict[str, str]:
    email = f"{role}-{secrets.token_hex(4)}@family.example"
    await User(
        tenant=tenant.id,
        email=email,
        role=role,
        name=role,
        password_hash=hash_password(PASSWORD),
        student_id=student_id,
        guardian_id=guardian_id,
    ).save()
    return dict(await tenant.headers(email, PASSWORD))
