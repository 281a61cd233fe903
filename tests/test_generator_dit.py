"""AudioDiT: official key names, duration token, RoPE axes, and that padding masks really mask."""

from __future__ import annotations

import math

import pytest
import torch

from audiostory_cli.config import tiny_dims
from audiostory_cli.generator.dit import FULL_ROPE_AXES, DurationEmbedder, build_dit, rope_axes


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    return build_dit(tiny_dims().dit)


def test_rope_axes_sum_to_head_dim_and_match_official_at_full_size():
    assert rope_axes(128) == FULL_ROPE_AXES == (16, 56, 56)
    for head_dim in (6, 16, 32, 64, 96, 128):
        axes = rope_axes(head_dim)
        assert sum(axes) == head_dim and all(a > 0 and a % 2 == 0 for a in axes)
    with pytest.raises(ValueError):
        rope_axes(15)


def test_state_dict_keys_follow_the_official_names(dit):
    dims = tiny_dims().dit
    sd = dit.state_dict()
    assert sd["duration_emebdder.time_positional_embedding.0.weights"].shape == (dims.duration_fourier_dim // 2,)
    assert sd["duration_emebdder.time_positional_embedding.1.weight"].shape == (
        dims.joint_attention_dim,
        dims.duration_fourier_dim + 1,
    )
    assert sd["fc.0.weight"].shape == (dims.pooled_projection_dim, dims.joint_attention_dim)
    for key in (
        "transformer.x_embedder.weight",
        "transformer.context_embedder.weight",
        "transformer.time_text_embed.text_embedder.linear_1.weight",
        "transformer.transformer_blocks.0.attn.add_q_proj.weight",
        "transformer.single_transformer_blocks.0.proj_mlp.weight",
        "transformer.proj_out.weight",
    ):
        assert key in sd
    assert {k.split(".")[0] for k in sd} == {"transformer", "fc", "duration_emebdder"}


def test_duration_token_is_fourier_features_of_clamped_normalised_seconds():
    torch.manual_seed(1)
    emb = DurationEmbedder(embed_dim=4, fourier_dim=6, max_duration=30.0)
    w = emb.time_positional_embedding[0].weights.detach()
    lin = emb.time_positional_embedding[1]
    for seconds, t in ((15.0, 0.5), (45.0, 1.0), (-3.0, 0.0)):
        feats = torch.cat([torch.tensor([t]), torch.sin(2 * math.pi * t * w), torch.cos(2 * math.pi * t * w)])
        expected = lin(feats)
        got = emb(torch.tensor([seconds]))
        assert got.shape == (1, 1, 4)
        torch.testing.assert_close(got[0, 0], expected, rtol=0, atol=1e-6)


def test_velocity_shape_and_masked_padding_does_not_leak(dit):
    torch.manual_seed(2)
    x = torch.randn(2, 30, 8)
    ctx = torch.randn(2, 8, 32)
    durations, sigma = torch.tensor([1.4, 0.9]), torch.tensor([0.7, 0.7])
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    with torch.no_grad():
        v = dit.velocity(x, ctx, durations, sigma, mask)
        garbage = x.clone()
        garbage[1, 20:] = 1e3
        v_garbage = dit.velocity(garbage, ctx, durations, sigma, mask)
        alone = dit.velocity(x[1:, :20], ctx[1:], durations[1:], sigma[1:])
        unmasked = dit.velocity(garbage, ctx, durations, sigma)
    assert v.shape == (2, 30, 8) and torch.isfinite(v).all()
    torch.testing.assert_close(v_garbage[1, :20], v[1, :20], rtol=0, atol=1e-5)
    torch.testing.assert_close(v[1, :20], alone[0], rtol=0, atol=1e-5)
    # without the mask the garbage frames do change the real ones: the mask is what isolates them
    assert (unmasked[1, :20] - alone[0]).abs().max() > 1e-3


def test_velocity_depends_on_duration_and_context(dit):
    torch.manual_seed(3)
    x, ctx = torch.randn(1, 16, 8), torch.randn(1, 8, 32)
    sigma = torch.tensor([0.5])
    with torch.no_grad():
        base = dit.velocity(x, ctx, torch.tensor([2.0]), sigma)
        other_duration = dit.velocity(x, ctx, torch.tensor([9.0]), sigma)
        other_context = dit.velocity(x, ctx + 1.0, torch.tensor([2.0]), sigma)
    assert not torch.allclose(base, other_duration)
    assert not torch.allclose(base, other_context)
