"""BOLA (broken object level authorization) matrix: every id-addressed endpoint must keep
each tenant's objects invisible to every other tenant.

To cover a new endpoint, register it here with a factory that creates one object in the
given tenant and returns its id::

    @bola_case("PATCH", "/api/v1/students/{id}", json={"name": "x"},
               read_path="/api/v1/students/{id}")
    async def _student(tenant: TenantCtx) -> str:
        ...
        return str(student.id)

``tests/integration/test_tenancy.py`` runs every registered case: the owner gets a 2xx on
its own object; another tenant gets the same 404 problem a non-existent id gets (never the
object, never a hint that it exists), and cannot change it; a malformed id is a 404 too.
The teacher column: a case under ``LECTURE_RESOURCE_PATHS`` is run again with a teacher of
the same academy who does not teach the lecture in place of the other tenant.

A route addressed by two ids (``/api/v1/sessions/{session_id}/attendance/{student_id}``)
is registered with every parameter written ``{id}``, and a factory returning a dict of ids
in the order the path names them; the first ``{id}`` takes the first value, and so on (a
``read_path`` takes as many as it has placeholders)::

    @bola_case("PUT", "/api/v1/sessions/{id}/attendance/{id}", json={"status": "absent"})
    async def _check(tenant: TenantCtx) -> dict[str, str]:
        ...
        return {"session_id": str(session.id), "student_id": str(student_id)}

Endpoints that are not addressed by an id (``GET /api/v1/auth/me``) do not belong here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from tests.conftest import TenantCtx

PROBLEM_JSON = "application/problem+json"
NOT_FOUND_TYPE = "/problems/not-found"

# One id, or several (a dict, in the order the path names them) for a two-id route.
Ids = str | dict[str, str]
Factory = Callable[["TenantCtx"], Awaitable[Ids]]


def fill_path(template: str, ids: Ids) -> str:
    """``template`` with its ``{id}`` placeholders filled: all with ``ids`` when it is one
    id; the first with the dict's first value, the second with its second... when it is a
    dict of ids."""
    if isinstance(ids, str):
        return template.format(id=ids)
    values = iter(ids.values())
    return re.sub(r"\{id\}", lambda _: next(values), template)


@dataclass(frozen=True)
class BolaCase:
    method: str
    path: str  # a template with ``{id}`` (once per path parameter)
    factory: Factory  # creates one object in the tenant it is given; returns its id(s)
    json: Any = None
    # A GET path (template with ``{id}``) showing the object: for a write, the owner's view
    # must be the same before and after the other tenant's attempt.
    read_path: str | None = None
    # Statuses another tenant may get. 404 only: a 403 would confirm that the id exists.
    foreign_statuses: tuple[int, ...] = (404,)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def of_a_lecture(self) -> bool:
        """A lecture's own resource: a teacher who does not teach it must not reach it."""
        return self.path.startswith(LECTURE_RESOURCE_PATHS)


# The routes of what belongs to one lecture (sessions, attendance, exams, scores, scans,
# videos, their exports): the teacher column of the matrix covers every case under them.
LECTURE_RESOURCE_PATHS = (
    "/api/v1/sessions/",
    "/api/v1/lectures/{id}/sessions",
    "/api/v1/lectures/{id}/attendance",
    "/api/v1/lectures/{id}/exams",
    "/api/v1/exams/",
    "/api/v1/videos/",
    "/api/v1/omr/batches/",
    "/api/v1/omr/pages/",
    "/api/v1/exports/exams/",
    "/api/v1/exports/lectures/",
)


BOLA_PATHS: list[BolaCase] = []


def bola_case(
    method: str,
    path: str,
    *,
    json: Any = None,
    read_path: str | None = None,
    foreign_statuses: tuple[int, ...] = (404,),
) -> Callable[[Factory], Factory]:
    """Register ``method path`` with the decorated factory in ``BOLA_PATHS``."""
    if "{id}" not in path:
        raise ValueError(f"{path!r} is not addressed by an id; it has no place in BOLA_PATHS")

    def register(factory: Factory) -> Factory:
        BOLA_PATHS.append(
            BolaCase(method.upper(), path, factory, json, read_path, foreign_statuses)
        )
        return factory

    return register


