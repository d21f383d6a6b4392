"""Academies and their accounts: the query layer behind log-in, ``/auth/me``, account
management and tenant bootstrap.

E-mails are stored lower-case, and one e-mail has at most one account per academy (it may
have accounts in several). An academy keeps at least one active owner.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec

from models import db
from models.auth import revoke_sessions
from models.db import transaction
from models.errors import Problem
from models.pages import Page, Params, as_text, keyset, keyset_page
from models.scope import TenantScope
from models.tables import Role
from models.tables import User as UserTable

# The response Structs below carry no docstring: it would become their OpenAPI description.


class TenantInfo(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str


class Me(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    role: str
    student_id: uuid.UUID | None
    tenant: TenantInfo


class Account(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    role: str
    student_id: uuid.UUID | None
    guardian_id: uuid.UUID | None
    is_active: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


ACCOUNT_COLUMNS = (
    "id, email, name, role, student_id, guardian_id, is_active, created_at, last_login_at"
)


class Owner(msgspec.Struct):
    """An academy's first account, as its bootstrap created it."""

    id: uuid.UUID
    email: str
    password_hash: str


class Holder(msgspec.Struct):
    """Who an account is, as a token carries it; whether it may still sign in, and the
    token version a token must carry to be honoured."""

    id: uuid.UUID
    tenant: uuid.UUID
    role: str
    student_id: uuid.UUID | None
    guardian_id: uuid.UUID | None
    is_active: bool
    token_version: int


class LoginCandidate(Holder):
    password_hash: str


HOLDER_COLUMNS = "u.id, u.tenant, u.role, u.student_id, u.guardian_id, u.is_active, u.token_version"


# --- log-in and the caller's own account ------------------------------------------------


async def login_candidates(email: str, tenant_slug: str | None) -> list[LoginCandidate]:
    """The accounts of ``email`` (in the academy ``tenant_slug`` only, when given)."""
    return await db.rows(
        LoginCandidate,
        f"""
        SELECT {HOLDER_COLUMNS}, u.password_hash
        FROM app_user u JOIN tenant t ON t.id = u.tenant
        WHERE u.email = $1 AND ($2::text IS NULL OR t.slug = $2)
        """,
        email,
        tenant_slug,
    )


async def holder(user_id: uuid.UUID) -> Holder | None:
    """The account as it is now (one look-up by primary key): what every request's token
    is checked against."""
    return await db.row(Holder, f"SELECT {HOLDER_COLUMNS} FROM app_user u WHERE u.id = $1", user_id)


async def touch_last_login(user_id: uuid.UUID) -> None:
    await db.execute("UPDATE app_user SET last_login_at = now() WHERE id = $1", user_id)


async def me(scope: TenantScope, user_id: uuid.UUID) -> Me:
    return await scope.one(
        Me,
        UserTable,
        """
        SELECT u.id, u.email, u.name, u.role, u.student_id,
               json_build_object('id', t.id, 'slug', t.slug, 'name', t.name) AS tenant
        FROM app_user u JOIN tenant t ON t.id = u.tenant
        WHERE u.tenant = $1 AND u.id = $2
        """,
        user_id,
    )


# --- accounts of an academy -------------------------------------------------------------

BY_EMAIL = keyset(("email", as_text))


async def list_accounts(
    scope: TenantScope, *, role: Role | None, cursor: str | None, limit: int
) -> Page[Account]:
    """The academy's accounts by e-mail (of one role, when given)."""
    params = Params()
    where = ["tenant = $1"]
    if role is not None:
        where.append(f"role = {params(role.value)}")
    return await keyset_page(
        scope,
        Account,
        select=f"SELECT {ACCOUNT_COLUMNS} FROM app_user",
        where=where,
        params=params,
        key=BY_EMAIL,
        cursor=cursor,
        limit=limit,
    )


async def get_account(scope: TenantScope, user_id: Any) -> Account:
    return await scope.one(
        Account,
        UserTable,
        f"SELECT {ACCOUNT_COLUMNS} FROM app_user WHERE tenant = $1 AND id = $2",
        user_id,
    )


async def email_taken(scope: TenantScope, email: str) -> bool:
    return bool(await scope.value("SELECT 1 FROM app_user WHERE tenant = $1 AND email = $2", email))


async def student_exists(scope: TenantScope, student_id: uuid.UUID) -> bool:
    """A student account may only point at a student of its academy that is not deleted."""
    return bool(
        await scope.value(
            "SELECT 1 FROM student WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL",
            student_id,
        )
    )


