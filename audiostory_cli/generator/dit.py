"""The TangoFlux-style audio DiT: diffusers ``FluxTransformer2DModel`` over 1-D latent sequences, conditioned on
bridge tokens plus one duration token, with a pooled vector from the mean of the bridge tokens.

Submodule names follow the official ``Flux_T5`` so checkpoint keys map one-to-one:
``tangoflux.transformer.*`` → ``transformer.*``, ``tangoflux.fc.*`` → ``fc.*``,
``tangoflux.duration_emebdder.*`` → ``duration_emebdder.*`` (the misspelling is the official one).

The module only predicts velocity (v = noise − x0); sampling lives in ``generator.sampler``.
"""

from __future__ import annotations

import math

import torch
from diffusers import FluxTransformer2DModel
from torch import nn

from ..config import DiTDims

# The official model keeps diffusers' default 3 RoPE axes and feeds the frame index (i, i, i) to all of them.
FULL_ROPE_AXES: tuple[int, int, int] = (16, 56, 56)


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Three even RoPE axis sizes summing to ``head_dim``, in the official 16:56:56 ratio where possible.

    ``head_dim`` 128 gives exactly (16, 56, 56); 16 (tiny) gives (2, 6, 8).
    """
    if head_dim < 6 or head_dim % 2:
        raise ValueError(f"attention_head_dim must be even and >= 6 for 3 RoPE axes, got {head_dim}")
    first = max(2, 2 * round(head_dim * 16 / 128 / 2))
    rest = head_dim - first
    second = 2 * (rest // 4)
    return first, second, rest - second


class StableAudioPositionalEmbedding(nn.Module):
    """Random-Fourier features of a scalar in [0, 1]: ``[t, sin(2πtw), cos(2πtw)]`` (dim + 1 values)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"duration_fourier_dim must be even, got {dim}")
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        times = times[..., None]
        freqs = times * self.weights[None] * 2 * math.pi
        return torch.cat((times, freqs.sin(), freqs.cos()), dim=-1)


class DurationEmbedder(nn.Module):
    """Seconds → one (B, 1, embed_dim) token: clamp to [0, max], divide by max, Fourier features, Linear."""

    def __init__(self, embed_dim: int, fourier_dim: int, max_duration: float) -> None:
        super().__init__()
        if max_duration <= 0:
            raise ValueError(f"max_duration must be > 0, got {max_duration}")
        self.time_positional_embedding = nn.Sequential(
            StableAudioPositionalEmbedding(fourier_dim),
            nn.Linear(fourier_dim + 1, embed_dim),
        )
        self.embed_dim = embed_dim
        self.max_duration = float(max_duration)

    def forward(self, seconds: torch.Tensor) -> torch.Tensor:
        dtype = _linear(self.time_positional_embedding, 1).weight.dtype
        normalized = (seconds.clamp(0.0, self.max_duration) / self.max_duration).to(dtype)
        return self.time_positional_embedding(normalized).view(-1, 1, self.embed_dim)


def _linear(layers: nn.Sequential, index: int) -> nn.Linear:
    """Layer ``index`` of ``layers``, a Linear by construction (its weight gives the part's dtype and device)."""
    layer = layers[index]
    assert isinstance(layer, nn.Linear)
    return layer


class AudioDiT(nn.Module):
    """``transformer`` + pooled ``fc`` + ``duration_emebdder``; ``velocity()`` is the only entry point."""

    def __init__(self, dims: DiTDims) -> None:
        super().__init__()
        head_dim = dims.attention_head_dim
        axes = FULL_ROPE_AXES if head_dim == sum(FULL_ROPE_AXES) else rope_axes(head_dim)
        self.dims = dims
        self.transformer = FluxTransformer2DModel(
            in_channels=dims.in_channels,
            num_layers=dims.num_layers,
            num_single_layers=dims.num_single_layers,
            attention_head_dim=head_dim,
            num_attention_heads=dims.num_attention_heads,
            joint_attention_dim=dims.joint_attention_dim,
            pooled_projection_dim=dims.pooled_projection_dim,
            guidance_embeds=False,
            axes_dims_rope=axes,
        )
        self.fc = nn.Sequential(nn.Linear(dims.joint_attention_dim, dims.pooled_projection_dim), nn.ReLU())
        self.duration_emebdder = DurationEmbedder(
            dims.joint_attention_dim, dims.duration_fourier_dim, dims.max_duration
        )
        self.num_rope_axes = len(axes)

    @property
    def dtype(self) -> torch.dtype:
        return _linear(self.fc, 0).weight.dtype

    @property
    def device(self) -> torch.device:
        return _linear(self.fc, 0).weight.device

    def forward(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        durations: torch.Tensor,
        sigma: torch.Tensor,
        latent_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity for ``latents`` (B, L, C) at noise level ``sigma`` (B,) in [0, 1].

        ``context`` (B, S, D) are the fused bridge tokens (or T5("") tokens for the unconditional half);
        ``durations`` (B,) seconds; ``latent_mask`` (B, L) bool, True on real frames, when rows are padded.
        Returns (B, L, C) in the module dtype.
        """
        batch, length, _ = latents.shape
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != self.dims.joint_attention_dim:
            raise ValueError(
                f"context must be (B={batch}, S, {self.dims.joint_attention_dim}), got {tuple(context.shape)}"
            )
        dtype, device = self.dtype, latents.device
        context = context.to(dtype)
        # Official: unmasked mean over the S bridge tokens, before the duration token is appended.
        pooled = self.fc(context.mean(dim=1))
        duration_token = self.duration_emebdder(durations.to(device=device, dtype=torch.float32)).to(dtype)
        tokens = torch.cat([context, duration_token], dim=1)
        txt_ids = torch.zeros(tokens.shape[1], self.num_rope_axes, device=device)
        img_ids = torch.arange(length, device=device, dtype=torch.float32)[:, None].expand(length, self.num_rope_axes)
        attention_kwargs = None
        if latent_mask is not None:
            keys = torch.cat(
                [torch.ones(batch, tokens.shape[1], dtype=torch.bool, device=device), latent_mask.to(device)],
                dim=1,
            )
            attention_kwargs = {"attention_mask": keys[:, None, None, :]}
        return self.transformer(
            hidden_states=latents.to(dtype),
            encoder_hidden_states=tokens,
            pooled_projections=pooled,
            timestep=sigma.to(device=device, dtype=dtype),
            img_ids=img_ids,
            txt_ids=txt_ids,
            joint_attention_kwargs=attention_kwargs,
            return_dict=False,
        )[0]

    def velocity(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        durations: torch.Tensor,
        sigma: torch.Tensor,
        latent_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """See ``forward``."""
        return self(latents, context, durations, sigma, latent_mask)


def build_dit(dims: DiTDims) -> AudioDiT:
    """A randomly initialised ``AudioDiT`` in eval mode (load weights with ``load_state_dict(strict=True)``)."""
    return AudioDiT(dims).eval()
