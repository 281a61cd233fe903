"""The bridge: project the reasoner's placeholder states and fuse semantic with residual tokens.

``fused = (S + MHA(q=S, k=R, v=R)) / t5_feature_scale`` per event, where ``S = projector(semantic states)`` and
``R = audio_projector(residual states)``; events are the MHA batch, so each event's semantic tokens attend only to
its own residual tokens. Submodule names map the official checkpoint keys: ``seedx.projector.*`` →
``projector.*``, ``seedx.audio_projector.*`` → ``audio_projector.*``, ``multihead_attention.*`` →
``multihead_attention.*``. Inference divides by the scale once, as the official inference does
(``evaluate/inference.py`` of https://github.com/TencentARC/AudioStory;
its training path divides twice: see ``train/module.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import BridgeDims


def _mlp2x_gelu(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The official ``build_audio_projector('mlp2x_gelu', ...)``: Linear, GELU, Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class Bridge(nn.Module):
    def __init__(self, dims: BridgeDims) -> None:
        super().__init__()
        if dims.out_dim % dims.fusion_heads:
            raise ValueError(f"out_dim {dims.out_dim} must be divisible by fusion_heads {dims.fusion_heads}")
        if not dims.t5_feature_scale > 0:
            raise ValueError(f"t5_feature_scale {dims.t5_feature_scale} must be positive")
        self.dims = dims
        self.projector = _mlp2x_gelu(dims.llm_dim, dims.projector_hidden, dims.out_dim)
        self.audio_projector = _mlp2x_gelu(dims.llm_dim, dims.projector_hidden, dims.out_dim)
        self.multihead_attention = nn.MultiheadAttention(dims.out_dim, dims.fusion_heads)  # (seq, batch, dim)
        self.t5_feature_scale = float(dims.t5_feature_scale)

    def project_semantic(self, semantic_states: torch.Tensor) -> torch.Tensor:
        """(N, S, llm_dim) → (N, S, out_dim); training regresses this onto ``t5_feature_scale · T5(caption)``."""
        projected: torch.Tensor = self.projector(semantic_states.to(self._dtype))
        return projected

    def project_residual(self, residual_states: torch.Tensor) -> torch.Tensor:
        """(N, R, llm_dim) → (N, R, out_dim)."""
        projected: torch.Tensor = self.audio_projector(residual_states.to(self._dtype))
        return projected

    def fuse(self, semantic: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``(S + MHA(S, R, R)) / scale`` on projected tokens, each event its own batch entry."""
        query = semantic.permute(1, 0, 2)  # (S, N, D)
        memory = residual.permute(1, 0, 2)  # (R, N, D)
        attended: torch.Tensor = self.multihead_attention(query, memory, memory, need_weights=False)[0]
        return (semantic + attended.permute(1, 0, 2)) / self.t5_feature_scale

    def forward(self, semantic_states: torch.Tensor, residual_states: torch.Tensor) -> torch.Tensor:
        """(N, S, llm_dim), (N, R, llm_dim) → fused DiT tokens (N, S, out_dim)."""
        if semantic_states.dim() != 3 or residual_states.dim() != 3:
            raise ValueError(
                f"bridge states must be (events, tokens, dim); got {tuple(semantic_states.shape)} and "
                f"{tuple(residual_states.shape)}"
            )
        if semantic_states.shape[0] != residual_states.shape[0]:
            raise ValueError(
                f"{semantic_states.shape[0]} events of semantic states but {residual_states.shape[0]} of residual"
            )
        return self.fuse(self.project_semantic(semantic_states), self.project_residual(residual_states))

    @property
    def _dtype(self) -> torch.dtype:
        first = self.projector[0]
        assert isinstance(first, nn.Linear)
        return first.weight.dtype
