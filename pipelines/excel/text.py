"""``pipelines.korean.clean_text`` for whole columns."""

from __future__ import annotations

import polars as pl

# Printable ASCII and Hangul syllables are already NFKC; a column of only those (nearly
# every column of a real sheet) skips the normalisation, which is the costliest step here.
NEEDS_NFKC = r"[^\x20-\x7E\x{AC00}-\x{D7A3}]"


def needs_nfkc(values: pl.Series) -> bool:
    return bool(values.cast(pl.String).str.contains(NEEDS_NFKC).any())


def clean(expr: pl.Expr, *, nfkc: bool = True) -> pl.Expr:
    """NFKC (full-width to half-width, when ``nfkc``), whitespace runs to one space,
    trimmed; null stays null."""
    folded = expr.str.normalize("NFKC") if nfkc else expr
    return folded.str.replace_all(r"\s+", " ").str.strip_chars()
