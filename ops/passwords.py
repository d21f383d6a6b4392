"""Argon2id password hashing (argon2-cffi's profiles; the default, RFC 9106's low-memory
one, is what its ``PasswordHasher()`` uses). ``PASSWORD_HASH_PROFILE`` picks the profile
for new hashes; a stored hash names its own parameters, so any profile verifies any hash."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

from ops.settings import get_settings

MIN_PASSWORD_LENGTH = 8


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher.from_parameters(getattr(profiles, get_settings().password_hash_profile))


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the account does not exist, so both paths cost the same."""
    return _hasher().hash("not-a-real-password")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return (
            _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False
