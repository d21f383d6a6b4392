"""Digits read by OCR from a template's box: the fallback for a student number whose
bubbles are missing or ambiguous.

RapidOCR's recognition model runs alone on the cropped box (no text detection, no
angle classifier): about 30-60 ms a box on one core. Its models ship inside the
``rapidocr-onnxruntime`` wheel; nothing is downloaded. They read Latin letters and digits
only -- not Hangul -- so names are never read, only numbers.

``OMR_OCR_PROVIDER=cuda`` selects onnxruntime's CUDA provider on a GPU host (premium tier,
with ``onnxruntime-gpu`` installed in place of ``onnxruntime``); the default is the CPU.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from pipelines.omr.template import OcrBox

_lock = threading.Lock()


@dataclass(frozen=True)
class OcrRead:
    text: str  # digits only
    raw: str
    score: float  # the recogniser's confidence, 0..1


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    if os.environ.get("OMR_OCR_PROVIDER", "cpu").lower() == "cuda":
        return RapidOCR(rec_use_cuda=True)
    return RapidOCR()


def read_digits(page: np.ndarray[Any, Any], box: OcrBox) -> OcrRead:
    """The digits printed or written in ``box`` of an aligned page."""
    x, y, w, h = (round(v) for v in box.box)
    crop = page[max(y, 0) : y + h, max(x, 0) : x + w]
    if crop.size == 0:
        return OcrRead("", "", 0.0)
    # Cell borders and light printing confuse the recogniser less once binarised.
    _, crop = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    crop = cv2.copyMakeBorder(crop, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=255)
    image = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    with _lock:  # one ONNX session per process, shared by the worker's threads
        result, _ = _engine()(image, use_det=False, use_cls=False, use_rec=True)
    if not result:
        return OcrRead("", "", 0.0)
    # NFKC: the recogniser sometimes answers with full-width digits ("４").
    raw, score = unicodedata.normalize("NFKC", str(result[0][0])), float(result[0][1])
    # Letters the recogniser confuses with digits in a digits-only box.
    table = str.maketrans(
        {
            "O": "0",
            "o": "0",
            "D": "0",
            "I": "1",
            "l": "1",
            "|": "1",
            "Z": "2",
            "S": "5",
            "B": "8",
            "G": "6",
        }
    )
    digits = "".join(ch for ch in raw.translate(table) if ch.isdigit())
    return OcrRead(digits, raw, score)
