"""Accounts of an academy: staff, and the student/parent accounts of the family app.

Owners manage every role; admins manage teachers, staff, students and parents (not owners
or other admins). A student account points at its student; a parent account at its
guardian record, and through it sees every linked child.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from api import rules
from api.auth import Principal, require_admin
from api.errors import Problem
from api.list_cache import ACCOUNT_STATE
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models import accounts
from models.accounts import Account
from models.limits import EMAIL, SECRET_MAX, TITLE_MAX, Name
from models.pages import Page
from models.scope import TenantScope
from models.tables import Role
from ops.passwords import MIN_PASSWORD_LENGTH, hash_password

MANAGED_BY: dict[Role, frozenset[Role]] = {
    Role.owner: frozenset(Role),
    Role.admin: frozenset({Role.teacher, Role.staff, Role.student, Role.parent}),
}


# Litestar names a generic component after its argument's module: this page was published
# as "Page_api.users.Account_" while Account was defined here, and keeps that name.
AccountPage = Annotated[Page[Account], page_schema(Account)]


Email = Annotated[str, msgspec.Meta(max_length=TITLE_MAX, pattern=EMAIL)]
Password = Annotated[str, msgspec.Meta(min_length=MIN_PASSWORD_LENGTH, max_length=SECRET_MAX)]


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Role
    name: Name = ""
    password: Password | None = None  # generated (and returned once) when omitted
    student_id: uuid.UUID | None = None
    guardian_id: uuid.UUID | None = None


class AccountUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    role: Role | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True):
    password: Password | None = None


class AccountCreated(msgspec.Struct):
    account: Account
    password: str | None  # only when generated


def _may_manage(principal: Principal, role: Role) -> None:
    if role not in MANAGED_BY.get(principal.role, frozenset()):
        raise Problem(403, f"a {principal.role.value} cannot manage {role.value} accounts")


async def _check_links(
    scope: TenantScope, role: Role, student_id: uuid.UUID | None, guardian_id: uuid.UUID | None
) -> list[dict[str, str]]:
    errors = []
    if role == Role.student:
        if student_id is None:
            errors.append({"field": "student_id", "message": "required for a student account"})
        elif not await accounts.student_exists(scope, student_id):
            errors.append({"field": "student_id", "message": "no such student in this academy"})
    elif student_id is not None:
        errors.append({"field": "student_id", "message": "only for student accounts"})
    if role == Role.parent:
        if guardian_id is None:
            errors.append({"field": "guardian_id", "message": "required for a parent account"})
        elif not await accounts.guardian_exists(scope, guardian_id):
            errors.append({"field": "guardian_id", "message": "no such guardian in this academy"})
    elif guardian_id is not None:
        errors.append({"field": "guardian_id", "message": "only for parent accounts"})
    return errors


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    guards = [require_admin]

    @get("/", summary="Accounts, by e-mail")
    async def list(
        self,
        tenant_scope: NamedDependency[TenantScope],
        role: FromQuery[Role | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> AccountPage:
        return await accounts.list_accounts(
            tenant_scope, role=role, cursor=cursor, limit=check_limit(limit)
        )

    @post("/", opt=rules.ACCOUNT_CREATE, status_code=HTTP_201_CREATED, summary="Create an account")
    async def create(
        self,
        data: JSONBody[AccountCreate],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> AccountCreated:
        _may_manage(principal, data.role)
        email = data.email.strip().lower()
        errors = await _check_links(tenant_scope, data.role, data.student_id, data.guardian_id)
        if errors:
            raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
        if await accounts.email_taken(tenant_scope, email):
            raise Problem(409, f"{email} already has an account in this academy")
        password = data.password or secrets.token_urlsafe(12)
        account = await accounts.create_account(
            tenant_scope,
            email=email,
            name=data.name.strip(),
            role=data.role,
            password_hash=hash_password(password),
            student_id=data.student_id,
            guardian_id=data.guardian_id,
        )
        return AccountCreated(account, None if data.password else password)

    @patch("/{user_id:str}", summary="Rename, change role, (de)activate")
    async def update(
        self,
        user_id: FromPath[str],
        data: JSONBody[AccountUpdate],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Account:
        current = await accounts.get_account(tenant_scope, user_id)
        _may_manage(principal, Role(current.role))
        name: str | None = None
        role: Role | None = None
        is_active: bool | None = None
        if data.name is not msgspec.UNSET:
            name = data.name.strip()
        if data.role is not msgspec.UNSET:
            _may_manage(principal, data.role)
            if {Role(current.role), data.role} & {
                Role.student,
                Role.parent,
            } and data.role != current.role:
                raise Problem(422, "role: family accounts keep their role; create a new account",
                                       errors=[{"field": "role", "message": "cannot change to or from student/parent"}])  # fmt: skip
            role = data.role
        if data.is_active is not msgspec.UNSET:
            if current.id == principal.user_id and not data.is_active:
                raise Problem(409, "you cannot deactivate your own account")
            is_active = data.is_active
        updated = await accounts.update_account(
            tenant_scope, current, name=name, role=role, is_active=is_active
        )
        ACCOUNT_STATE.invalidate(principal.tenant_id)  # this process's next request sees it
        return updated

    @post("/{user_id:str}/password", status_code=200, summary="Set or generate a new password")
    async def reset_password(
        self,
        user_id: FromPath[str],
        data: JSONBody[PasswordReset],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> AccountCreated:
        current = await accounts.get_account(tenant_scope, user_id)
        _may_manage(principal, Role(current.role))
        password = data.password or secrets.token_urlsafe(12)
        await accounts.set_password(tenant_scope, current.id, hash_password(password))
        ACCOUNT_STATE.invalidate(principal.tenant_id)
        return AccountCreated(current, None if data.password else password)


CONTROLLERS: list[type[Controller]] = [UserController]
