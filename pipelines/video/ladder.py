"""The HLS bit-rate ladder, chosen from the source and never upscaled.

Rates are the video average bit rates of Apple's "HLS Authoring Specification for Apple
Devices", section 2 (video), table of recommended H.264 variants (1.3 / 2.3 in the 2023+
revisions): 640x360 at 365 kb/s, 1280x720 at 3000 kb/s, 1920x1080 at 6000 kb/s (the first
rung of each resolution). The same spec asks for a peak no higher than 200% of the average
for VOD (item 1.22), which is the VBV we give the encoder; audio is stereo AAC-LC at
128 kb/s (within its 32-160 kb/s range for AAC-LC stereo).

A rung's size names its *short* side, so a portrait phone video gets 360x640 / 720x1280 /
1080x1920 rungs. Dimensions are even (4:2:0 chroma needs it) and keep the display aspect.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

AUDIO_BITRATE = 128_000
PEAK_FACTOR = 2.0  # Apple: VOD peak <= 200% of average

# (short side, average video bit rate): Apple HLS Authoring Specification, H.264 table.
APPLE_H264_LADDER: tuple[tuple[int, int], ...] = (
    (360, 365_000),
    (720, 3_000_000),
    (1080, 6_000_000),
)


@dataclass(frozen=True)
class Rung:
    name: str  # "720p": the directory and the label clients show
    width: int
    height: int
    video_bitrate: int  # average, bits/s
    audio_bitrate: int

    @property
    def maxrate(self) -> int:
        return int(self.video_bitrate * PEAK_FACTOR)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rung:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def plan_ladder(display_width: int, display_height: int) -> list[Rung]:
    """The rungs for a source of this *display* size (after rotation), lowest first.

    Every rung whose short side fits within the source's; a source smaller than the lowest
    rung gets one rung at its own (even) size with the lowest rung's rate scaled by area.
    """
    if display_width <= 0 or display_height <= 0:
        raise ValueError(f"bad source size {display_width}x{display_height}")
    short = min(display_width, display_height)
    portrait = display_height > display_width
    rungs: list[Rung] = []
    for target, bitrate in APPLE_H264_LADDER:
        if target > short:
            break
        if target == short:
            w, h = _even(display_width), _even(display_height)
        else:
            scale = target / short
            w, h = _even(display_width * scale), _even(display_height * scale)
        rungs.append(Rung(f"{target}p", w, h, bitrate, AUDIO_BITRATE))
    if not rungs:
        lowest_short, lowest_rate = APPLE_H264_LADDER[0]
        w, h = _even(display_width), _even(display_height)
        long_side = lowest_short * 16 / 9
        rate = int(lowest_rate * (w * h) / (lowest_short * long_side))
        rungs.append(Rung(f"{min(w, h)}p", w, h, max(100_000, rate), AUDIO_BITRATE))
    del portrait  # the short-side rule already covers both orientations
    return rungs
