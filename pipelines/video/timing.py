"""Source frames at any times onto the constant-rate grid of the renditions.

Output frame ``k`` is shown at ``k / rate`` seconds after the start. Each source frame goes
to the slot nearest its presentation time and stays on screen until the next source frame's
slot: across a freeze or a gap in the source it is repeated, so every moment of the source
lasts as long in the output. Frames are dropped only where the source runs faster than the
output (several source frames nearest one slot); of those the slot keeps the latest, unless
an earlier one differs clearly more from the picture already on screen, so a single frame
that marks an event (a flash, a slide change) in a fast stretch is kept.

Keyframes are placed by time too: the first slot at or after each multiple of the segment
length, so every HLS segment starts on one whatever the rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

# The picture compared when frames compete for a slot: a 32x18 grey thumbnail.
SIGNATURE_SIZE = (32, 18)
# An earlier frame wins its slot when it differs from the picture on screen by this much
# more than the latest one does (mean absolute difference, 0..255 grey levels).
EVENT_MARGIN = 2.0
EVENT_FACTOR = 2.0

Emit = Callable[[int, Any], None]


def keyframe_slots(rate: Fraction, segment_seconds: int) -> Callable[[int], bool]:
    """Whether output slot ``k`` starts a segment (the first slot at or after n x segment)."""

    def is_key(slot: int) -> bool:
        n = math.floor(Fraction(slot) / (rate * segment_seconds))
        return slot == math.ceil(n * segment_seconds * rate)

    return is_key


def frames_per_segment(rate: Fraction, segment_seconds: int) -> int:
    return max(1, math.ceil(rate * segment_seconds))


class FramePlacer:
    """Feed source frames in presentation order with ``push``; ``emit(slot, frame)`` is
    called once per output slot, in order, with the frame to show there."""

    def __init__(self, rate: Fraction, start: float, emit: Emit) -> None:
        self.rate = rate
        self.start = start
        self.emit = emit
        self.next_slot = 0  # the first slot not emitted yet
        self.best: Any = None  # the frame chosen so far for ``best_slot``
        self.best_slot = 0
        self.best_sig: np.ndarray | None = None
        self.shown: Any = None  # the frame emitted last (on screen now)
        self.shown_sig: np.ndarray | None = None
        self.dropped = 0
        self.repeated = 0
        self._reformatter = VideoReformatter()

    def slot_of(self, at: float) -> int:
        return max(0, round((at - self.start) * self.rate))

    def push(self, frame: Any, at: float) -> None:
        slot = self.slot_of(at)
        if self.best is not None:
            if slot <= self.best_slot:
                self._compete(frame)
                return
            self._emit_until(slot)
        self.best, self.best_slot, self.best_sig = frame, slot, None

    def finish(self, end: float) -> int:
        """Show the last frame until ``end`` (seconds after the start); the slot count."""
        if self.best is not None:
            self._emit_until(max(self.best_slot + 1, round((end - self.start) * self.rate)))
        return self.next_slot

    def _emit_until(self, end_slot: int) -> None:
        """The chosen frame on every slot up to ``end_slot`` (excluded)."""
        self.repeated += max(0, end_slot - self.next_slot - 1)
        for slot in range(self.next_slot, end_slot):
            self.emit(slot, self.best)
        self.shown, self.shown_sig = self.best, self.best_sig
        self.next_slot = end_slot

    def _compete(self, frame: Any) -> None:
        """Two source frames nearest one slot: one of them is dropped."""
        self.dropped += 1
        if self.shown is None:
            self.best, self.best_sig = frame, None
            return
        if self.shown_sig is None:
            self.shown_sig = self._signature(self.shown)
        if self.best_sig is None:
            self.best_sig = self._signature(self.best)
        sig = self._signature(frame)
        earlier = _difference(self.best_sig, self.shown_sig)
        latest = _difference(sig, self.shown_sig)
        if earlier > latest * EVENT_FACTOR + EVENT_MARGIN:
            return  # the earlier frame is an event: it keeps the slot
        self.best, self.best_sig = frame, sig

    def _signature(self, frame: Any) -> np.ndarray:
        small = self._reformatter.reformat(
            frame, *SIGNATURE_SIZE, format="gray", interpolation=Interpolation.AREA
        )
        return small.to_ndarray().astype(np.int16)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())
