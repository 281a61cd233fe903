"""Seconds ↔ samples ↔ latent frames for the Oobleck VAE. Pure Python, no torch: light modules may import it.

Every length in the renderer goes through here, so "the plan's durations are honoured to the sample" means one
rounding rule everywhere: ``samples = round(seconds × sample_rate)``, ``frames = ceil(samples / hop)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import FULL_HOP, FULL_SAMPLE_RATE, VAEDims


@dataclass(frozen=True)
class LatentGeometry:
    """Sample rate and hop of the VAE: one latent frame covers ``hop_length`` samples."""

    sample_rate: int = FULL_SAMPLE_RATE
    hop_length: int = FULL_HOP

    @classmethod
    def from_vae(cls, dims: VAEDims) -> LatentGeometry:
        return cls(sample_rate=dims.sampling_rate, hop_length=dims.hop_length)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (21.533 for Oobleck at 44.1 kHz)."""
        return self.sample_rate / self.hop_length

    def samples(self, seconds: float) -> int:
        """Exact sample count of ``seconds`` of audio."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        return int(round(seconds * self.sample_rate))

    def frames(self, seconds: float) -> int:
        """Latent frames needed to decode at least ``samples(seconds)`` samples."""
        return -(-self.samples(seconds) // self.hop_length)

    def seconds(self, frames: int) -> float:
        """Duration covered by ``frames`` latent frames."""
        return frames * self.hop_length / self.sample_rate
