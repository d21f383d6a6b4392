"""Accounts of an academy: staff, and the student/parent accounts of the family app.

Owners manage every role; admins manage teachers, staff, students and parents (not owners
or other admins). A student account points at its student; a parent account at its
guardian record, and through it sees every linked child.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED

from api.auth import Principal, require_admin
from api.errors import Problem
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import transaction
from models.pages import Page, decode_cursor, page_of
from models.scope import TenantScope
from models.tables import Guardian, RefreshToken, Role, Student, User
from ops.passwords import MIN_PASSWORD_LENGTH, hash_password

MANAGED_BY: dict[Role, frozenset[Role]] = {
    Role.owner: frozenset(Role),
    Role.admin: frozenset({Role.teacher, Role.staff, Role.student, Role.parent}),
}


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


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    role: Role
    name: str = ""
    password: str | None = None  # generated (and returned once) when omitted
    student_id: uuid.UUID | None = None
    guardian_id: uuid.UUID | None = None


class AccountUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    role: Role | msgspec.UnsetType = msgspec.UNSET
    is_active: bool | msgspec.UnsetType = msgspec.UNSET


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True):
    password: str | None = None


class AccountCreated(msgspec.Struct):
    account: Account
    password: str | None  # only when generated


def _account(row: dict[str, Any]) -> Account:
    return Account(**{f: row[f] for f in Account.__struct_fields__})


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
        elif (
            not await scope.select(Student, Student.id)
            .where((Student.id == student_id) & Student.deleted_at.is_null())
            .first()
        ):
            errors.append({"field": "student_id", "message": "no such student in this academy"})
    elif student_id is not None:
        errors.append({"field": "student_id", "message": "only for student accounts"})
    if role == Role.parent:
        if guardian_id is None:
            errors.append({"field": "guardian_id", "message": "required for a parent account"})
        elif (
            not await scope.select(Guardian, Guardian.id).where(Guardian.id == guardian_id).first()
        ):
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
    ) -> Page[Account]:
        limit = check_limit(limit)
        query = tenant_scope.select(User).order_by(User.email).limit(limit + 1)
        if role is not None:
            query = query.where(User.role == role.value)
        after = decode_cursor(cursor, 1)
        if after is not None:
            query = query.where(User.email > str(after[0]))
        rows = await query
        return page_of(rows, limit, lambda r: [r["email"]], _account)

    @post("/", status_code=HTTP_201_CREATED, summary="Create an account")
    async def create(
        self,
        data: JSONBody[AccountCreate],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> AccountCreated:
        _may_manage(principal, data.role)
        email = data.email.strip().lower()
        errors = await _check_links(tenant_scope, data.role, data.student_id, data.guardian_id)
        if "@" not in email or len(email) > 254:
            errors.append({"field": "email", "message": "not an e-mail address"})
        if data.password is not None and len(data.password) < MIN_PASSWORD_LENGTH:
            errors.append(
                {"field": "password", "message": f"at least {MIN_PASSWORD_LENGTH} characters"}
            )
        if errors:
            raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
        if await tenant_scope.select(User, User.id).where(User.email == email).first():
            raise Problem(409, f"{email} already has an account in this academy")
        password = data.password or secrets.token_urlsafe(12)
        row = tenant_scope.new(
            User,
            email=email,
            name=data.name.strip(),
            role=data.role.value,
            password_hash=hash_password(password),
            student_id=data.student_id,
            guardian_id=data.guardian_id,
        )
        await row.save()
        created = await tenant_scope.get(User, row.id)
        return AccountCreated(_account(created), None if data.password else password)

    @patch("/{user_id:str}", summary="Rename, change role, (de)activate")
    async def update(
        self,
        user_id: FromPath[str],
        data: JSONBody[AccountUpdate],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Account:
        current = await tenant_scope.get(User, user_id)
        _may_manage(principal, Role(current["role"]))
        values: dict[Any, Any] = {}
        if data.name is not msgspec.UNSET:
            values[User.name] = data.name.strip()
        if data.role is not msgspec.UNSET:
            _may_manage(principal, data.role)
            if {Role(current["role"]), data.role} & {
                Role.student,
                Role.parent,
            } and data.role != current["role"]:
                raise Problem(422, "role: family accounts keep their role; create a new account",
                                       errors=[{"field": "role", "message": "cannot change to or from student/parent"}])  # fmt: skip
            values[User.role] = data.role.value
        if data.is_active is not msgspec.UNSET:
            if current["id"] == principal.user_id and not data.is_active:
                raise Problem(409, "you cannot deactivate your own account")
            values[User.is_active] = data.is_active
        async with transaction():
            if current["role"] == Role.owner.value and (
                values.get(User.role, Role.owner.value) != Role.owner.value
                or values.get(User.is_active) is False
            ):
                owners = await tenant_scope.select(User, User.id).where(
                    (User.role == Role.owner.value) & (User.is_active.eq(True))
                )
                if len(owners) <= 1:
                    raise Problem(409, "an academy keeps at least one active owner")
            if values:
                await tenant_scope.update(User, values).where(User.id == current["id"])
            if values.get(User.is_active) is False:
                await _revoke_sessions(tenant_scope, current["id"])
        return _account(await tenant_scope.get(User, current["id"]))

    @post("/{user_id:str}/password", status_code=200, summary="Set or generate a new password")
    async def reset_password(
        self,
        user_id: FromPath[str],
        data: JSONBody[PasswordReset],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> AccountCreated:
        current = await tenant_scope.get(User, user_id)
        _may_manage(principal, Role(current["role"]))
        if data.password is not None and len(data.password) < MIN_PASSWORD_LENGTH:
            raise Problem(422, "password too short", errors=[
                {"field": "password", "message": f"at least {MIN_PASSWORD_LENGTH} characters"}])  # fmt: skip
        password = data.password or secrets.token_urlsafe(12)
        async with transaction():
            await tenant_scope.update(User, {User.password_hash: hash_password(password)}).where(
                User.id == current["id"]
            )
            await _revoke_sessions(tenant_scope, current["id"])
        return AccountCreated(_account(current), None if data.password else password)


async def _revoke_sessions(scope: TenantScope, user_id: Any) -> None:
    await scope.update(RefreshToken, {RefreshToken.revoked_at: dt.datetime.now(dt.UTC)}).where(
        (RefreshToken.user == user_id) & RefreshToken.revoked_at.is_null()
    )


CONTROLLERS: list[type[Controller]] = [UserController]
