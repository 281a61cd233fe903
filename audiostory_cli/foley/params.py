"""The five controls every foley class takes (``EventParams``), shared by the synthesisers and the bank."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

PARAM_NAMES: tuple[str, ...] = ("intensity", "tempo", "pitch", "texture", "distance")


@dataclass(frozen=True)
class EventParams:
    """The five controls of every class, each in [0, 1]."""

    intensity: float = 0.5  # loudness and density/force of the source
    tempo: float = 0.5  # rate of repetition, modulation or movement
    pitch: float = 0.5  # frequency register of the source (resonances, fundamental)
    texture: float = 0.5  # timbre: soft/smooth/pure (0) to hard/rough/bright (1), per class
    distance: float = 0.3  # 0 = close and dry, 1 = far: quieter, duller, more room, narrower image

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"EventParams.{name}={value!r} is not a number; use a float in [0, 1]")
            if not 0.0 <= value <= 1.0:
                raise InputError(f"EventParams.{name}={value!r} is out of range; use a float in [0, 1]")
            object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventParams:
        unknown = set(data) - set(PARAM_NAMES)
        if unknown:
            raise InputError(f"unknown event parameter(s) {sorted(unknown)}; known: {', '.join(PARAM_NAMES)}")
        return cls(**{k: float(v) for k, v in data.items()})
