"""The full-size DiT and VAE built on the meta device have the published parameter counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "param_counts.py"


def _load():
    spec = importlib.util.spec_from_file_location("param_counts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_meta_built_dit_and_vae_match_the_reference_counts():
    counts = _load().count_parts(("dit", "vae"))
    assert counts["dit.transformer"] == 516_695_616  # FluxTransformer2DModel, 6 double + 18 single, 8x128
    assert counts["dit.fc"] == 1024 * 1024 + 1024
    assert counts["dit.duration_emebdder"] == 128 + 257 * 1024 + 1024
    assert counts["dit"] == 518_009_536
    assert counts["vae"] == 156_112_514  # Stable Audio Open Oobleck: encoder 77.99 M + decoder 78.12 M
    assert counts["vae.encoder"] == 77_989_888
