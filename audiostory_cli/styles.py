"""Style presets (``presets/styles/*.toml``): the instruction's lead phrase and render settings."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from .errors import UsageError
from .resources import data_dir


@dataclass(frozen=True)
class StylePreset:
    name: str
    description: str
    lead: str
    steps: int
    guidance: float
    crossfade: float


def list_styles() -> list[StylePreset]:
    folder = data_dir("presets") / "styles"
    return [_read(path.stem) for path in sorted(folder.glob("*.toml"))]


def get_style(name: str) -> StylePreset:
    known = [path.stem for path in sorted((data_dir("presets") / "styles").glob("*.toml"))]
    if name not in known:
        raise UsageError(f"unknown --style {name!r}; choose one of: {', '.join(known)}")
    return _read(name)


def _read(name: str) -> StylePreset:
    path = data_dir("presets") / "styles" / f"{name}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return StylePreset(
        name=str(data["name"]),
        description=str(data["description"]),
        lead=str(data["lead"]),
        steps=int(data["steps"]),
        guidance=float(data["guidance"]),
        crossfade=float(data["crossfade"]),
    )
