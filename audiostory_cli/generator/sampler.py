"""Euler flow-matching sampler (TangoFlux/AudioStory schedule) with classifier-free guidance and inpainting.

σ runs over linspace(1, 1/N, N) then 0; x ← x + (σ_next − σ)·v with v = noise − x0; the model is asked for
velocities only. A fresh diffusers ``FlowMatchEulerDiscreteScheduler`` is made per call (it keeps a step index).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
"""``fn(x, sigma) -> v``: with guidance > 1, ``x`` is ``cat([x, x])`` and ``v`` is ``[uncond; cond]``."""


def flow_sigmas(steps: int) -> np.ndarray:
    """The official schedule: ``linspace(1, 1/steps, steps)`` (a terminal 0 is appended by the scheduler)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return np.linspace(1.0, 1.0 / steps, steps)


def euler_sample(
    velocity: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Integrate from ``noise`` (B, L, C) at σ=1 to σ=0; returns fp32 (B, L, C).

    CFG ``v = v_u + g (v_c − v_u)`` only when ``guidance > 1``. Inpainting: where ``known_mask`` (B, L) is True,
    x is reset before every model call to the forward-noised ``(1−σ)·known + σ·noise`` (same noise), and the
    result there equals ``known`` exactly.
    """
    if (known is None) != (known_mask is None):
        raise ValueError("known and known_mask go together")
    noise = noise.float()
    fixed = None  # (mask, x0): the frames held at the known latents
    if known is not None and known_mask is not None:
        fixed = (known_mask[..., None].to(noise.device), known.float().to(noise.device))
    cfg = guidance > 1.0
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(sigmas=flow_sigmas(steps).tolist(), device=noise.device)
    x = noise
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(scheduler.sigmas[i])
        if fixed is not None:
            mask, x0 = fixed
            x = torch.where(mask, (1.0 - sigma) * x0 + sigma * noise, x)
        v = velocity(torch.cat([x, x]) if cfg else x, sigma).float()
        if cfg:
            v_uncond, v_cond = v.chunk(2)
            v = v_uncond + guidance * (v_cond - v_uncond)
        x = scheduler.step(v, t, x, return_dict=False)[0].float()
        if on_step is not None:
            on_step(i + 1, steps)
    if fixed is not None:
        mask, x0 = fixed
        x = torch.where(mask, x0, x)
    return x
