"""SMPTE timecode: the one conversion used by the plan table, the edit view and every cue sheet."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class FrameRate:
    label: str
    numerator: int
    denominator: int
    nominal: int  # frames counted per timecode second
    drop_frame: bool

    @property
    def fps(self) -> float:
        return self.numerator / self.denominator


FRAME_RATES: tuple[FrameRate, ...] = (
    FrameRate("23.976", 24_000, 1001, 24, False),
    FrameRate("24", 24, 1, 24, False),
    FrameRate("25", 25, 1, 25, False),
    FrameRate("29.97", 30_000, 1001, 30, True),
    FrameRate("30", 30, 1, 30, False),
    FrameRate("48", 48, 1, 48, False),
    FrameRate("50", 50, 1, 50, False),
    FrameRate("59.94", 60_000, 1001, 60, True),
    FrameRate("60", 60, 1, 60, False),
)


def frame_rate(fps: float) -> FrameRate:
    """The supported rate closest to ``fps`` (29.97 and 59.94 are drop-frame); anything else is an error."""
    for rate in FRAME_RATES:
        if abs(rate.fps - fps) < 0.006:
            return rate
    raise UsageError(f"--fps {fps:g} is not supported; use one of {', '.join(r.label for r in FRAME_RATES)}")


def seconds_to_frames(seconds: float, rate: FrameRate) -> int:
    """The nearest frame; a time exactly between two frames goes to the later one (not banker's rounding)."""
    return math.floor(seconds * rate.numerator / rate.denominator + 0.5 + 1e-9)


def frames_to_timecode(frames: int, rate: FrameRate) -> str:
    """``HH:MM:SS:FF``, or ``HH:MM:SS;FF`` with drop-frame labels (2 or 4 labels skipped per minute except
    every tenth) for 29.97 and 59.94."""
    if frames < 0:
        raise ValueError(f"timecode of a negative frame count {frames}")
    label = frames
    if rate.drop_frame:
        drop = rate.nominal // 15  # 2 at 29.97, 4 at 59.94
        per_ten = rate.nominal * 600 - drop * 9
        per_minute = rate.nominal * 60 - drop
        tens, rest = divmod(frames, per_ten)
        label += drop * 9 * tens + drop * max(0, (rest - drop) // per_minute)
    ff = label % rate.nominal
    seconds_total = label // rate.nominal
    hh, rem = divmod(seconds_total, 3600)
    mm, ss = divmod(rem, 60)
    sep = ";" if rate.drop_frame else ":"
    return f"{hh:02d}:{mm:02d}:{ss:02d}{sep}{ff:02d}"


def timecode_to_frames(timecode: str, rate: FrameRate) -> int:
    """Inverse of ``frames_to_timecode``."""
    match = re.fullmatch(r"(\d{2}):(\d{2}):(\d{2})[:;.](\d{2})", timecode.strip())
    if not match:
        raise ValueError(f"not a timecode: {timecode!r}")
    hh, mm, ss, ff = (int(g) for g in match.groups())
    frames = ((hh * 60 + mm) * 60 + ss) * rate.nominal + ff
    if rate.drop_frame:
        drop = rate.nominal // 15
        minutes = hh * 60 + mm
        frames -= drop * (minutes - minutes // 10)
    return frames


def smpte(seconds: float, fps: float = 25.0) -> str:
    """``HH:MM:SS:FF`` of ``seconds`` at ``fps`` (29.97 and 59.94 use drop-frame labels)."""
    rate = frame_rate(fps)
    return frames_to_timecode(seconds_to_frames(max(seconds, 0.0), rate), rate)
