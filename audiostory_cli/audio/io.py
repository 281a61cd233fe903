"""The project's one audio reader and writer, plus sample-rate conversion.

Arrays are ``float32`` shaped ``(channels, samples)`` everywhere in audiostory. The reader validates what it
returns (readable, non-empty, channel count, finite, sane range); the writer validates what it is given (float,
finite, at most 2-D), quantises PCM deterministically (round to nearest, no dither, so stems still null against
the mix) and writes atomically.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ..errors import AudioInputError, UsageError
from ..fsutil import write_with_atomic

Subtype = Literal["PCM_16", "PCM_24", "FLOAT"]
FloatArray = npt.NDArray[np.float32]

BIT_DEPTH_SUBTYPES: dict[int, Subtype] = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
MAX_FLOAT_PEAK = 1000.0  # +60 dBFS: anything louder in a float file is a broken render, not audio
_RIFF_LIMIT_BYTES = 0xFFFF_0000  # above this a plain RIFF/WAV header overflows; RF64 is used instead

# torchaudio's "kaiser_best" settings: flat to ~20.9 kHz at 44.1 kHz, > 100 dB stop-band.
_RESAMPLE_WIDTH = 64
_RESAMPLE_ROLLOFF = 0.9475937167399596
_RESAMPLE_BETA = 14.769656459379492


def subtype_for_bit_depth(bit_depth: int) -> Subtype:
    """16 → PCM_16, 24 → PCM_24, 32 → 32-bit float."""
    try:
        return BIT_DEPTH_SUBTYPES[bit_depth]
    except KeyError:
        raise UsageError(f"bit depth {bit_depth} is not supported; use 16, 24 or 32 (float)") from None


def read_audio(
    path: Path, *, max_channels: int = 2, what: str = "audio file", max_seconds: float | None = None
) -> tuple[FloatArray, int]:
    """Read ``path`` as ``(float32[channels, samples], sample_rate)``; every problem is one ``AudioInputError``.

    ``max_seconds`` refuses a longer file from its header, before any sample is read (a 10-hour file would
    not fit in memory).
    """
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"{what} {path} does not exist")
    try:
        with sf.SoundFile(str(path)) as handle:
            channels, frames, rate = handle.channels, handle.frames, handle.samplerate
            if not 1 <= channels <= max_channels:
                raise AudioInputError(
                    f"{what} {path} has {channels} channels; audiostory reads mono or stereo "
                    f"(at most {max_channels}) — downmix it first"
                )
            if frames <= 0:
                raise AudioInputError(f"{what} {path} holds no audio (0 samples)")
            if max_seconds is not None and frames > max_seconds * rate:
                raise AudioInputError(
                    f"{what} {path} is {frames / rate:.1f} s long; at most {max_seconds:.1f} s is expected here"
                )
            data = handle.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioInputError(f"cannot read {what} {path}: {_one_line(exc)} (is it a WAV/FLAC/AIFF file?)") from exc
    audio = np.ascontiguousarray(data.T, dtype=np.float32)
    _check_finite(audio, rate, f"{what} {path}", AudioInputError)
    peak = float(np.max(np.abs(audio)))
    if peak > MAX_FLOAT_PEAK:
        raise AudioInputError(
            f"{what} {path} peaks at {20 * np.log10(peak):.0f} dBFS; that is not audio (a broken render?)"
        )
    return audio, int(rate)


def write_audio(path: Path, audio: npt.NDArray[np.floating], sample_rate: int, subtype: Subtype) -> Path:
    """Validate and write ``audio`` (``(channels, samples)`` or 1-D mono) as WAV, atomically; returns ``path``.

    PCM is rounded to the nearest step and clipped to full scale; callers keep peaks below 0 dBFS (the export
    limiter does), so clipping never happens on delivered audio.
    """
    data = _validated_for_writing(audio, sample_rate, subtype)
    frames = data.shape[1]
    stored: npt.NDArray[np.generic]
    if subtype == "FLOAT":
        stored = data.T.astype(np.float32)
    else:
        stored = _to_int(data, 16 if subtype == "PCM_16" else 24).T
    width = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}[subtype]
    container = "RF64" if frames * data.shape[0] * width > _RIFF_LIMIT_BYTES else "WAV"

    def _write(tmp: Path) -> None:
        try:
            sf.write(str(tmp), np.ascontiguousarray(stored), sample_rate, subtype=subtype, format=container)
        except sf.LibsndfileError as exc:
            raise _write_error(tmp, exc, stored.nbytes) from exc

    return write_with_atomic(Path(path), _write)


def _write_error(tmp: Path, exc: sf.LibsndfileError, needed: int) -> OSError:
    """libsndfile reports a full disk as a bare "System error"; say ENOSPC when the disk is indeed (nearly) full,
    so the atomic writer turns it into its one-line disk-full message."""
    import errno
    import shutil

    try:
        full = shutil.disk_usage(tmp.parent).free < needed
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, "No space left on device", str(tmp))
    return OSError(errno.EIO, f"cannot write audio: {_one_line(exc)}", str(tmp))


def quantize(audio: FloatArray, subtype: Subtype) -> FloatArray:
    """The float values a file of ``subtype`` stores for ``audio`` (what a reader will get back)."""
    if subtype == "FLOAT":
        return audio.astype(np.float32)
    bits = 16 if subtype == "PCM_16" else 24
    scale = float(2 ** (bits - 1))
    return (np.clip(np.rint(audio.astype(np.float64) * scale), -scale, scale - 1) / scale).astype(np.float32)


def resample(audio: FloatArray, from_rate: int, to_rate: int) -> FloatArray:
    """Band-limited sample-rate conversion of ``(channels, samples)`` with torchaudio (Kaiser-windowed sinc).

    Output length is ``ceil(samples * to_rate / from_rate)``; sample ``k * q`` of the output sits at the time of
    input sample ``k * p`` (``p/q`` the reduced rate ratio), so aligned pieces can be resampled separately.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise UsageError(f"sample rates must be positive, got {from_rate} → {to_rate}")
    if from_rate == to_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    import torch

    with torch.inference_mode():
        out = _resampler(from_rate, to_rate)(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _resampler(from_rate: int, to_rate: int) -> Any:
    """A torchaudio ``Resample`` module (its Kaiser sinc kernel is costly to build, so it is built once)."""
    import torchaudio.transforms

    return torchaudio.transforms.Resample(
        from_rate,
        to_rate,
        lowpass_filter_width=_RESAMPLE_WIDTH,
        rolloff=_RESAMPLE_ROLLOFF,
        resampling_method="sinc_interp_kaiser",
        beta=_RESAMPLE_BETA,
    )


def resample_margin(from_rate: int, to_rate: int) -> int:
    """Input samples of zero padding that hold the whole resampling filter response on either side of a piece."""
    import math

    gcd = math.gcd(from_rate, to_rate)
    orig, new = from_rate // gcd, to_rate // gcd
    base = min(orig, new) * _RESAMPLE_ROLLOFF
    width = math.ceil(_RESAMPLE_WIDTH * orig / base)
    return width + orig + 8


# -- helpers ----------------------------------------------------------------------------------------------


def _validated_for_writing(audio: npt.NDArray[np.floating], sample_rate: int, subtype: Subtype) -> FloatArray:
    if not isinstance(audio, np.ndarray) or not np.issubdtype(audio.dtype, np.floating):
        raise TypeError(f"write_audio needs a float numpy array, got {type(audio).__name__}")
    if audio.ndim == 1:
        audio = audio[np.newaxis, :]
    if audio.ndim != 2:
        raise ValueError(f"write_audio needs (channels, samples) or 1-D audio, got shape {audio.shape}")
    if audio.shape[0] > 8 or audio.shape[1] == 0:
        raise ValueError(f"write_audio got shape {audio.shape}; expected (channels ≤ 8, samples > 0)")
    if subtype not in BIT_DEPTH_SUBTYPES.values():
        raise ValueError(f"unsupported subtype {subtype!r}; use one of {', '.join(BIT_DEPTH_SUBTYPES.values())}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    data = np.asarray(audio, dtype=np.float32)
    _check_finite(data, sample_rate, "audio to write", ValueError)
    return data


def _to_int(audio: FloatArray, bits: int) -> npt.NDArray[np.generic]:
    scale = float(2 ** (bits - 1))
    ints = np.clip(np.rint(audio.astype(np.float64) * scale), -scale, scale - 1)
    if bits == 16:
        return ints.astype(np.int16)
    return ints.astype(np.int32) << 8  # libsndfile takes int32 as left-justified and keeps the top 24 bits


def _check_finite(audio: FloatArray, rate: int, what: str, error: type[Exception]) -> None:
    finite = np.isfinite(audio)
    if not finite.all():
        first = int(np.argmin(finite.all(axis=0)))
        raise error(f"{what} contains NaN or infinite samples (first at {first / max(rate, 1):.3f} s); it is corrupt")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
