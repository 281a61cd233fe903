"""Loudness and peak measurement: BS.1770 integrated loudness and LRA (pyloudnorm), oversampled true peak.

pyloudnorm has no true-peak meter, so it is here: ≥ 4× polyphase oversampling (BS.1770-4 Annex 2 asks for a
≥ 192 kHz effective rate), max |x| over the interpolated phases, linked over channels.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from ..errors import AudioInputError

FloatArray = npt.NDArray[np.float32]

GATE_LUFS = -70.0  # BS.1770 absolute gate: a programme entirely below it measures -inf
MIN_MEASURE_SECONDS = 0.4  # one BS.1770 gating block
MIN_LRA_SECONDS = 1.5  # pyloudnorm appends 1.5 s of silence and needs one 3 s block
_TP_CHUNK = 1 << 18  # base-rate samples per oversampling chunk: bounds memory on long programmes
_TP_HALF_TAPS = 24  # interpolation filter half-length, in base-rate samples
_TP_CONTEXT = 32  # base-rate samples of real context around each chunk (≥ the filter's half-length)


def oversample_factor(rate: int) -> int:
    """True-peak oversampling: at least 4×, and enough to reach 192 kHz at low rates."""
    return max(4, math.ceil(192_000 / rate))


def integrated_loudness(audio: FloatArray, rate: int) -> float:
    """Integrated loudness (LUFS, BS.1770-4 gating) of ``(channels, samples)``; ``-inf`` for (near) silence."""
    _check_measurable(audio, rate, MIN_MEASURE_SECONDS, "measure loudness")
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    return float(meter.integrated_loudness(_for_pyloudnorm(audio)))


def loudness_range(audio: FloatArray, rate: int) -> float | None:
    """EBU Tech 3342 loudness range in LU, or ``None`` when the audio is too short or too quiet to have one."""
    if audio.shape[-1] < MIN_LRA_SECONDS * rate:
        return None
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    value = float(meter.loudness_range(_for_pyloudnorm(audio)))
    return value if math.isfinite(value) else None


def true_peak_envelope(audio: FloatArray, rate: int, factor: int | None = None) -> FloatArray:
    """Per base-rate sample ``n``: max |x| over all channels and the oversampled phases in ``[n, n+1)``.

    Polyphase: phase ``p`` of the ``factor``× interpolation is ``x`` convolved with every ``factor``-th filter
    tap from ``p``, i.e. the signal at time ``n + p/factor``; chunks bound memory on long programmes.
    """
    from scipy.signal import oaconvolve

    factor = factor or oversample_factor(rate)
    phases = [np.ascontiguousarray(_interpolation_filter(factor)[p::factor])[np.newaxis, :] for p in range(factor)]
    channels, frames = audio.shape
    envelope = np.zeros(frames, dtype=np.float32)
    for start in range(0, frames, _TP_CHUNK):
        stop = min(start + _TP_CHUNK, frames)
        lo, hi = max(0, start - _TP_CONTEXT), min(frames, stop + _TP_CONTEXT)
        piece = np.zeros((channels, (stop - start) + 2 * _TP_CONTEXT), dtype=np.float32)
        offset = _TP_CONTEXT - (start - lo)
        piece[:, offset : offset + (hi - lo)] = audio[:, lo:hi]
        first = _TP_HALF_TAPS + _TP_CONTEXT  # the filter's centre tap is ``_TP_HALF_TAPS`` into each phase
        chunk = envelope[start:stop]
        for taps in phases:
            phase = oaconvolve(piece, taps, axes=-1)[:, first : first + (stop - start)]
            np.maximum(chunk, np.abs(phase).max(axis=0), out=chunk)
    return envelope


@functools.lru_cache(maxsize=8)
def _interpolation_filter(factor: int) -> FloatArray:
    """Linear-phase Kaiser-windowed sinc interpolator, 2·24 taps per phase, cut-off at the original Nyquist.

    Longer than BS.1770-4's 12 taps per phase, so content near Nyquist under-reads less (≈ 0.1 dB at worst
    against an ideal reconstruction on square-wave clicks, ~0.01 dB on band-limited audio).
    """
    from scipy.signal import firwin

    taps = firwin(2 * _TP_HALF_TAPS * factor + 1, 1.0 / factor, window=("kaiser", 8.0)) * factor
    return np.asarray(taps, dtype=np.float32)


def true_peak(audio: FloatArray, rate: int) -> float:
    """Linear true peak (oversampled), linked over channels."""
    if audio.shape[-1] == 0:
        return 0.0
    return float(true_peak_envelope(audio, rate).max())


def sample_peak(audio: FloatArray) -> float:
    return float(np.max(np.abs(audio))) if audio.size else 0.0


def to_db(linear: float) -> float:
    """20·log10, with ``-inf`` for zero."""
    return 20.0 * math.log10(linear) if linear > 0 else -math.inf


def from_db(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def finite_or_none(value: float, ndigits: int = 2) -> float | None:
    """For JSON: ``-inf``/``nan`` become ``None`` (JSON has no infinities)."""
    return round(value, ndigits) if math.isfinite(value) else None


def _for_pyloudnorm(audio: FloatArray) -> npt.NDArray[np.float64]:
    return np.ascontiguousarray(audio.T, dtype=np.float64)  # pyloudnorm wants (samples, channels)


def _check_measurable(audio: FloatArray, rate: int, seconds: float, action: str) -> None:
    if audio.ndim != 2 or not 1 <= audio.shape[0] <= 5:
        raise ValueError(f"loudness needs (channels ≤ 5, samples) audio, got shape {audio.shape}")
    if audio.shape[1] < seconds * rate:
        raise AudioInputError(
            f"the audio is {audio.shape[1] / rate:.3f} s long; at least {seconds} s is needed to {action}"
        )
