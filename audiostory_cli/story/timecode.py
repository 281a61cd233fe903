"""SMPTE timecode for tables and cue sheets."""

from __future__ import annotations

import math

SUPPORTED_FPS = (23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0)


def check_fps(fps: float) -> float:
    for known in SUPPORTED_FPS:
        if abs(fps - known) < 1e-3:
            return known
    raise ValueError(f"--fps {fps:g} is not supported; use one of {', '.join(f'{f:g}' for f in SUPPORTED_FPS)}")


def smpte(seconds: float, fps: float = 25.0, *, drop_frame: bool | None = None) -> str:
    """``HH:MM:SS:FF`` (``;`` before frames for drop-frame). 29.97 and 59.94 default to drop-frame."""
    fps = check_fps(fps)
    nominal = int(round(fps))
    if drop_frame is None:
        drop_frame = fps in (29.97, 59.94)
    frames = int(math.floor(max(seconds, 0.0) * fps + 1e-6))
    if drop_frame:
        frames = _drop_frame_number(frames, nominal)
    ff = frames % nominal
    total_seconds = frames // nominal
    sep = ";" if drop_frame else ":"
    return f"{total_seconds // 3600:02d}:{total_seconds // 60 % 60:02d}:{total_seconds % 60:02d}{sep}{ff:02d}"


def _drop_frame_number(frames: int, nominal: int) -> int:
    """Frame count to the displayed frame number: skip 2 (4 at 60) labels each minute except every tenth."""
    drop = 2 if nominal == 30 else 4
    per_10min = nominal * 600 - drop * 9
    per_min = nominal * 60 - drop
    tens, rest = divmod(frames, per_10min)
    if rest > drop:
        return frames + drop * 9 * tens + drop * ((rest - drop) // per_min)
    return frames + drop * 9 * tens
