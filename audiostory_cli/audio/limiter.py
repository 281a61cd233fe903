"""A look-ahead true-peak limiter that returns its gain curve (no maintained Python library offers one).

The limiter never touches audio itself: it computes one linked gain per base-rate sample, so the caller can
apply exactly the same curve to the mix and to every stem (stems keep summing to the mix).

1. detection: the oversampled true-peak envelope (``loudness.true_peak_envelope``), linked over channels;
2. required gain ``g_req[n] = min(1, ceiling / peak[n])``;
3. look-ahead: a forward running minimum over ``W`` samples, then a ``W``-sample moving average, so the gain
   ramps down linearly *before* each peak and never exceeds ``g_req`` anywhere;
4. release: the attenuation (in dB) decays exponentially with time constant ``release_s``, computed in closed
   form with a running maximum (no per-sample Python loop).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .loudness import true_peak_envelope

FloatArray = npt.NDArray[np.float32]
_RELEASE_CHUNK = 1 << 16


def limiter_gain(
    audio: FloatArray,
    rate: int,
    ceiling_db: float,
    *,
    lookahead_s: float = 0.005,
    release_s: float = 0.15,
    oversample: int | None = None,
    peaks: npt.NDArray[np.floating] | None = None,
) -> FloatArray:
    """Gain curve ``(samples,)`` in (0, 1] that keeps the true peak of ``audio * gain`` at about ``ceiling_db``.

    ``peaks`` may pass ``true_peak_envelope(audio)`` when the caller already has it (it scales linearly with a
    static gain, so the mastering loop measures the envelope once).
    """
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"limiter needs (channels, samples) audio, got shape {audio.shape}")
    if not (math.isfinite(ceiling_db) and ceiling_db <= 6.0):
        raise ValueError(f"limiter ceiling {ceiling_db} dB must be finite and ≤ +6 dB")
    if lookahead_s <= 0 or release_s <= 0:
        raise ValueError("limiter look-ahead and release must be positive")
    ceiling = 10.0 ** (ceiling_db / 20.0)
    if peaks is None:
        peaks = true_peak_envelope(audio, rate, oversample)
    elif peaks.shape != (audio.shape[1],):
        raise ValueError(f"peaks has shape {peaks.shape}, expected ({audio.shape[1]},)")
    required = np.minimum(1.0, ceiling / np.maximum(peaks.astype(np.float64), 1e-30))
    if required.min() >= 1.0:
        return np.ones(audio.shape[1], dtype=np.float32)
    window = max(1, round(lookahead_s * rate))
    attack = lookahead_gain(required, window)
    return release_gain(attack, rate, release_s).astype(np.float32)


def lookahead_gain(required: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """Smooth ``required`` into linear ramps that start ``window`` samples early; result ≤ ``required``.

    ``m[k] = min(required[k : k+window])``, ``a[n] = mean(m[n-window+1 : n+1])``: every ``m[k]`` averaged into
    ``a[n]`` covers ``n``, hence ``a[n] ≤ required[n]``. Outside the signal the requirement is 1 (no limiting).
    """
    from scipy.ndimage import minimum_filter1d

    frames = required.shape[0]
    pad = np.ones(window - 1, dtype=np.float64)
    padded = np.concatenate([pad, required, pad])
    # minimum_filter1d centres a window of size w at index i + origin offset; shift it to cover [j, j + w).
    forward_min = minimum_filter1d(padded, size=window, mode="nearest", origin=-(window // 2))
    forward_min = forward_min[: frames + window - 1]
    sums = np.concatenate([[0.0], np.cumsum(forward_min)])
    result: npt.NDArray[np.float64] = (sums[window : window + frames] - sums[:frames]) / window
    return result


def release_gain(attack: npt.NDArray[np.float64], rate: int, release_s: float) -> npt.NDArray[np.float64]:
    """Let attenuation recover exponentially: ``R[n] = max(A[n], alpha * R[n-1])`` with ``A = -ln(attack)``.

    In logs this is ``log R[n] = max(log R_prev + (k+1)·ln alpha, k·ln alpha + cummax(log A[j] - j·ln alpha))``,
    evaluated chunk by chunk so the linear terms stay small.
    """
    log_alpha = -1.0 / (release_s * rate)
    with np.errstate(divide="ignore"):
        log_att = np.log(np.maximum(-np.log(np.clip(attack, 1e-30, 1.0)), 0.0))
    out = np.empty_like(log_att)
    previous = -np.inf
    for start in range(0, log_att.shape[0], _RELEASE_CHUNK):
        piece = log_att[start : start + _RELEASE_CHUNK]
        k = np.arange(piece.shape[0], dtype=np.float64)
        running = np.maximum.accumulate(piece - k * log_alpha) + k * log_alpha
        carried = previous + (k + 1.0) * log_alpha
        chunk = np.maximum(running, carried)
        out[start : start + piece.shape[0]] = chunk
        previous = float(chunk[-1])
    result: npt.NDArray[np.float64] = np.exp(-np.exp(out))
    return result
