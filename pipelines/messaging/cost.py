"""Price per message (KRW, VAT excluded) for the dry-run preview. The figures are the
common list prices of Korean providers; an academy's contract may differ, so the preview
says "estimate"."""

from __future__ import annotations

from decimal import Decimal

from pipelines.messaging.text import Channel

PRICE_KRW: dict[Channel, Decimal] = {
    Channel.sms: Decimal("20"),
    Channel.lms: Decimal("50"),
    Channel.alimtalk: Decimal("13"),
}


def estimate(counts: dict[Channel, int]) -> Decimal:
    return sum((PRICE_KRW[ch] * n for ch, n in counts.items()), Decimal("0"))
