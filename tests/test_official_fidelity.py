"""Fidelity to the official inference, checked against things this code did not produce.

- ``tests/data/official-keys-fullsize.json`` is the official ``pytorch_model.bin`` key set and shapes (1709 keys),
  derived independently from the official module code (``src/models/mllm/`` of
  https://github.com/TencentARC/AudioStory). It goes
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
from audiostory_cli.weights.official import map_official_state_dict

DATA = Path(__file__).parent / "data"
OFFICIAL_KEYS = DATA / "official-keys-fullsize.json"


@pytest.fixture(scope="module")
def official_shapes() -> dict[str, list[int]]:
    shapes = json.loads(OFFICIAL_KEYS.read_text(encoding="utf-8"))
    assert len(shapes) == 1709
    return shapes


def test_every_official_key_is_mapped_or_ignored_and_fills_every_parameter(official_shapes) -> None:
    from audiostory_cli.model import build_model
    from audiostory_cli.weights.convert import load_mapped_strict

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


# ---------------------------------------------------------------------------------------------------------------
# The sampler against the official loop (TangoFlux ``tangoflux/model.py`` ``inference_flow``, https://github.com/declare-lab/TangoFlux,
# as AudioStory's ``Flux_T5.inference_flow_full_tokens`` calls it)


def official_uncond(text_encoder, num_tokens: int) -> torch.Tensor:
    """T5TokenizerFast([""], max_length=S, padding="max_length") = [</s>, <pad>×(S−1)], mask [1, 0, ...];
    all S output vectors are used."""
    ids = torch.tensor([[1] + [0] * (num_tokens - 1)])
    with torch.no_grad():
        return text_encoder(input_ids=ids, attention_mask=(ids == 1).long()).last_hidden_state[0]


def official_sample(
    dit,
    fused: torch.Tensor,
    uncond: torch.Tensor,
    duration: float,
    *,
    steps: int = 50,
    guidance: float = 4.0,
    seed: int = 0,
) -> torch.Tensor:
    """``Flux_T5.inference_flow_full_tokens`` from the reference's formulas: torch.manual_seed(seed) then
    randn(1, 645, C) on the CPU; [uncond; cond] as one batch of 2 with the same duration token appended to both;
    pooled = fc(unmasked mean over the S tokens); txt_ids zeros, img_ids (i, i, i); timestep t/1000;
    sigmas linspace(1, 1/N, N) then 0; Euler x += (σ_next − σ)·v; CFG v_u + g (v_c − v_u); trim to the duration."""
    import numpy as np

    channels, canvas = dit.dims.in_channels, dit.dims.audio_seq_len
    torch.manual_seed(seed)
    latents = torch.randn(1, canvas, channels)
    hidden = torch.stack([uncond, fused])  # (2, S, D)
    pooled = dit.fc(hidden.mean(dim=1))
    seconds = torch.tensor([duration, duration])
    dur = dit.duration_emebdder(seconds)  # clamp to [0, 30], /30, Fourier features, Linear: (2, 1, D)
    encoder_hidden_states = torch.cat([hidden, dur], dim=1)
    axes = dit.num_rope_axes
    txt_ids = torch.zeros(encoder_hidden_states.shape[1], axes)
    img_ids = torch.arange(canvas, dtype=torch.float32)[:, None].repeat(1, axes)
    sigmas = np.append(np.linspace(1.0, 1.0 / steps, steps), 0.0)
    timesteps = sigmas[:-1] * 1000
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            latent_input = torch.cat([latents, latents])
            v = dit.transformer(
                hidden_states=latent_input,
                encoder_hidden_states=encoder_hidden_states,
                pooled_projections=pooled,
                timestep=torch.full((2,), t / 1000),
                img_ids=img_ids,
                txt_ids=txt_ids,
                return_dict=False,
            )[0]
            v_uncond, v_cond = v.chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
            latents = latents + float(sigmas[i + 1] - sigmas[i]) * v
    frames = -(-round(duration * 44_100) // 2048)
    return latents[0, :frames]


@pytest.fixture(scope="module")
def tiny_official():
    from audiostory_cli.config import tiny_dims
    from audiostory_cli.generator.dit import build_dit
    from audiostory_cli.generator.text_encoder import build_text_encoder

    torch.manual_seed(0)
    dims = tiny_dims()
    dit = build_dit(dims.dit)
    with torch.no_grad():  # larger AdaLN/zero-init outputs, so the conditioning visibly matters
        for param in dit.parameters():
            param.add_(torch.randn(param.shape) * 0.02)
    text_encoder = build_text_encoder(dims.text_encoder).eval()
    return dit, text_encoder, dims


@pytest.mark.parametrize("seconds", [5.0, 26.0])
def test_fixed_canvas_render_equals_the_official_loop(tiny_official, seconds) -> None:
    from audiostory_cli.generator.render import EventCondition, render_latents
    from audiostory_cli.generator.text_encoder import unconditional_tokens
    from audiostory_cli.runtime import cpu_runtime

    dit, text_encoder, dims = tiny_official
    fused = torch.randn(
        dims.bridge.num_semantic_tokens, dims.dit.joint_attention_dim, generator=torch.Generator().manual_seed(3)
    )
    uncond = official_uncond(text_encoder, dims.bridge.num_semantic_tokens)
    torch.testing.assert_close(unconditional_tokens(text_encoder, dims.bridge.num_semantic_tokens), uncond)
    want = official_sample(dit, fused, uncond, seconds)
    ours = render_latents(
        dit, [EventCondition(fused, seconds, seed=0)], steps=50, guidance=4.0, uncond=uncond, runtime=cpu_runtime()
    )[0]
    assert ours.shape == want.shape
    torch.testing.assert_close(ours, want, rtol=1e-4, atol=1e-4)
    sized = render_latents(
        dit,
        [EventCondition(fused, seconds, seed=0)],
        steps=50,
        guidance=4.0,
        uncond=uncond,
        runtime=cpu_runtime(),
        canvas="sized",
    )[0]
    if seconds < 20:  # the sized canvas is a different computation: it is an opt-in, not the default
        assert (sized - want).norm() / want.norm() > 1e-3
