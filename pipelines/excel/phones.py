"""Phone normalisation for a whole column at once.

``pipelines.korean.normalize_phone`` (libphonenumber) costs about 35 µs a call: 200k phones
of a 100k-row sheet would take 7 s. Almost every cell is an 11-digit ``010`` mobile number
in one of a few spellings, so those are checked here in Polars against libphonenumber's
own Korean mobile pattern and formatted ``010-XXXX-XXXX``. Every other value (landlines,
old 011 numbers, odd spellings) goes through ``normalize_phone`` once per distinct value.
The result is the same as calling ``normalize_phone`` on every cell (a unit test compares
them on random inputs).
"""

from __future__ import annotations

import phonenumbers
import polars as pl

from pipelines.excel.text import clean, needs_nfkc
from pipelines.korean import InvalidPhone, normalize_phone


def _mobile_pattern() -> str:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("KR")
    if metadata is None or metadata.mobile is None or not metadata.mobile.national_number_pattern:
        raise RuntimeError("libphonenumber has no Korean mobile pattern")
    return f"^(?:{metadata.mobile.national_number_pattern})$"


MOBILE_NATIONAL = _mobile_pattern()
# Characters people put in phone cells; anything else goes the slow, exact way.
PLAIN = r"^[0-9+\-. ()]*$"


def normalize_phones(values: pl.Series) -> pl.DataFrame:
    """``phone`` (canonical, or null) and ``error`` (why not, or null) for each value.

    Null or blank values give null in both columns: whether a phone is required is the
    caller's rule.
    """
    frame = pl.DataFrame({"raw": values.cast(pl.String)})
    text = clean(pl.col("raw"), nfkc=needs_nfkc(frame["raw"]))
    frame = frame.with_columns(text.alias("text")).with_columns(
        pl.col("text").str.replace_all(r"[^0-9]", "").alias("digits")
    )
    digits = pl.col("digits")
    plus = pl.col("text").str.starts_with("+")
    candidate = (
        pl.when(~pl.col("text").str.contains(PLAIN))
        .then(None)
        .when((plus | digits.str.starts_with("82")) & (digits.str.len_chars() == 12))
        .then(pl.when(digits.str.starts_with("8210")).then("0" + digits.str.slice(2)))
        .when(plus)
        .then(None)
        .when(digits.str.starts_with("1") & (digits.str.len_chars() == 10))
        .then("0" + digits)
        .when(digits.str.len_chars() == 11)
        .then(digits)
        .otherwise(None)
    )
    frame = frame.with_columns(candidate.alias("candidate"))
    fast = pl.col("candidate").str.starts_with("010") & pl.col("candidate").str.slice(
        1
    ).str.contains(MOBILE_NATIONAL)
    frame = frame.with_columns(
        pl.when(fast)
        .then(
            pl.concat_str(
                [
                    pl.col("candidate").str.slice(0, 3),
                    pl.col("candidate").str.slice(3, 4),
                    pl.col("candidate").str.slice(7, 4),
                ],
                separator="-",
            )
        )
        .otherwise(None)
        .alias("phone"),
        (pl.col("text").is_not_null() & (pl.col("text") != "") & ~fast.fill_null(False)).alias(
            "slow"
        ),
    )
    slow_values = frame.filter(pl.col("slow"))["text"].unique().to_list()
    if slow_values:
        exact: dict[str, tuple[str | None, str | None]] = {}
        for value in slow_values:
            try:
                exact[value] = (normalize_phone(value), None)
            except InvalidPhone as exc:
                message = str(exc)
                if not any(ch.isdigit() for ch in value):
                    message = f"not a phone number: {value!r}"
                exact[value] = (None, message)
        lookup = pl.DataFrame(
            {
                "text": list(exact),
                "slow_phone": [v[0] for v in exact.values()],
                "slow_error": [v[1] for v in exact.values()],
            },
            schema={"text": pl.String, "slow_phone": pl.String, "slow_error": pl.String},
        )
        frame = frame.join(lookup, on="text", how="left", maintain_order="left")
    else:
        frame = frame.with_columns(
            pl.lit(None, pl.String).alias("slow_phone"), pl.lit(None, pl.String).alias("slow_error")
        )
    return frame.select(
        pl.when(pl.col("slow"))
        .then(pl.col("slow_phone"))
        .otherwise(pl.col("phone"))
        .alias("phone"),
        pl.when(pl.col("slow")).then(pl.col("slow_error")).otherwise(None).alias("error"),
    )
