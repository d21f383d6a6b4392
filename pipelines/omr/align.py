"""Decoding and aligning a scan onto its template's page.

Two families of alignment:

* OMRChecker's steps, reproduced faithfully so imported templates read as they do there:
  ``crop_page`` (the largest 4-cornered contour, warped flat) and ``crop_markers`` (a
  marker image matched, at the best of ten scales, in each quadrant of the page).
* ``corner_markers`` for our own cards: the four solid corner squares are found as dark,
  square, solid blobs; the outermost one in each diagonal direction is taken, which holds
  for rotations well past ±15° and for phone-photo perspective. The orientation mark beside
  the top-left square tells an upside-down scan (the warp is then turned by 180°).

Every failure is a ``SheetError`` with a stable ``code`` and a sentence for the teacher.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipelines.omr.template import Step, Template

Image = np.ndarray[Any, Any]

# Below this spread of grey levels a page carries no ink at all.
BLANK_STD = 6.0
# A page of one shade at least this light is blank paper; darker, it is no sheet at all.
PAPER = 170.0
MAX_PIXELS = 60_000_000
# Longest side of the copy the corner markers are looked for in.
DETECT_SIZE = 1000


class SheetError(Exception):
    """A page that cannot be read: ``code`` is one of ``not_an_image``, ``blank_page``,
    ``not_an_answer_sheet``, ``markers_not_found``, ``page_not_found``,
    ``wrong_template``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Aligned:
    image: Image  # grey, template page size
    rotated_180: bool = False
    notes: list[str] = field(default_factory=list)


def decode_image(data: bytes) -> Image:
    """Grey pixels of a JPEG/PNG (or anything OpenCV reads), or ``not_an_image``."""
    if not data:
        raise SheetError("not_an_image", "the file is empty")
    array = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_GRAYSCALE)
    if image is None or image.size == 0:
        raise SheetError("not_an_image", "the file is not an image OpenCV can read")
    if image.size > MAX_PIXELS:
        raise SheetError("not_an_image", f"the image is larger than {MAX_PIXELS} pixels")
    return image


def check_not_blank(image: Image) -> None:
    """A page of one shade: blank paper (``blank_page``), or a uniform grey or dark
    image, which no sheet is (``not_an_answer_sheet``)."""
    small = cv2.resize(image, (200, int(200 * image.shape[0] / max(image.shape[1], 1)) or 1))
    if float(small.std()) >= BLANK_STD:
        return
    if float(small.mean()) >= PAPER:
        raise SheetError("blank_page", "the page is blank (no printing or marks found)")
    raise SheetError(
        "not_an_answer_sheet", "the page is one uniform shade of grey: not an answer sheet"
    )


def normalize(image: Image) -> Image:
    out = np.empty_like(image)
    cv2.normalize(image, out, 0, 255, norm_type=cv2.NORM_MINMAX)
    return out


def resize(image: Image, width: int, height: int | None = None) -> Image:
    if height is None:
        height = int(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (int(width), int(height)))


def resize_h(image: Image, height: int) -> Image:
    return cv2.resize(image, (int(image.shape[1] * height / image.shape[0]), int(height)))


def order_points(points: Image) -> Image:
    pts = np.asarray(points, dtype="float32").reshape(4, 2)
    rect = np.zeros((4, 2), dtype="float32")
    s = pts.sum(axis=1)
    rect[0], rect[2] = pts[np.argmin(s)], pts[np.argmax(s)]
    diff = np.diff(pts, axis=1)
    rect[1], rect[3] = pts[np.argmin(diff)], pts[np.argmax(diff)]
    return rect


