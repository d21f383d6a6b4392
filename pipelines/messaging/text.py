"""Byte counting in EUC-KR and the SMS/LMS choice.

Korean carriers count message length in EUC-KR bytes: an ASCII character is 1 byte, a
Hangul syllable 2. We encode with Python's ``cp949`` codec: it is EUC-KR (KS X 1001, byte
for byte) plus the 8,822 modern Hangul syllables KS X 1001 lacks (똠, 햏, ...), which
carriers and providers accept as 2 bytes each; plain ``euc_kr`` would reject names written
with them. Characters neither can encode (emoji, most symbols outside KS X 1001) cannot be
sent by SMS/LMS: they are rejected, or stripped when the template allows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

CODEC = "cp949"
SMS_MAX_BYTES = 90
LMS_SUBJECT_MAX_BYTES = 40
LMS_MAX_BYTES = 2000


class Channel(str, Enum):
    sms = "sms"
    lms = "lms"
    alimtalk = "alimtalk"


class MessageTextError(ValueError):
    """Text that cannot be sent as it is; ``code`` is stable, the message readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def byte_length(text: str) -> int:
    """EUC-KR length of ``text``; raises ``MessageTextError`` for unencodable characters."""
    try:
        return len(text.encode(CODEC))
    except UnicodeEncodeError:
        raise _unencodable(text) from None


def unencodable(text: str) -> list[tuple[int, str]]:
    """(position, character) of every character EUC-KR cannot carry."""
    out = []
    for i, ch in enumerate(text):
        try:
            ch.encode(CODEC)
        except UnicodeEncodeError:
            out.append((i, ch))
    return out


def strip_unencodable(text: str) -> str:
    """``text`` without the characters EUC-KR cannot carry (emoji, their joiners and
    variation selectors); runs of spaces left behind are not collapsed."""
    bad = {i for i, _ in unencodable(text)}
    return "".join(ch for i, ch in enumerate(text) if i not in bad)


def _unencodable(text: str) -> MessageTextError:
    bad = unencodable(text)
    shown = ", ".join(f"{ch!r} (U+{ord(ch):04X}) at {i}" for i, ch in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return MessageTextError(
        "unencodable",
        f"{len(bad)} character(s) cannot be sent by SMS/LMS (not in EUC-KR): {shown}{more}; "
        "remove them or let the template strip them",
    )


@dataclass(frozen=True)
class PreparedText:
    channel: Channel  # sms or lms
    subject: str
    body: str
    body_bytes: int
    subject_bytes: int
    stripped: int  # characters removed (strip mode)


def prepare_sms(body: str, subject: str = "", *, strip: bool = False) -> PreparedText:
    """Decide SMS or LMS for ``body`` (and ``subject``) and check every limit.

    SMS: body at most 90 bytes and no subject. Anything longer, or with a subject, is LMS:
    subject at most 40 bytes, body at most 2,000. ``strip`` removes unencodable characters
    instead of refusing them.
    """
    stripped = 0
    if strip:
        clean_body, clean_subject = strip_unencodable(body), strip_unencodable(subject)
        stripped = len(body) - len(clean_body) + len(subject) - len(clean_subject)
        body, subject = clean_body, clean_subject
    if not body.strip():
        raise MessageTextError("empty", "the message text is empty")
    body_bytes = byte_length(body)
    subject_bytes = byte_length(subject)
    if subject_bytes > LMS_SUBJECT_MAX_BYTES:
        raise MessageTextError(
            "subject_too_long",
            f"the subject is {subject_bytes} bytes; LMS allows {LMS_SUBJECT_MAX_BYTES} "
            "(20 Hangul characters)",
        )
    if body_bytes > LMS_MAX_BYTES:
        raise MessageTextError(
            "too_long",
            f"the text is {body_bytes} bytes; LMS allows {LMS_MAX_BYTES} (1,000 Hangul characters)",
        )
    channel = Channel.sms if body_bytes <= SMS_MAX_BYTES and not subject else Channel.lms
    return PreparedText(channel, subject, body, body_bytes, subject_bytes, stripped)
