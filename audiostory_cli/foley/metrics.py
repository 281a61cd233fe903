"""Small, pure measurements for evaluating renders and plans against the foley world."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError

SEAM_WINDOW_S = 0.05  # seconds each side of a boundary that define the local "typical step"


def seam_discontinuity(audio: np.ndarray, sr: int, boundary_samples: Sequence[int]) -> float:
    """Worst jump at the given boundaries, relative to the signal's typical sample-to-sample step nearby.

    For each boundary ``b`` (the index of the first sample after the seam), the jump is ``|x[b] - x[b-1]|``
    (largest over channels) and the typical step is the RMS of the sample-to-sample differences within
    ``SEAM_WINDOW_S`` on both sides, the seam itself excluded. A smooth crossfade gives about 1; a hard cut
    between unrelated signals gives several times that. Returns 0.0 when there are no inner boundaries.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 2:
        raise InputError(f"audio of shape {np.shape(audio)} is not (channels, n) or (n,) with n >= 2")
    n = x.shape[1]
    half = max(2, int(SEAM_WINDOW_S * sr))
    worst = 0.0
    for b in boundary_samples:
        b = int(b)
        if not 0 < b < n:
            if b in (0, n):
                continue
            raise InputError(f"boundary {b} is outside the audio (0..{n})")
        lo, hi = max(1, b - half), min(n, b + half)
        steps = np.diff(x[:, lo - 1 : hi], axis=1)
        seam = b - lo  # index of the step x[b] - x[b-1] within ``steps``
        around = np.delete(steps, seam, axis=1)
        typical = float(np.sqrt(np.mean(around * around))) if around.size else 0.0
        jump = float(np.max(np.abs(steps[:, seam])))
        worst = max(worst, jump / max(typical, 1e-9))
    return worst


def duration_error(planned: Sequence[float], reference: Sequence[float]) -> float:
    """Mean absolute difference in seconds between paired event durations (over the shorter list).

    Returns ``inf`` when either list is empty."""
    k = min(len(planned), len(reference))
    if k == 0:
        return float("inf")
    return float(np.mean(np.abs(np.asarray(planned[:k], float) - np.asarray(reference[:k], float))))


def sequence_accuracy(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """Share of reference positions whose class is predicted at the same position (order-sensitive)."""
    if not reference:
        return 1.0 if not predicted else 0.0
    hits = sum(1 for p, r in zip(predicted, reference, strict=False) if p == r)
    return hits / max(len(reference), len(predicted))
