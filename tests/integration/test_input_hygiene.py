"""What a careless or hostile client may send: control characters in any text, dates far
out of range, over-long text, bodies over the upload limit. Each is a 4xx naming what is
wrong, never a 500."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from models.limits import NAME_MAX, TEXT_MAX
from models.pages import encode_cursor
from ops.settings import get_settings
from tests.bola import assert_problem
from tests.factories import student_payload
from tests.factories.grades import create_exam, create_lecture

STUDENTS = "/api/v1/students"
VALIDATION = "/problems/validation"


def fields(response: Any) -> dict[str, str]:
    """``field -> source`` of a 422's errors."""
    return {e["field"]: e.get("source", "") for e in response.json()["errors"]}


async def exam_with_a_card(tenant: Any, h: dict[str, str]) -> dict[str, Any]:
    """A five-question exam with the built-in answer card: ready for scans."""
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture, question_count=5, answer_key={"1": ["1"]})
    card = await tenant.client.post(
        "/api/v1/omr/templates/builtin", json={"name": "card", "questions": 5}, headers=h
    )
    r = await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card.json()["id"]}, headers=h
    )
    assert r.status_code == 200, r.text
    return exam


async def test_nul_and_control_characters_are_field_errors_not_500(tenant: Any) -> None:
    """Query, path, JSON body (nested, and without a token) and cursors alike."""
    h = await tenant.headers()
    client = tenant.client

    r = await client.get(STUDENTS, params={"q": "a\x00b"}, headers=h)
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"q": "query"}

    r = await client.get("/api/v1/sessions/a%00b/attendance/", headers=h)
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"session_id": "path"}

    r = await client.post(
        "/api/v1/auth/login", json={"email": "a\u0000b@x.com", "password": "whatever-1"}
    )
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"email": "body"}

    body = student_payload(memo="line one\nline\ttwo\x00", school="a\x07b")
    body["guardians"] = [{"phone": "010-1234-5678", "name": "x\x1fy"}]
    r = await client.post(STUDENTS, json=body, headers=h)
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"memo": "body", "school": "body", "guardians[0].name": "body"}

    cursor = encode_cursor(["a\x00b", str(uuid.uuid4())])
    r = await client.get(STUDENTS, params={"cursor": cursor}, headers=h)
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"cursor": ""}

    # Tab, newline and carriage return are text like any other.
    r = await client.post(STUDENTS, json=student_payload(memo="a\tb\r\nc"), headers=h)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("params", "field"),
    [({"date_to": "9999-12-31"}, "date_to"), ({"date_from": "0001-01-01"}, "date_from")],
)
async def test_dates_out_of_range_are_field_errors_not_500(
    tenant: Any, params: dict[str, str], field: str
) -> None:
    h = await tenant.headers()
    r = await tenant.client.get("/api/v1/messaging/messages", params=params, headers=h)
    assert_problem(r, 422, VALIDATION)
    assert field in fields(r)

    r = await tenant.client.post(
        STUDENTS, json=student_payload(birth_date=params[field]), headers=h
    )
    assert_problem(r, 422, VALIDATION)
    assert "birth_date" in fields(r)

    ok = {"date_from": "1900-01-01", "date_to": "2200-12-31"}
    r = await tenant.client.get("/api/v1/messaging/messages", params=ok, headers=h)
    assert r.status_code == 200, r.text


async def test_free_text_has_a_maximum_length(tenant: Any) -> None:
    h = await tenant.headers()
    r = await tenant.client.post(STUDENTS, json=student_payload(memo="x" * 1_000_000), headers=h)
    assert r.status_code == 422, r.text[:200]
    assert "memo" in fields(r)

    r = await tenant.client.post(
        STUDENTS, json=student_payload(memo="x" * TEXT_MAX, school="y" * (NAME_MAX + 1)), headers=h
    )
    assert r.status_code == 422, r.text[:200]
    assert fields(r) == {"school": "body"}


async def test_a_chunked_json_upload_is_refused_as_it_streams(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body with no Content-Length over the limit is refused while it arrives: the
    server stops reading near the limit instead of taking the whole body first."""
    small = dataclasses.replace(get_settings(), omr_max_upload_bytes=1024 * 1024)
    monkeypatch.setattr("api.omr.get_settings", lambda: small)
    h = await tenant.headers()
    chunk = 64 * 1024
    total = 147 * 1024 * 1024
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        head = b'{"files": [{"filename": "a.png", "content_base64": "'
        sent += len(head)
        yield head
        piece = base64.b64encode(b"\0" * (chunk // 4 * 3))
        while sent < total:
            sent += len(piece)
            yield piece
        yield b'"}]}'

    exam = await exam_with_a_card(tenant, h)
    r = await tenant.client.post(
        f"/api/v1/exams/{exam['id']}/scans",
        content=body(),
        headers={**h, "Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert sent < 4 * small.omr_max_upload_bytes, f"read {sent} bytes before refusing"


async def test_text_that_normalising_lengthens_still_fits_its_column(tenant: Any) -> None:
    """NFKC turns a cedilla into two characters: a 16-character grade of them must not
    overflow the 16-character column (it was a 500)."""
    h = await tenant.headers()
    grade = "중" + "¸" * 15
    r = await tenant.client.post(STUDENTS, json=student_payload(grade=grade), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["grade"] == grade
    r = await tenant.client.patch(f"{STUDENTS}/{r.json()['id']}", json={"grade": "ＡＢ"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["grade"] == "AB"


async def test_a_json_body_has_json_types(tenant: Any) -> None:
    """The schema says boolean and integer: ``0`` is not ``false``, ``"1"`` not a number."""
    h = await tenant.headers()
    body = {**student_payload(), "birth_date": None}
    r = await tenant.client.post(STUDENTS, json={**body, "guardians": [
        {"phone": "010-1234-5678", "is_primary": 0}]}, headers=h)  # fmt: skip
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"guardians[0].is_primary": "body"}
    r = await tenant.client.post(
        "/api/v1/omr/templates/builtin", json={"questions": "20", "choices": 4}, headers=h
    )
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"questions": "body"}


async def test_a_json_scan_upload_keeps_the_text_rules(tenant: Any) -> None:
    """The scan upload reads its JSON body itself: a NUL in a file name is a field error
    (it was a 500 when the batch was stored)."""
    h = await tenant.headers()
    exam = await exam_with_a_card(tenant, h)
    r = await tenant.client.post(
        f"/api/v1/exams/{exam['id']}/scans",
        json={"files": [{"filename": "a\x00.png", "content_base64": "AAAA"}]},
        headers=h,
    )
    assert_problem(r, 422, VALIDATION)
    assert fields(r) == {"files[0].filename": "body"}
