"""학년 as ``초1``..``고3``, derived from the grade cell and, where the cell is only a
number, from the school's name. A cell that says something else (``예비고1``, ``재수``)
gives no grade; the import keeps the cell as ``grade_raw`` either way."""

from __future__ import annotations

import re
import unicodedata

import polars as pl

LEVELS = {"초": 6, "중": 3, "고": 3}
_STAGED = re.compile(r"^(초|중|고)(?:등학교|학교|교|등)?([1-6])(?:학년)?$")
_NUMBER = re.compile(r"^([1-6])(?:\.0+)?(?:학년)?$")
_SCHOOL = re.compile(r"(초|중|고)(?:등학교|학교|교)?$")


def _squeezed(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def grade_of(cell: str | None, school: str | None) -> str | None:
    """``중2`` for ``중2``, ``중학교 2학년``, or ``2학년``/``2`` at a school ending in
    ``중``/``중학교``; None when no grade can be derived (``예비고1`` included)."""
    text = _squeezed(cell or "")
    if not text or text.startswith("예비"):
        return None
    staged = _STAGED.match(text)
    if staged:
        level, year = staged.group(1), int(staged.group(2))
    else:
        number = _NUMBER.match(text)
        at = _SCHOOL.search(_squeezed(school or ""))
        if number is None or at is None:
            return None
        level, year = at.group(1), int(number.group(1))
    return f"{level}{year}" if year <= LEVELS[level] else None


def grades(cells: pl.Series, schools: pl.Series) -> pl.Series:
    """``grade_of`` for whole columns, computed once per distinct (cell, school)."""
    pairs = pl.DataFrame({"cell": cells, "school": schools})
    distinct = pairs.unique()
    lookup = distinct.with_columns(
        pl.Series(
            "grade",
            [grade_of(c, s) for c, s in distinct.iter_rows()],
            dtype=pl.String,
        )
    )
    joined = pairs.join(
        lookup, on=["cell", "school"], how="left", nulls_equal=True, maintain_order="left"
    )
    return joined.get_column("grade")
