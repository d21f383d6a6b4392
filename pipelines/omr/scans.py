"""Scan files: a safe storage name for an uploaded file, a PDF's pages as images, and
the ai tier that reads a batch."""

from __future__ import annotations

import io
import re

from ops.settings import get_settings

MAX_PDF_PAGES = 500
RASTER_DPI = 150
PDF_MAGIC = b"%PDF-"


def safe_name(filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", filename)[-80:] or "scan"


def rasterise_pdf(data: bytes, dpi: int = RASTER_DPI) -> list[bytes]:
    """Every page of a PDF as a grey PNG at ``dpi``. Raises ``ValueError`` with a reason
    for a PDF that cannot be opened, has no pages or too many."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ValueError(f"the PDF could not be opened ({exc})") from None
    try:
        count = len(pdf)
        if count == 0:
            raise ValueError("the PDF has no pages")
        if count > MAX_PDF_PAGES:
            raise ValueError(f"the PDF has {count} pages; at most {MAX_PDF_PAGES} per upload")
        out = []
        for i in range(count):
            page = pdf[i]
            try:
                image = page.render(scale=dpi / 72, grayscale=True).to_pil()
            except pdfium.PdfiumError as exc:
                raise ValueError(f"page {i + 1} of the PDF could not be rendered ({exc})") from None
            finally:
                page.close()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            out.append(buffer.getvalue())
        return out
    finally:
        pdf.close()


def tier_for(page_estimate: int) -> str:
    """The tier a batch runs on: the setting, or lite for a small rescan, else basic."""
    settings = get_settings()
    if settings.omr_tier:
        settings.queue_for(settings.omr_tier)  # an unknown tier fails loudly
        return settings.omr_tier
    return "ai-lite" if page_estimate <= settings.omr_lite_max_pages else "ai-basic"