def four_point_transform(image: Image, points: Image) -> Image:
    rect = order_points(points)
    tl, tr, br, bl = rect
    width = max(int(np.hypot(*(br - bl))), int(np.hypot(*(tr - tl))))
    height = max(int(np.hypot(*(tr - br))), int(np.hypot(*(tl - bl))))
    dst = np.array(
        [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype="float32"
    )
    matrix = cv2.getPerspectiveTransform(rect, dst)
    return cv2.warpPerspective(image, matrix, (width, height))


# --- OMRChecker steps ------------------------------------------------------------------


def _levels(image: Image, step: Step) -> Image:
    low, high, gamma = int(255 * step.low), int(255 * step.high), step.gamma
    values = np.arange(256, dtype=np.float64)
    span = max(high - low, 1)
    table = np.where(
        values <= low,
        0.0,
        np.where(values >= high, 255.0, ((values - low) / span) ** (1.0 / gamma) * 255),
    )
    return cv2.LUT(image, table.astype("uint8"))


def _max_cosine(approx: Image) -> float:
    pts = approx.reshape(4, 2).astype(np.float64)
    best = 0.0
    for i in range(2, 5):
        a, b, c = pts[i % 4], pts[i - 2], pts[i - 1]
        d1, d2 = b - c, a - c
        cos = abs(float(np.dot(d1, d2)) / np.sqrt(np.dot(d1, d1) * np.dot(d2, d2) + 1e-10))
        best = max(best, cos)
    return best


def _crop_page(image: Image, step: Step) -> Image:
    image = normalize(cv2.GaussianBlur(image, (3, 3), 0))
    work = normalize(image)
    _, work = cv2.threshold(work, 200, 255, cv2.THRESH_TRUNC)
    work = normalize(work)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, tuple(step.morph_kernel))
    closed = cv2.morphologyEx(work, cv2.MORPH_CLOSE, kernel)
    edge = cv2.Canny(closed, 185, 55)
    contours, _ = cv2.findContours(edge, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    hulls = sorted((cv2.convexHull(c) for c in contours), key=cv2.contourArea, reverse=True)
    for c in hulls[:5]:
        if cv2.contourArea(c) < 80000:
            continue
        approx = cv2.approxPolyDP(c, 0.025 * cv2.arcLength(c, True), True)
        if len(approx) == 4 and _max_cosine(approx) < 0.35:
            return four_point_transform(image, approx.reshape(4, 2))
    raise SheetError("page_not_found", "the page's edges were not found")


def _crop_markers(image: Image, step: Step, processing_width: int) -> Image:
    marker = cv2.imdecode(
        np.frombuffer(base64.b64decode(step.marker_png or ""), np.uint8), cv2.IMREAD_GRAYSCALE
    )
    if marker is None:
        raise SheetError("markers_not_found", "the template's marker image is unreadable")
    if step.width_ratio:
        marker = resize(marker, int(processing_width / step.width_ratio))
    marker = normalize(cv2.GaussianBlur(marker, (5, 5), 0))
    eroded = np.ones((5, 5))
    if step.erode_subtract:
        marker = cv2.subtract(marker, cv2.erode(marker, eroded, iterations=5))
    # OMRChecker's option, as it behaves there: when set, the page is matched as it is;
    # when not, the page is eroded and subtracted (and the marker is not).
    page = normalize(
        image
        if step.erode_subtract
        else cv2.subtract(image, cv2.erode(image, eroded, iterations=5))
    )
    h1, w1 = page.shape[:2]
    mid_h, mid_w = h1 // 3, w1 // 2
    origins = [(0, 0), (mid_w, 0), (0, mid_h), (mid_w, mid_h)]
    quads = [
        page[0:mid_h, 0:mid_w],
        page[0:mid_h, mid_w:w1],
        page[mid_h:h1, 0:mid_w],
        page[mid_h:h1, mid_w:w1],
    ]
    mh = marker.shape[0]
    best_scale, best = _best_scale(page, marker, step)
    if best_scale is None or best < step.min_match:
        raise SheetError("markers_not_found", "the alignment markers were not found")
    optimal = resize_h(marker, int(mh * best_scale))
    oh, ow = optimal.shape[:2]
    centres = []
    for (ox, oy), quad in zip(origins, quads, strict=True):
        if quad.shape[0] < oh or quad.shape[1] < ow:
            raise SheetError("markers_not_found", "the page is too small for its markers")
        res = cv2.matchTemplate(quad, optimal, cv2.TM_CCOEFF_NORMED)
        t = float(res.max())
        if t < step.min_match or abs(best - t) >= step.max_variation:
            raise SheetError("markers_not_found", "an alignment marker was not found")
        y, x = np.argwhere(res == t)[0]
        centres.append([x + ox + ow / 2, y + oy + oh / 2])
    return four_point_transform(image, np.array(centres))


# Scales are first compared on a half-size copy of the page and the marker (a quarter of
# the work); the few best are then matched at full size, which decides, as OMRChecker's
# exhaustive full-size search does.
COARSE_KEEP = 2


def _best_scale(page: Image, marker: Image, step: Step) -> tuple[float | None, float]:
    """OMRChecker's marker scale: of the scales from ``rescale_range``'s high down to its
    low, the one whose marker matches the page best; and that match."""
    mh = marker.shape[0]
    low, high = step.rescale_range
    scales = []
    for r0 in range(high, low, -max((high - low) // step.rescale_steps, 1)):
        scaled_h = int(mh * r0 / 100)
        width = int(marker.shape[1] * scaled_h / mh)
        if r0 > 0 and 0 < scaled_h <= page.shape[0] and width <= page.shape[1]:
            scales.append(r0)
    if len(scales) > COARSE_KEEP:
        half = cv2.resize(page, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        coarse: list[tuple[float, int]] = []
        kept: set[int] = set()
        for r0 in scales:
            small = resize_h(marker, max(int(mh * r0 / 100) // 2, 1))
            if min(small.shape[:2]) < 4 or small.shape[1] > half.shape[1]:
                kept.add(r0)  # too small to judge at half size: matched at full size
                continue
            t = float(cv2.matchTemplate(half, small, cv2.TM_CCOEFF_NORMED).max())
            coarse.append((t, r0))
        kept.update(r0 for _, r0 in sorted(coarse, reverse=True)[:COARSE_KEEP])
        scales = [r0 for r0 in scales if r0 in kept]
    best_scale, best = None, 0.0
    for r0 in scales:
        scaled = resize_h(marker, int(mh * r0 / 100))
        t = float(cv2.matchTemplate(page, scaled, cv2.TM_CCOEFF_NORMED).max())
        if t > best:
            best_scale, best = r0 / 100, t
    return best_scale, best


# --- our corner markers ----------------------------------------------------------------


def _square_blobs(
    image: Image, min_side: float, max_side: float
) -> list[tuple[float, float, float]]:
    """Centres and sides of solid dark squares whose side lies within the bounds."""
    # A local threshold: shadows and a dark table around a phone photo defeat one global
    # level. The window is a few markers wide so that a marker's inside stays dark.
    block = int(max_side * 2.5) | 1
    binary = cv2.adaptiveThreshold(
        image, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, max(block, 3), 25
    )
    contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        area = cv2.contourArea(c)
        if area < min_side * min_side or area > max_side * max_side:
            continue
        (cx, cy), (w, h), _ = cv2.minAreaRect(c)
        if min(w, h) <= 0 or max(w, h) / min(w, h) > 1.35:
            continue
        if area / (w * h) < 0.85:  # not solid: a ring, a letter, a bubble outline
            continue
        out.append((float(cx), float(cy), float(np.sqrt(area))))
    return out


def _outermost(pts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The outermost point in each diagonal direction (top-left, top-right, bottom-right,
    bottom-left) from the centre of the points."""
    centre = pts.mean(axis=0)
    corners = []
    for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        score = (pts[:, 0] - centre[0]) * dx + (pts[:, 1] - centre[1]) * dy
        corners.append(pts[int(np.argmax(score))])
    return np.array(corners, dtype=np.float32)


def _corner_markers(image: Image, template: Template) -> Aligned:
    markers = template.markers
    assert markers is not None
    h, w = image.shape[:2]
    # The page may fill the photo or a third of it; the marker's share of the page is known.
    share = markers.size / template.page[0]
    longest = max(h, w)
    # Markers are found on a reduced copy: big enough for 15+ px markers, and averaging
    # away the sensor noise that would otherwise make thousands of specks to look at.
    factor = min(1.0, DETECT_SIZE / longest)
    small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    reach = share * longest * factor
    blobs = [
        (x / factor, y / factor, side / factor)
        for x, y, side in _square_blobs(small, reach * 0.25, reach * 1.6)
    ]
    if len(blobs) < 4:
        raise SheetError("markers_not_found", "the four corner markers were not found")
    # The corner squares share one size and span the page; stray marks, filled bubbles
    # and the orientation mark do not. Same-sized groups are tried widest first (a
    # patterned table around a photo can make a wider group): the first whose warp shows
    # the orientation mark is the card.
    quads: dict[tuple[int, ...], tuple[float, np.ndarray[Any, Any]]] = {}
    for b in blobs:
        peers = [c for c in blobs if abs(c[2] - b[2]) / b[2] < 0.3]
        if len(peers) < 4:
            continue
        corners = _outermost(np.array([(c[0], c[1]) for c in peers], dtype=np.float32))
        if len({(round(float(p[0])), round(float(p[1]))) for p in corners}) < 4:
            continue
        quads[tuple(int(v) for v in corners.flatten())] = (float(cv2.contourArea(corners)), corners)
    expected = np.array(markers.centres, dtype=np.float32)
    least = 0.15 * cv2.contourArea(expected) * (longest / max(template.page)) ** 2
    candidates = [q for area, q in sorted(quads.values(), key=lambda x: -x[0]) if area >= least]
    if not candidates:
        raise SheetError("markers_not_found", "the four corner markers were not found")
    pw, ph = template.page

    def warp(src: Image) -> Image:
        matrix = cv2.getPerspectiveTransform(src, expected)
        return cv2.warpPerspective(image, matrix, (pw, ph), borderValue=255)

    for quad in candidates[:3]:
        page = warp(quad)
        if _has_mark(page, markers.orientation, markers.orientation_size):
            return Aligned(page)
        # Upside down: the scan's bottom-right corner is the card's top-left.
        turned = warp(np.roll(quad, 2, axis=0))
        if _has_mark(turned, markers.orientation, markers.orientation_size):
            return Aligned(turned, rotated_180=True, notes=["the page was upside down"])
    raise SheetError(
        "wrong_template",
        "the orientation mark of this template was not found: a different answer card?",
    )


def _has_mark(page: Image, centre: tuple[float, float], size: float) -> bool:
    """A solid mark at ``centre``: much darker than the paper around it (a ratio, so
    that a dim photo and a bright scan are judged alike)."""
    x, y = int(centre[0]), int(centre[1])
    r, around = max(int(size * 0.3), 1), int(size * 1.2)
    patch = page[max(y - r, 0) : y + r, max(x - r, 0) : x + r]
    ring = page[max(y - around, 0) : y + around, max(x - around, 0) : x + around]
    if patch.size == 0 or ring.size == 0:
        return False
    paper = float(np.percentile(ring, 90))
    return float(patch.mean()) < 0.55 * paper


# --- the whole step ----------------------------------------------------------------------


def align(image: Image, template: Template) -> Aligned:
    """The scan warped (or resized) onto the template page, grey, contrast-normalised."""
    check_not_blank(image)
    work = image
    if template.processing_size:
        work = resize(work, *template.processing_size)
    processing_width = template.processing_size[0] if template.processing_size else work.shape[1]
    aligned: Aligned | None = None
    for step in template.preprocess:
        if step.op == "blur":
            work = cv2.GaussianBlur(work, tuple(step.ksize), step.sigma_x)
        elif step.op == "median_blur":
            work = cv2.medianBlur(work, step.ksize[0])
        elif step.op == "levels":
            work = _levels(work, step)
        elif step.op == "crop_page":
            work = _crop_page(work, step)
        elif step.op == "crop_markers":
            work = _crop_markers(work, step, processing_width)
        elif step.op == "corner_markers":
            aligned = _corner_markers(work, template)
            work = aligned.image
    pw, ph = template.page
    if work.shape[1] != pw or work.shape[0] != ph:
        work = cv2.resize(work, (pw, ph))
    if int(work.max()) > int(work.min()):
        work = normalize(work)
    if aligned is None:
        return Aligned(work)
    aligned.image = work
    return aligned
