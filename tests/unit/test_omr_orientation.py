"""Pages turned 90/180/270 degrees through imported OMRChecker templates, and pages that
are no answer sheet. Every sample of OMRChecker's snapshot, turned, must read exactly as
it reads upright, with the turn recorded; a page whose orientation is doubtful is read
with every field flagged, never with confident answers."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.omr.align import SheetError, decode_image
from pipelines.omr.sheet import SheetReading, read_sheet
from tests.unit.test_omr_omrchecker import ROOT, SAMPLES, SNAPSHOT, _find_up, _template

pytestmark = pytest.mark.skipif(not ROOT.exists(), reason="OMRChecker fixtures not present")

IMAGES = sorted({e.image for e in SNAPSHOT})
TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _reading(image: Path, pixels: np.ndarray | None = None) -> SheetReading:
    folder = _find_up(image, "template.json")
    assert folder is not None
    data = decode_image(image.read_bytes()) if pixels is None else pixels
    return read_sheet(data, _template(folder.parent), ocr="never")


@cache
def _upright(image: Path) -> SheetReading:
    return _reading(image)


@pytest.mark.parametrize("turn", sorted(TURNS))
@pytest.mark.parametrize("image", IMAGES, ids=[f"{p.parent.name}/{p.name}" for p in IMAGES])
def test_a_turned_sample_reads_exactly_as_upright(image: Path, turn: int) -> None:
    upright = _upright(image)
    turned = _reading(image, cv2.rotate(decode_image(image.read_bytes()), TURNS[turn]))
    assert turned.response == upright.response
    assert turned.rotation == (upright.rotation + turn) % 360


def test_a_doubtful_orientation_sends_every_field_to_review() -> None:
    """sample1's two upright readings (its grid is nearly symmetric) fit almost alike:
    the page is read, but no field of it keeps a confident answer."""
    image = SAMPLES / "sample1" / "MobileCamera" / "sheet1.jpg"
    for pixels in (None, cv2.rotate(decode_image(image.read_bytes()), cv2.ROTATE_180)):
        reading = _reading(image, pixels)
        assert all("poor_fit" in f.flags for f in reading.read.fields.values())
        assert all(f.confidence < 0.25 for f in reading.read.fields.values())
        assert set(reading.question_flags()) == set(reading.question_fields)


def _photo(shape: tuple[int, int]) -> np.ndarray:
    """A photograph-like page: smooth shading, blobs and edges, no bubble grid."""
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (12, 9)).astype(np.uint8)
    img = cv2.resize(small, shape[::-1], interpolation=cv2.INTER_CUBIC)
    for _ in range(25):
        centre = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        axes = (int(rng.integers(20, 200)), int(rng.integers(20, 200)))
        cv2.ellipse(
            img, centre, axes, float(rng.integers(0, 180)), 0, 360, int(rng.integers(0, 256)), -1
        )
    return cv2.GaussianBlur(img, (9, 9), 0)


@pytest.mark.parametrize(
    "sample",
    [
        "community/Shamanth/omr_sheet_01.png",  # no alignment step
        "sample3/colored-thick-sheet/rgb-100-gsm.jpg",  # CropPage
        "sample5/ScanBatch1/camscanner-1.jpg",  # CropOnMarkers
        "community/UmarFarootAPS/scans/scan-type-1.jpg",  # CropOnMarkers, marker ratio
    ],
)
def test_a_photo_or_a_grey_page_is_not_an_answer_sheet(sample: str) -> None:
    image = SAMPLES / sample
    shape = decode_image(image.read_bytes()).shape
    for pixels in (_photo(shape), np.full(shape, 128, np.uint8)):
        with pytest.raises(SheetError) as err:
            _reading(image, pixels)
        assert err.value.code == "not_an_answer_sheet", err.value.message
