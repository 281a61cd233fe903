"""Mastering: static gain to a loudness target, then the true-peak limiter; one gain curve for mix and stems.

measure → gain to target → true-peak limit → re-measure; if limiting pulled the loudness away from the target
(or a true peak slipped over the ceiling) correct the static gain (or lower the limiter threshold) and repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import AudioInputError
from .limiter import limiter_gain
from .loudness import GATE_LUFS, from_db, integrated_loudness, to_db, true_peak, true_peak_envelope

FloatArray = npt.NDArray[np.float32]

AIM_LU = 0.05  # the loop's own loudness tolerance; QC "met" uses the (wider) preset tolerance
LIMITER_MARGIN_DB = 0.1  # the limiter aims this far under the ceiling
MAX_PASSES = 8
MAX_LIMITING_DB = 20.0  # the static gain goes at most this far past the plain gain to target; the limiter takes it


@dataclass(frozen=True)
class MasterResult:
    gain: FloatArray  # (frames,) static gain × limiter gain: multiply the mix and every stem by it
    audio: FloatArray  # the mastered mix, ``mix * gain``
    input_lufs: float  # -inf for a silent mix
    output_lufs: float
    static_gain_db: float
    max_reduction_db: float  # deepest limiter gain reduction (≥ 0)
    true_peak_dbtp: float
    passes: int
    shortfall: str | None = None  # why the loudness target was not reached, or None


def master(mix: FloatArray, rate: int, *, target_lufs: float | None, ceiling_dbtp: float) -> MasterResult:
    """Gain ``mix`` to ``target_lufs`` (``None``: keep its level) and true-peak limit it at ``ceiling_dbtp``."""
    input_lufs = integrated_loudness(mix, rate)
    if target_lufs is not None and not math.isfinite(input_lufs):
        raise AudioInputError(
            f"the mix is silent (integrated loudness is -inf, everything is below the {GATE_LUFS:g} LUFS gate), "
            f"so it cannot be normalised to {target_lufs:g} LUFS; check the event renders or use --loudness none"
        )
    static_db = 0.0 if target_lufs is None else target_lufs - input_lufs
    most_db = static_db + MAX_LIMITING_DB
    threshold_db = ceiling_dbtp - LIMITER_MARGIN_DB
    history: list[tuple[float, float]] = []  # (static gain dB, resulting loudness) for the secant step
    peaks = true_peak_envelope(mix, rate)
    for passes in range(1, MAX_PASSES + 1):
        static = from_db(static_db)
        limiter = limiter_gain(mix * np.float32(static), rate, threshold_db, peaks=peaks * np.float32(static))
        gain = (limiter * np.float32(static)).astype(np.float32)
        audio = mix * gain
        output_lufs = integrated_loudness(audio, rate)
        peak_db = to_db(true_peak(audio, rate))
        loud_ok = target_lufs is None or abs(output_lufs - target_lufs) <= AIM_LU
        peak_ok = peak_db <= ceiling_dbtp
        if (loud_ok and peak_ok) or passes == MAX_PASSES:
            break
        if not peak_ok:
            threshold_db -= peak_db - ceiling_dbtp + 0.02
        if not loud_ok and target_lufs is not None and math.isfinite(output_lufs):
            if peak_ok and output_lufs < target_lufs and static_db >= most_db - 1e-9:
                break  # at the most limiting allowed: louder is not possible under this ceiling
            static_db = min(most_db, _next_static_gain(history, static_db, output_lufs, target_lufs))
    shortfall = None
    if target_lufs is not None and output_lufs < target_lufs - AIM_LU:
        shortfall = (
            f"{target_lufs:g} LUFS cannot be reached under a {ceiling_dbtp:g} dBTP ceiling: with "
            f"{max(0.0, -to_db(float(limiter.min()))):.1f} dB of peak limiting (the static gain at most "
            f"{MAX_LIMITING_DB:g} dB past the plain gain) the mix reaches {output_lufs:.2f} LUFS; lower --lufs or "
            "raise --true-peak"
        )
    return MasterResult(
        gain=gain,
        audio=audio,
        input_lufs=input_lufs,
        output_lufs=output_lufs,
        static_gain_db=static_db,
        max_reduction_db=max(0.0, -to_db(float(limiter.min()))),
        true_peak_dbtp=peak_db,
        passes=passes,
        shortfall=shortfall,
    )


def _next_static_gain(history: list[tuple[float, float]], static_db: float, lufs: float, target: float) -> float:
    """Secant step on loudness(static gain): limiting makes the slope < 1 dB/dB, so a plain correction crawls."""
    slope = 1.0
    if history:
        previous_static, previous_lufs = history[-1]
        if abs(static_db - previous_static) > 1e-6:
            slope = min(1.5, max(0.05, (lufs - previous_lufs) / (static_db - previous_static)))
    history.append((static_db, lufs))
    return static_db + (target - lufs) / slope
