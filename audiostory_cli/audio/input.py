"""Reading a user's audio (``continue``, ``describe``): common formats, any sample rate, mono or stereo.

soundfile (libsndfile 1.2, bundled) reads WAV, FLAC, OGG/Vorbis, AIFF and MP3 with no system libraries. Other
containers (M4A/AAC, MP4, WMA, WebM, ...) are decoded with pydub, which needs ``ffmpeg`` on PATH; without it the
error names the missing tool. Nothing is converted implicitly: ``InputAudio`` keeps the file's own rate and
channels, and ``stereo(rate)`` / ``mono(rate)`` up- or down-mix and resample (torchaudio) on request.

Limits, stated in every error that enforces them: 1 or 2 channels; ``MIN_INPUT_SECONDS`` to
``MAX_INPUT_SECONDS`` long; finite samples; peaks below +60 dBFS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import AudioInputError
from .io import MAX_FLOAT_PEAK, FloatArray, resample

MAX_INPUT_SECONDS = 600.0  # 10 minutes: the continuation only needs the recent past, and it is held in memory
MIN_INPUT_SECONDS = 0.5  # shortest event a story holds
MAX_INPUT_CHANNELS = 2
DIRECT_FORMATS = "WAV, FLAC, OGG, AIFF or MP3"
DIRECT_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".mp3"})
INSTALL_FFMPEG = "install ffmpeg (apt install ffmpeg, brew install ffmpeg or winget install ffmpeg)"


@dataclass(frozen=True)
class InputAudio:
    """A validated input at its own rate: ``audio`` is float32 ``(channels, frames)`` with 1 or 2 channels."""

    path: Path
    audio: FloatArray
    sample_rate: int
    decoder: str  # "soundfile" or "ffmpeg"

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def frames(self) -> int:
        return int(self.audio.shape[1])

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def stereo(self, rate: int) -> FloatArray:
        """``(2, n)`` at ``rate``: a mono input is copied to both channels, then resampled (band-limited sinc)."""
        audio = np.repeat(self.audio, 2, axis=0) if self.channels == 1 else self.audio
        return resample(audio, self.sample_rate, rate)

    def mono(self, rate: int, *, last_seconds: float | None = None) -> FloatArray:
        """``(n,)`` at ``rate``: the mean of the channels ((L+R)/2), only the last ``last_seconds`` if given."""
        audio = self.audio
        if last_seconds is not None:
            audio = audio[:, max(0, self.frames - round(last_seconds * self.sample_rate)) :]
        mono: FloatArray = resample(audio.mean(axis=0, keepdims=True), self.sample_rate, rate)[0]
        return mono


def read_input_audio(
    path: Path,
    *,
    max_seconds: float = MAX_INPUT_SECONDS,
    min_seconds: float = MIN_INPUT_SECONDS,
    what: str = "input audio",
) -> InputAudio:
    """Read and validate ``path``; every problem is one ``AudioInputError`` line saying what, where and how to fix."""
    path = Path(path)
    where = f"{what} {path}"
    if not path.exists():
        raise AudioInputError(f"{where} does not exist; check the path")
    if path.is_dir():
        raise AudioInputError(f"{where} is a folder; give an audio file ({DIRECT_FORMATS}, or M4A with ffmpeg)")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise AudioInputError(f"{where} is not a regular file; give an audio file ({DIRECT_FORMATS})")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise AudioInputError(f"cannot open {where}: {exc.strerror or exc}; check its permissions") from exc
    try:
        with _quiet_decoder():
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        audio, rate = _decode_with_ffmpeg(path, where, _sndfile_reason(exc), max_seconds)
        decoder = "ffmpeg"
    else:
        _check_header(where, info.channels, info.frames, info.samplerate, max_seconds)
        with _quiet_decoder():
            audio, rate = _read_soundfile(path, where)
        decoder = "soundfile"
    _check_header(where, audio.shape[0], audio.shape[1], rate, max_seconds)
    _check_samples(where, audio, rate)
    if audio.shape[1] / rate < min_seconds:
        raise AudioInputError(
            f"{where} is {audio.shape[1] / rate:.3f} s long; at least {min_seconds:g} s of audio is needed"
        )
    return InputAudio(path=path, audio=audio, sample_rate=rate, decoder=decoder)


def load_audio_input(path: Path, sample_rate: int, *, max_seconds: float = MAX_INPUT_SECONDS) -> FloatArray:
    """The input as stereo float32 ``(2, n)`` at ``sample_rate`` (upmixed and resampled explicitly)."""
    return read_input_audio(path, max_seconds=max_seconds).stereo(sample_rate)


# -- decoders ---------------------------------------------------------------------------------------------


def _read_soundfile(path: Path, where: str) -> tuple[FloatArray, int]:
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioInputError(f"cannot decode {where}: {_one_line(exc)}; the file is damaged") from exc
    return np.ascontiguousarray(data.T, dtype=np.float32), int(rate)


@contextlib.contextmanager
def _quiet_decoder() -> Iterator[None]:
    """Silence what C decoders (libmpg123) print straight to file descriptor 2 while a file is opened or read:
    a damaged MP3 would otherwise spill "[src/libmpg123/parse.c ...] warning" lines around our one error line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _sndfile_reason(exc: BaseException) -> str:
    """libsndfile's reason, without its generic "File does not exist" said of files that do exist."""
    text = _one_line(exc)
    if "does not exist or is not a regular file" in text:
        return "no decoder recognises its contents"
    return text