async def _request(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    json: Any,
) -> httpx.Response:
    return await client.request(method, path, headers=headers, json=json)


def assert_problem(response: httpx.Response, status: int, type_: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body = response.json()
    assert body["status"] == status, body
    if type_ is not None:
        assert body["type"] == type_, body


async def assert_tenant_isolated(
    client: httpx.AsyncClient,
    method: str,
    path_template: str,
    owner_headers: dict[str, str],
    other_headers: dict[str, str],
    object_id: Ids,
    json: Any = None,
    *,
    read_path: str | None = None,
    foreign_statuses: tuple[int, ...] = (404,),
) -> None:
    """Another tenant cannot see or change ``object_id``; its owner can.

    The other tenant goes first, so a DELETE or PATCH meets the object as created. Its
    answer must match the answer for an id that exists nowhere, so ids cannot be probed.
    """
    path = fill_path(path_template, object_id)
    read = fill_path(read_path, object_id) if read_path else None

    before = await client.get(read, headers=owner_headers) if read else None
    if before is not None:
        assert before.status_code == 200, before.text

    foreign = await _request(client, method, path, other_headers, json)
    assert foreign.status_code in foreign_statuses, (
        f"{method} {path_template} with another tenant's token: "
        f"{foreign.status_code} {foreign.text}"
    )
    assert foreign.headers["content-type"].startswith(PROBLEM_JSON), foreign.headers
    if foreign.status_code == 404:
        # Indistinguishable from an id that exists nowhere.
        missing_id: Ids = (
            str(uuid.uuid4())
            if isinstance(object_id, str)
            else {key: str(uuid.uuid4()) for key in object_id}
        )
        missing = await _request(
            client, method, fill_path(path_template, missing_id), other_headers, json
        )
        assert_problem(missing, 404, NOT_FOUND_TYPE)
        seen, expected = foreign.json(), missing.json()
        for key in ("type", "title", "status"):
            assert seen[key] == expected[key], (seen, expected)
        assert _without_ids(seen["detail"], object_id) == _without_ids(
            expected["detail"], missing_id
        ), (seen, expected)

    if before is not None:
        after = await client.get(read, headers=owner_headers)  # type: ignore[arg-type]
        assert after.status_code == 200, after.text
        assert after.json() == before.json(), "another tenant's request changed the object"

    own = await _request(client, method, path, owner_headers, json)
    assert 200 <= own.status_code < 300, (
        f"{method} {path_template} with the owner's token: {own.status_code} {own.text}"
    )


def _without_ids(text: str, ids: Ids) -> str:
    for value in [ids] if isinstance(ids, str) else ids.values():
        text = text.replace(value, "{id}")
    return text


async def assert_malformed_id_not_found(
    client: httpx.AsyncClient,
    method: str,
    path_template: str,
    headers: dict[str, str],
    json: Any = None,
) -> None:
    """A malformed id is a plain 404 problem (not a 400/422/500 that tells ids apart)."""
    for bad in ("not-a-uuid", "1", "00000000-0000-0000-0000-00000000000g"):
        response = await _request(client, method, path_template.format(id=bad), headers, json)
        assert_problem(response, 404, NOT_FOUND_TYPE)


# --- the registry ----------------------------------------------------------------------


@bola_case("GET", "/api/v1/jobs/{id}")
async def _job(tenant: TenantCtx) -> str:
    """A probe job (needs the session's ``broker`` fixture: ``submit`` sends after commit)."""
    from actors.jobs import submit
    from actors.system import PROBES

    row = await submit(PROBES["video"], tenant_id=tenant.id, kind="probe")
    return str(row.id)


def _load_domain_cases() -> None:
    """Each domain registers its cases in ``tests/bola_cases/<domain>.py``."""
    import importlib
    import pkgutil

    import tests.bola_cases as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


_load_domain_cases()
