"""Phone cells of a whole column at once: canonical mobile numbers, or why not.

**The rule.** A phone is valid when, normalised, it is ``010`` followed by 8 digits:
full-width digits and NBSP are folded (NFKC), ``+82``/``82`` becomes ``0``, a leading 0
that a spreadsheet dropped (``1012345678``) comes back, and dots, dashes, brackets, spaces
and any grouping (``010-12345-678``) are ignored. Every 010 number passes, including the
``010-597x``..``010-599x`` blocks that libphonenumber's allocation table leaves out: the
whole 010 range is the mobile range, and that table lags the carriers (README, "Excel").

What is not a valid mobile is sorted by libphonenumber, once per distinct value: a Korean
landline (``02-…``, ``031-…``), ``070`` (VoIP) or another non-mobile service number is
``not_mobile``; anything else (too short, letters, an old ``011`` number) is ``invalid``.
Placeholders (``없음``, ``-``, ``--``, ``x``, ``X``, blank) are ``missing``.

Everything but the ``not_mobile``/``invalid`` split is vectorised in Polars: a 100k-row
sheet has 200k phone cells, and libphonenumber costs about 35 µs a call.
"""

from __future__ import annotations

from typing import Literal

import phonenumbers
import polars as pl

from pipelines.excel.text import clean, needs_nfkc

Problem = Literal["missing", "not_mobile", "invalid"]

# Matched after trimming whitespace (NBSP and U+3000 included); the full-width forms are
# listed so the data-row test needs no NFKC over whole columns.
PLACEHOLDER = r"^(?:없음|[-－]{1,2}|[xXｘＸ])?$"
# Characters a phone cell may hold besides digits.
PHONE_CHARACTERS = r"^[0-9+\-.()\[\] ]*$"
MOBILE = r"^010[0-9]{8}$"
NOT_MOBILE_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.VOIP,
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.UAN,
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    }
)


def is_placeholder(cell: pl.Expr) -> pl.Expr:
    """True where a cell means "no number" (null and blank included)."""
    return cell.str.strip_chars().fill_null("").str.contains(PLACEHOLDER)


def classify_phones(values: pl.Series) -> pl.DataFrame:
    """``phone`` (``010-XXXX-XXXX``, or null) and ``problem`` (``Problem``, or null) for
    each cell."""
    frame = pl.DataFrame({"raw": values.cast(pl.String)})
    text = clean(pl.col("raw"), nfkc=needs_nfkc(frame["raw"])).fill_null("")
    digits = pl.col("text").str.replace_all(r"[^0-9]", "")
    after_82 = pl.col("digits").str.slice(2)
    national = (
        pl.when(
            (pl.col("text").str.starts_with("+") | pl.col("digits").str.len_chars().is_in([11, 12]))
            & pl.col("digits").str.starts_with("82")
        )
        # ``+82 10-…`` and the common ``+82 010-…`` alike.
        .then(pl.when(after_82.str.starts_with("0")).then(after_82).otherwise("0" + after_82))
        .when(pl.col("digits").str.starts_with("10") & (pl.col("digits").str.len_chars() == 10))
        .then("0" + pl.col("digits"))
        .otherwise(pl.col("digits"))
    )
    frame = (
        frame.with_columns(text.alias("text"))
        .with_columns(digits.alias("digits"))
        .with_columns(national.alias("national"))
        .with_columns(
            pl.col("text").str.contains(PLACEHOLDER).alias("missing"),
            (
                pl.col("text").str.contains(PHONE_CHARACTERS)
                & pl.col("national").str.contains(MOBILE)
            ).alias("mobile"),
        )
    )
    others = frame.filter(~pl.col("missing") & ~pl.col("mobile"))
    kinds = {value: _not_mobile_or_invalid(value) for value in others["text"].unique().to_list()}
    lookup = pl.DataFrame(
        {"text": list(kinds), "other": list(kinds.values())},
        schema={"text": pl.String, "other": pl.String},
    )
    frame = frame.join(lookup, on="text", how="left", maintain_order="left")
    national_number = pl.col("national")
    return frame.select(
        pl.when(pl.col("mobile"))
        .then(
            pl.concat_str(
                [national_number.str.slice(0, 3), national_number.str.slice(3, 4),
                 national_number.str.slice(7, 4)],
                separator="-",
            )
        )
        .otherwise(None)
        .alias("phone"),
        pl.when(pl.col("missing"))
        .then(pl.lit("missing"))
        .when(pl.col("mobile"))
        .then(None)
        .otherwise(pl.col("other"))
        .alias("problem"),
    )  # fmt: skip


def _not_mobile_or_invalid(text: str) -> Problem:
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits or not all(ch.isdigit() or ch in "+-.()[] " for ch in text):
        return "invalid"
    if text.startswith("+") or (digits.startswith("82") and len(digits) >= 11):
        candidates = ["+" + digits]
    else:
        # A spreadsheet drops the leading 0 of a landline too (``212345678`` for 02-…).
        candidates = [digits] if digits.startswith("0") else [digits, "0" + digits]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, "KR")
        except phonenumbers.NumberParseException:
            continue
        if (
            number.country_code == 82
            and phonenumbers.is_valid_number(number)
            and phonenumbers.number_type(number) in NOT_MOBILE_TYPES
        ):
            return "not_mobile"
    return "invalid"
