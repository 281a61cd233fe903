"""Named loudness presets: ``presets/loudness/NAME.toml`` (integrated target, true-peak ceiling, format)."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError
from ..resources import data_dir

SAMPLE_RATES: tuple[int, ...] = (16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000)
BIT_DEPTHS: tuple[int, ...] = (16, 24, 32)
LUFS_RANGE = (-60.0, -5.0)
TRUE_PEAK_RANGE = (-20.0, 0.0)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_FIELDS = {"name", "description", "integrated_lufs", "true_peak_dbtp", "tolerance_lu", "sample_rate", "bit_depth"}


@dataclass(frozen=True)
class LoudnessPreset:
    name: str
    description: str
    integrated_lufs: float | None  # None: no loudness normalisation
    true_peak_dbtp: float
    tolerance_lu: float = 0.5
    sample_rate: int = 48_000
    bit_depth: int = 24


def presets_dir() -> Path:
    return data_dir("presets") / "loudness"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load_preset(name: str) -> LoudnessPreset:
    """Read and validate ``presets/loudness/NAME.toml``; an unknown name lists the known ones."""
    known = preset_names()
    if not _NAME_RE.match(name) or name not in known:
        raise UsageError(f"unknown loudness preset {name!r}; known presets: {', '.join(known)}")
    path = presets_dir() / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"loudness preset {path} cannot be read: {exc}") from exc
    return _preset_from_dict(data, path)


def check_targets(lufs: float | None, true_peak: float) -> None:
    """Raise ``UsageError`` when a loudness target or ceiling is outside the supported range."""
    if lufs is not None and not (math.isfinite(lufs) and LUFS_RANGE[0] <= lufs <= LUFS_RANGE[1]):
        raise UsageError(f"--lufs {lufs} must be between {LUFS_RANGE[0]:g} and {LUFS_RANGE[1]:g} LUFS")
    if not (math.isfinite(true_peak) and TRUE_PEAK_RANGE[0] <= true_peak <= TRUE_PEAK_RANGE[1]):
        raise UsageError(
            f"--true-peak {true_peak} must be between {TRUE_PEAK_RANGE[0]:g} and {TRUE_PEAK_RANGE[1]:g} dBTP"
        )


def check_format(sample_rate: int, bit_depth: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise UsageError(
            f"--sample-rate {sample_rate} is not supported; use one of {', '.join(map(str, SAMPLE_RATES))}"
        )
    if bit_depth not in BIT_DEPTHS:
        raise UsageError(f"--bit-depth {bit_depth} is not supported; use 16, 24 or 32 (float)")


def _preset_from_dict(data: dict[str, Any], path: Path) -> LoudnessPreset:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InputError(f"loudness preset {path}: unknown field {unknown[0]!r}; known: {', '.join(sorted(_FIELDS))}")

    def number(key: str, default: float | None) -> float | None:
        value = data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"loudness preset {path}: {key} must be a number, got {value!r}")
        return float(value)

    def whole(key: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"loudness preset {path}: {key} must be a whole number, got {value!r}")
        return value

    true_peak = number("true_peak_dbtp", None)
    if true_peak is None:
        raise InputError(f"loudness preset {path}: true_peak_dbtp is required")
    tolerance = number("tolerance_lu", 0.5)
    if tolerance is None or not 0.0 < tolerance <= 5.0:
        raise InputError(f"loudness preset {path}: tolerance_lu must be in (0, 5] LU")
    if data.get("name", path.stem) != path.stem:
        raise InputError(f"loudness preset {path}: name {data.get('name')!r} must match the file name")
    preset = LoudnessPreset(
        name=path.stem,
        description=str(data.get("description", "")),
        integrated_lufs=number("integrated_lufs", None),
        true_peak_dbtp=true_peak,
        tolerance_lu=tolerance,
        sample_rate=whole("sample_rate", 48_000),
        bit_depth=whole("bit_depth", 24),
    )
    try:
        check_targets(preset.integrated_lufs, preset.true_peak_dbtp)
        check_format(preset.sample_rate, preset.bit_depth)
    except UsageError as exc:
        raise InputError(f"loudness preset {path}: {exc}") from exc
    return preset