def _decode_with_ffmpeg(path: Path, where: str, reason: str, max_seconds: float) -> tuple[FloatArray, int]:
    """Formats libsndfile does not know, through pydub + ffmpeg; a clear error when ffmpeg is missing."""
    suffix = path.suffix.lower() or "(no extension)"
    if shutil.which("ffmpeg") is None:
        if suffix in DIRECT_SUFFIXES:
            raise AudioInputError(
                f"cannot read {where}: it is not a valid {suffix[1:].upper()} file ({reason}); is it damaged, "
                "or not audio at all?"
            )
        raise AudioInputError(
            f"cannot read {where}: it is not a {DIRECT_FORMATS} file ({reason}); reading {suffix} and other "
            f"formats needs ffmpeg, which is not on PATH: {INSTALL_FFMPEG}, or convert the file to WAV"
        )
    segment_class, decode_error = _pydub()
    seconds = _probe_seconds(path)
    if seconds is not None and seconds > max_seconds:
        raise AudioInputError(_too_long(where, seconds, max_seconds))
    try:
        segment = segment_class.from_file(str(path))
    except (decode_error, OSError, IndexError, ValueError) as exc:
        raise AudioInputError(
            f"cannot read {where}: neither soundfile nor ffmpeg can decode it ({_one_line(exc)[:200]}); "
            "is it an audio file?"
        ) from exc
    return segment_to_array(segment)


def segment_to_array(segment: Any) -> tuple[FloatArray, int]:
    """A pydub ``AudioSegment`` as float32 ``(channels, frames)`` in [-1, 1) and its frame rate."""
    width = int(segment.sample_width)
    channels = int(segment.channels)
    samples = np.asarray(segment.get_array_of_samples())
    if samples.size % channels:
        raise AudioInputError(f"decoded audio has {samples.size} samples, not a multiple of {channels} channels")
    scale = float(2 ** (8 * width - 1))
    audio = (samples.reshape(-1, channels).T.astype(np.float64) / scale).astype(np.float32)
    return np.ascontiguousarray(audio), int(segment.frame_rate)


def _pydub() -> tuple[Any, type[Exception]]:
    with warnings.catch_warnings():  # pydub warns about ffmpeg lookup and audioop at import
        warnings.simplefilter("ignore")
        from pydub import AudioSegment
        from pydub.exceptions import CouldntDecodeError
    return AudioSegment, CouldntDecodeError


def _probe_seconds(path: Path) -> float | None:
    """Duration from ffprobe without decoding (None when ffprobe is missing or does not say)."""
    if shutil.which("ffprobe") is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydub.utils import mediainfo
    try:
        return float(mediainfo(str(path)).get("duration", ""))
    except (ValueError, OSError):
        return None


# -- checks -----------------------------------------------------------------------------------------------


def _check_header(where: str, channels: int, frames: int, rate: int, max_seconds: float) -> None:
    if not 1 <= channels <= MAX_INPUT_CHANNELS:
        raise AudioInputError(
            f"{where} has {channels} channels; audiostory takes mono or stereo (at most {MAX_INPUT_CHANNELS}): "
            "downmix it to stereo first"
        )
    if rate <= 0:
        raise AudioInputError(f"{where} has sample rate {rate} Hz; the file header is damaged")
    if frames <= 0:
        raise AudioInputError(f"{where} holds no audio (0 samples)")
    if frames / rate > max_seconds:
        raise AudioInputError(_too_long(where, frames / rate, max_seconds))


def _too_long(where: str, seconds: float, max_seconds: float) -> str:
    return (
        f"{where} is {_clock(seconds)} long ({seconds:.1f} s); the limit is {max_seconds:g} s "
        f"({_clock(max_seconds)}): trim it to its last minutes, which is what a continuation follows"
    )


def _check_samples(where: str, audio: FloatArray, rate: int) -> None:
    finite = np.isfinite(audio)
    if not finite.all():
        first = int(np.argmin(finite.all(axis=0)))
        share = 100.0 * (1.0 - float(finite.mean()))
        raise AudioInputError(
            f"{where} contains NaN or infinite samples ({share:.0f}% of them, the first at {first / rate:.3f} s); "
            "the file is corrupt: export it again"
        )
    peak = float(np.max(np.abs(audio)))
    if peak > MAX_FLOAT_PEAK:
        raise AudioInputError(
            f"{where} peaks at {20 * np.log10(peak):.0f} dBFS (limit +60 dBFS); that is not audio: export it again"
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
