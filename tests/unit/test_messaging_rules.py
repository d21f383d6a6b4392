"""Templates, the advertising night block and opt-out line, composing per recipient,
prices, credentials at rest and signatures."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid

import pytest

from ops.settings import get_settings
from pipelines.messaging import cost, policy
from pipelines.messaging.compose import Recipient, Spec, compose, family, values_for
from pipelines.messaging.credentials import Credentials, CredentialsError, decrypt, encrypt
from pipelines.messaging.signing import (
    sign_webhook,
    solapi_authorization,
    verify_webhook,
)
from pipelines.messaging.templates import TemplateError, check_template, render, variables_of
from pipelines.messaging.text import Channel

KST = policy.KST


# --- templates ---


def test_render_fills_every_placeholder():
    assert render("#{학생} 학생 #{날짜} 결석 (#{학생})", {"학생": "김민수", "날짜": "3월 2일"}) == (
        "김민수 학생 3월 2일 결석 (김민수)"
    )


def test_missing_variable_fails_loudly_naming_every_one():
    with pytest.raises(TemplateError) as exc:
        render("#{학생} #{시험} #{점수}", {"학생": "김민수", "점수": ""})
    assert exc.value.code == "missing_variable"
    assert exc.value.missing == ["시험", "점수"]
    assert "#{시험}" in str(exc.value) and "#{점수}" in str(exc.value)


def test_variables_in_order_once():
    assert variables_of("#{b} #{a} #{b}") == ["b", "a"]


@pytest.mark.parametrize("bad", ["#{이름", "#{ 이름 }", "안녕 #{}"])
def test_malformed_placeholders_are_refused(bad):
    with pytest.raises(TemplateError):
        check_template(bad)


# --- advertising ---


@pytest.mark.parametrize(
    ("hhmm", "night"),
    [((20, 49), False), ((20, 50), True), ((23, 0), True), ((0, 0), True), ((7, 59), True),
     ((8, 0), False), ((12, 0), False)],
)  # fmt: skip
def test_night_block_boundaries(hhmm, night):
    at = dt.datetime(2026, 3, 2, *hhmm, tzinfo=KST)
    assert policy.is_night(at) is night
    if night:
        with pytest.raises(policy.AdvertisingBlocked) as exc:
            policy.check_advertising_time(at)
        assert exc.value.next_allowed.time() == dt.time(8, 0)
    else:
        policy.check_advertising_time(at)


def test_next_allowed_is_the_next_8am_in_korea():
    evening = dt.datetime(2026, 3, 2, 21, 30, tzinfo=KST)
    assert policy.next_allowed(evening) == dt.datetime(2026, 3, 3, 8, 0, tzinfo=KST)
    early = dt.datetime(2026, 3, 2, 6, 0, tzinfo=KST)
    assert policy.next_allowed(early) == dt.datetime(2026, 3, 2, 8, 0, tzinfo=KST)
    # UTC input: 12:00 UTC is 21:00 KST.
    assert policy.is_night(dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC))


def test_advertising_marks_are_added_once():
    marked = policy.with_advertising_marks("봄학기 등록 안내", "080-123-4567")
    assert marked.startswith("(광고) ") and marked.endswith("무료수신거부 080-123-4567")
    assert policy.with_advertising_marks(marked, "080-123-4567") == marked


# --- composing ---


def _recipient() -> Recipient:
    return Recipient("010-2345-6789", uuid.uuid4(), uuid.uuid4(), "김민수", "박보호")


def test_compose_picks_lms_for_long_text_and_keeps_used_values():
    spec = Spec(kind="sms", body="#{학생} " + "가" * 50)
    values = values_for(_recipient(), "한빛학원", {"unused": "x"})
    c = compose(spec, _recipient(), values)
    assert not c.error and c.channel == Channel.lms
    assert c.variables == {"학생": "김민수"}


def test_compose_reports_a_missing_variable_instead_of_sending():
    c = compose(Spec(kind="sms", body="#{학생} #{시험}"), _recipient(), {"학생": "김민수"})
    assert c.error_code == "missing_variable" and "#{시험}" in c.error


def test_compose_advertising_adds_prefix_and_opt_out():
    spec = Spec(kind="sms", body="특강 안내", advertising=True, opt_out_number="080-000-1111")
    c = compose(spec, _recipient(), {})
    assert c.body == "(광고) 특강 안내\n무료수신거부 080-000-1111"


def test_alimtalk_keeps_emoji_for_kakao():
    spec = Spec(kind="alimtalk", body="#{학생} 출석 😀", kakao_template_id="T1")
    c = compose(spec, _recipient(), {"학생": "김민수"})
    assert not c.error and c.channel == Channel.alimtalk and "😀" in c.body


def test_key_family():
    assert family(Channel.sms) == family(Channel.lms) == "text"
    assert family("alimtalk") == "alimtalk"


def test_cost_estimate():
    assert cost.estimate({Channel.sms: 2, Channel.lms: 1, Channel.alimtalk: 10}) == 220


# --- credentials ---


def test_credentials_round_trip_and_never_show_the_secret():
    creds = Credentials({"api_key": "NCS123456789", "api_secret": "topsecret-value-xyz"})
    token = encrypt(creds)
    assert "topsecret" not in token and "NCS123456789" not in token
    assert decrypt(token).values == creds.values
    assert "topsecret" not in repr(creds) and "topsecret" not in str(creds)
    assert creds.masked() == {"api_key": "••••6789", "api_secret": "••••"}


def test_credentials_under_another_key_cannot_be_read(monkeypatch):
    token = encrypt(Credentials({"api_key": "k", "api_secret": "s"}))
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MESSAGING_CREDENTIALS_KEYS", Fernet.generate_key().decode())
    get_settings.cache_clear()
    try:
        with pytest.raises(CredentialsError):
            decrypt(token)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_key_rotation_reads_old_tokens(monkeypatch):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("MESSAGING_CREDENTIALS_KEYS", old)
    get_settings.cache_clear()
    try:
        token = encrypt(Credentials({"api_key": "k", "api_secret": "s"}))
        monkeypatch.setenv("MESSAGING_CREDENTIALS_KEYS", f"{new},{old}")
        get_settings.cache_clear()
        assert decrypt(token).values == {"api_key": "k", "api_secret": "s"}
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


# --- signatures ---


def test_solapi_authorization_header_verifies_independently():
    header = solapi_authorization("KEY1", "SECRET1")
    m = re.match(
        r"^HMAC-SHA256 ApiKey=KEY1, Date=(?P<date>[^,]+), salt=(?P<salt>[0-9a-f]+), "
        r"signature=(?P<sig>[0-9a-f]{64})$",
        header,
    )
    assert m, header
    assert dt.datetime.fromisoformat(m["date"]).tzinfo is not None
    expected = hmac.new(b"SECRET1", (m["date"] + m["salt"]).encode(), hashlib.sha256).hexdigest()
    assert m["sig"] == expected
    assert solapi_authorization("KEY1", "SECRET1") != header  # a fresh salt every time


def test_webhook_signature_valid_forged_and_stale():
    body = b'[{"data":{"messageId":"M1","statusCode":"4000"}}]'
    header = sign_webhook("s3cret", body)
    assert verify_webhook("s3cret", body, header)
    assert not verify_webhook("other", body, header)
    assert not verify_webhook("s3cret", body + b" ", header)
    assert not verify_webhook("s3cret", body, "t=1,v1=" + "0" * 64)
    stale = sign_webhook("s3cret", body, at=1_000_000)
    assert not verify_webhook("s3cret", body, stale)
    assert not verify_webhook("s3cret", body, "garbage")