async def guardian_exists(scope: TenantScope, guardian_id: uuid.UUID) -> bool:
    return bool(
        await scope.value("SELECT 1 FROM guardian WHERE tenant = $1 AND id = $2", guardian_id)
    )


async def create_account(
    scope: TenantScope,
    *,
    email: str,
    name: str,
    role: Role,
    password_hash: str,
    student_id: uuid.UUID | None = None,
    guardian_id: uuid.UUID | None = None,
) -> Account:
    found = await scope.row(
        Account,
        f"""
        INSERT INTO app_user (id, tenant, email, name, role, password_hash, student_id,
                              guardian_id, is_active, created_at)
        VALUES ($2, $1, $3, $4, $5, $6, $7, $8, true, now())
        RETURNING {ACCOUNT_COLUMNS}
        """,
        uuid.uuid4(),
        email,
        name,
        role.value,
        password_hash,
        student_id,
        guardian_id,
    )
    assert found is not None  # INSERT ... RETURNING returns its row
    return found


async def update_account(
    scope: TenantScope,
    current: Account,
    *,
    name: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> Account:
    """Rename, change the role, (de)activate: ``None`` keeps a value. An academy keeps at
    least one active owner (409 otherwise); a deactivated account loses its sessions."""
    async with transaction():
        if current.role == Role.owner.value and (
            (role is not None and role != Role.owner) or is_active is False
        ):
            owners = await scope.value(
                "SELECT count(*) FROM app_user WHERE tenant = $1 AND role = $2 AND is_active",
                Role.owner.value,
            )
            if owners <= 1:
                raise Problem(409, "an academy keeps at least one active owner")
        if (name, role, is_active) != (None, None, None):
            await scope.execute(
                """
                UPDATE app_user SET name = COALESCE($3, name), role = COALESCE($4, role),
                       is_active = COALESCE($5, is_active)
                WHERE tenant = $1 AND id = $2
                """,
                current.id,
                name,
                role.value if role is not None else None,
                is_active,
            )
        if is_active is False:
            await revoke_sessions(scope, current.id)
    return await get_account(scope, current.id)


async def set_password(scope: TenantScope, user_id: uuid.UUID, password_hash: str) -> None:
    """A new password ends every session of the account."""
    async with transaction():
        await scope.execute(
            "UPDATE app_user SET password_hash = $3 WHERE tenant = $1 AND id = $2",
            user_id,
            password_hash,
        )
        await revoke_sessions(scope, user_id)


# --- academies --------------------------------------------------------------------------


async def tenant_id(slug: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await db.value("SELECT id FROM tenant WHERE slug = $1", slug)
    return found


async def create_tenant(
    name: str, slug: str, owner_email: str, password_hash: str
) -> tuple[TenantInfo, Owner]:
    """The academy and its owner account, in one transaction. Refuses (ValueError) a
    slug that is taken, so running it twice creates nothing twice."""
    async with transaction():
        if await tenant_id(slug) is not None:
            raise ValueError(f"a tenant with slug {slug!r} already exists")
        tenant = await db.row(
            TenantInfo,
            "INSERT INTO tenant (id, slug, name, created_at) VALUES ($1, $2, $3, now()) "
            "RETURNING id, slug, name",
            uuid.uuid4(),
            slug,
            name,
        )
        assert tenant is not None  # INSERT ... RETURNING returns its row
        owner = await create_account(
            TenantScope(tenant.id),
            email=owner_email,
            name="Owner",
            role=Role.owner,
            password_hash=password_hash,
        )
    return tenant, Owner(id=owner.id, email=owner.email, password_hash=password_hash)


async def ensure_tenant(slug: str, name: str) -> uuid.UUID:
    """The id of the academy ``slug``, created (named ``name``) if it does not exist."""
    found = await tenant_id(slug)
    if found is not None:
        return found
    await db.execute(
        "INSERT INTO tenant (id, slug, name, created_at) VALUES (gen_random_uuid(), $1, $2, now()) "
        "ON CONFLICT (slug) DO NOTHING",
        slug,
        name,
    )
    found = await tenant_id(slug)
    assert found is not None  # inserted above, or by a concurrent caller
    return found


async def set_password_by_email(tenant_slug: str, email: str, password_hash: str) -> None:
    await db.execute(
        "UPDATE app_user SET password_hash = $3 "
        "WHERE email = $2 AND tenant = (SELECT id FROM tenant WHERE slug = $1)",
        tenant_slug,
        email,
        password_hash,
    )
