import pytest

from pipelines.korean import InvalidPhone, clean_text, initials, is_initials_query, normalize_phone


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("01012345678", "010-1234-5678"),
        ("010-1234-5678", "010-1234-5678"),
        ("010.1234.5678", "010-1234-5678"),
        ("010 1234 5678", "010-1234-5678"),
        ("+82 10-1234-5678", "010-1234-5678"),
        ("+821012345678", "010-1234-5678"),
        ("821012345678", "010-1234-5678"),
        ("1012345678", "010-1234-5678"),  # a spreadsheet dropped the leading 0
        ("１０１２３４５６７８", "010-1234-5678"),  # full-width digits
        ("02-123-4567", "02-123-4567"),
        ("0212345678", "02-1234-5678"),
        ("031-123-4567", "031-123-4567"),
    ],
)
def test_normalize_phone(raw, canonical):
    assert normalize_phone(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["", "abc", "010-1234", "12345", "+1 415 555 0100", "010-1234-56789"]
)
def test_invalid_phones_are_rejected(raw):
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


def test_initials():
    assert initials("김민수") == "ㄱㅁㅅ"
    assert initials("쌍둥이") == "ㅆㄷㅇ"
    assert initials("Kim 민수") == "kimㅁㅅ"
    assert is_initials_query("ㄱㅁㅅ") and is_initials_query("ㄱ ㅁ")
    assert not is_initials_query("김ㅁㅅ") and not is_initials_query("")


def _initials_char_by_char(text: str) -> str:
    """The rule as first written: one character at a time."""
    out = []
    for ch in text:
        if 0xAC00 <= ord(ch) <= 0xD7A3:
            out.append("ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"[(ord(ch) - 0xAC00) // 588])
        elif not ch.isspace():
            out.append(ch.lower())
    return "".join(out)


def test_initials_agrees_with_the_rule_char_by_char_on_every_character():
    every = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert [initials(ch) for ch in every] == [_initials_char_by_char(ch) for ch in every]
    for text in ("ΣΑΣ 김Σ", "İstanbul 이Σ\u3000수", "a\u2028b\x1fc", "ΌΣΟΣ", "Σ"):
        assert initials(text) == _initials_char_by_char(text), text


def test_clean_text():
    assert clean_text("  김　민수 ") == "김 민수"  # ideographic space
    assert clean_text("ＡＢＣ１２") == "ABC12"


def test_clean_text_keeps_a_text_that_normalising_would_lengthen_past_its_limit():
    typed = "ab¸¸"  # a cedilla is a space and a combining cedilla once normalised
    assert len(clean_text(typed)) == 6
    assert clean_text(typed, limit=5) == typed
    assert clean_text(typed, limit=6) == "ab ̧ ̧"
    assert clean_text("  ＡＢ  ", limit=2) == "AB"
