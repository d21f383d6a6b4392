"""Korean text helpers: initial-consonant (초성) keys for search, and phone numbers.

Phone numbers go through Google's libphonenumber (``phonenumbers``); nothing here keeps
its own table of Korean prefixes.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from zoneinfo import ZoneInfo

import phonenumbers

KST = ZoneInfo("Asia/Seoul")


def today_kst() -> dt.date:
    """Today in Korea: an academy's "today" (the server's clock is usually UTC)."""
    return dt.datetime.now(KST).date()


# Hangul syllables are laid out as ((initial * 21) + medial) * 28 + final from U+AC00.
_SYLLABLE_FIRST, _SYLLABLE_LAST = 0xAC00, 0xD7A3
_INITIALS = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_COMPAT_JAMO = set(_INITIALS)


# Every syllable to its initial, every whitespace character (all below U+3001) to nothing:
# one ``str.translate`` does in C what a loop over the characters did (an import computes
# the key of every new student).
_TO_INITIALS: dict[int, str | None] = {
    code: _INITIALS[(code - _SYLLABLE_FIRST) // 588]
    for code in range(_SYLLABLE_FIRST, _SYLLABLE_LAST + 1)
} | {code: None for code in range(0x3001) if chr(code).isspace()}


def initials(text: str) -> str:
    """The 초성 of every Hangul syllable (``김민수`` → ``ㄱㅁㅅ``); other characters are
    kept as they are, lower-cased one by one (a final ``Σ`` is ``σ``, not ``ς``), so
    mixed names still match."""
    kept = text.translate(_TO_INITIALS)
    # str.lower() maps characters one by one, but for the capital sigma (Final_Sigma).
    return kept.lower() if "Σ" not in kept else "".join(ch.lower() for ch in kept)


def is_initials_query(text: str) -> bool:
    """True when the query is made only of initial consonants (``ㄱㅁㅅ``)."""
    stripped = text.replace(" ", "")
    return bool(stripped) and all(ch in _COMPAT_JAMO for ch in stripped)


def clean_text(text: str, limit: int | None = None) -> str:
    """NFKC (full-width → half-width), collapsed whitespace, trimmed.

    NFKC can lengthen a text (``¸`` is a space and a combining cedilla), so a text that
    fits its column as typed may not once normalised: with ``limit`` (the column's length),
    such a text is kept as typed, only its whitespace collapsed, which never lengthens it."""
    normalised = " ".join(unicodedata.normalize("NFKC", text).split())
    if limit is not None and len(normalised) > limit:
        return " ".join(text.split())
    return normalised


def phone_tail(text: str) -> str | None:
    """The digits of a search that is only a fragment of a phone number (three digits or
    more, dashes and spaces allowed), or None for any other search. ``text`` is cleaned."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if digits and len(digits) == len(text.replace("-", "").replace(" ", "")) and len(digits) >= 3:
        return digits
    return None


class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str) -> str:
    """Canonical Korean mobile/landline form: ``010-1234-5678``, ``02-123-4567``.

    Accepts ``01012345678``, ``010.1234.5678``, ``+82 10-1234-5678`` and the
    ``1012345678`` that spreadsheets leave after dropping the leading zero.
    """
    text = clean_text(str(raw))
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        raise InvalidPhone("phone number is empty")
    if text.startswith("+") or (digits.startswith("82") and len(digits) >= 11):
        candidate = "+" + digits
    elif digits.startswith("1") and len(digits) in (9, 10):
        candidate = "0" + digits  # the leading 0 a spreadsheet dropped
    else:
        candidate = digits
    try:
        number = phonenumbers.parse(candidate, "KR")
    except phonenumbers.NumberParseException:
        raise InvalidPhone(f"not a phone number: {raw!r}") from None
    if number.country_code != 82 or not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"not a valid Korean phone number: {raw!r}")
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return formatted.replace(" ", "-")


def phone_digits(canonical: str) -> str:
    return "".join(ch for ch in canonical if ch.isdigit())
