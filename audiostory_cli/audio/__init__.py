"""Audio I/O, timeline mixing, loudness measurement, the true-peak limiter, presets and cue sheets.

``io`` is the project's one reader/writer of audio files; everything else here is pure numpy (torchaudio,
scipy and pyloudnorm are imported inside the functions that need them).
"""

from .io import quantize, read_audio, resample, subtype_for_bit_depth, write_audio
from .limiter import limiter_gain
from .loudness import integrated_loudness, loudness_range, true_peak, true_peak_envelope
from .presets import LoudnessPreset, load_preset, preset_names

__all__ = [
    "LoudnessPreset",
    "integrated_loudness",
    "limiter_gain",
    "load_preset",
    "loudness_range",
    "preset_names",
    "quantize",
    "read_audio",
    "resample",
    "subtype_for_bit_depth",
    "true_peak",
    "true_peak_envelope",
    "write_audio",
]
