"""EUC-KR byte counting, the SMS/LMS choice and its limits, emoji handling."""

from __future__ import annotations

import pytest

from pipelines.messaging.text import (
    Channel,
    MessageTextError,
    byte_length,
    prepare_sms,
    strip_unencodable,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", 1),
        ("가", 2),
        ("가a", 3),
        ("똠", 2),  # outside KS X 1001, still two bytes (carriers accept it)
        ("[학원] 12:30", len("[학원] 12:30".encode("cp949"))),
        ("", 0),
    ],
)
def test_byte_length(text, expected):
    assert byte_length(text) == expected


@pytest.mark.parametrize(
    ("body", "channel"),
    [
        ("가" * 45, Channel.sms),  # 90 bytes: the SMS limit exactly
        ("가" * 46, Channel.lms),  # 92 bytes
        ("a" * 90, Channel.sms),
        ("a" * 91, Channel.lms),
        ("가" * 44 + "ab", Channel.sms),  # mixed, 90 bytes
        ("가" * 44 + "abc", Channel.lms),  # mixed, 91 bytes
        ("가" * 45 + "a", Channel.lms),
    ],
)
def test_sms_limit_at_the_boundary(body, channel):
    prepared = prepare_sms(body)
    assert prepared.channel == channel
    assert prepared.body == body


def test_a_subject_makes_it_lms():
    assert prepare_sms("짧은 글", "공지").channel == Channel.lms


@pytest.mark.parametrize("body", ["가" * 1000, "a" * 2000, "가" * 999 + "ab"])
def test_lms_body_limit_accepts_2000_bytes(body):
    prepared = prepare_sms(body)
    assert prepared.channel == Channel.lms and prepared.body_bytes == 2000


@pytest.mark.parametrize("body", ["가" * 1001, "a" * 2001, "가" * 1000 + "a"])
def test_lms_body_over_2000_bytes_is_refused(body):
    with pytest.raises(MessageTextError) as exc:
        prepare_sms(body)
    assert exc.value.code == "too_long"
    assert "2000" in str(exc.value)


@pytest.mark.parametrize(("subject", "ok"), [("가" * 20, True), ("a" * 40, True),
                                             ("가" * 20 + "a", False), ("a" * 41, False)])  # fmt: skip
def test_lms_subject_limit(subject, ok):
    if ok:
        assert prepare_sms("본문", subject).subject_bytes == 40
    else:
        with pytest.raises(MessageTextError) as exc:
            prepare_sms("본문", subject)
        assert exc.value.code == "subject_too_long"


def test_emoji_is_refused_with_a_clear_error():
    with pytest.raises(MessageTextError) as exc:
        prepare_sms("오늘 수업 잘 들었어요 😀 감사합니다")
    assert exc.value.code == "unencodable"
    message = str(exc.value)
    assert "U+1F600" in message and "EUC-KR" in message


def test_emoji_is_stripped_when_the_template_allows_it():
    prepared = prepare_sms("합격 축하 🎉👨‍👩‍👧!", strip=True)
    assert prepared.body == "합격 축하 !"
    assert prepared.stripped == 6  # 🎉, and the family: three people and two joiners
    assert prepared.channel == Channel.sms


def test_stripping_counts_bytes_after_removal():
    # 45 Hangul plus an emoji: SMS once the emoji is gone.
    assert prepare_sms("가" * 45 + "😀", strip=True).channel == Channel.sms


def test_text_made_only_of_emoji_is_empty_after_stripping():
    with pytest.raises(MessageTextError) as exc:
        prepare_sms("😀😀", strip=True)
    assert exc.value.code == "empty"


def test_strip_keeps_everything_encodable():
    text = "가나다 ABC 123 ※ ☆"
    assert strip_unencodable(text) == text
