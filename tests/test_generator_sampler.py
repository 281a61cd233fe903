"""Euler flow sampler: the official schedule, exactness on a known flow, CFG arithmetic, prefix inpainting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiostory_cli.generator.sampler import euler_sample, flow_sigmas


def test_schedule_is_linspace_one_to_one_over_n():
    np.testing.assert_allclose(flow_sigmas(4), [1.0, 0.75, 0.5, 0.25])
    assert flow_sigmas(50)[0] == 1.0 and flow_sigmas(50)[-1] == pytest.approx(0.02)
    with pytest.raises(ValueError):
        flow_sigmas(0)


def test_exact_velocity_recovers_the_target_and_reports_every_step():
    torch.manual_seed(0)
    target, noise = torch.randn(2, 10, 4), torch.randn(2, 10, 4)
    seen_sigmas, steps_seen = [], []

    def velocity(x, sigma):
        seen_sigmas.append(sigma)
        return noise - target  # the straight-line flow from target (σ=0) to noise (σ=1)

    out = euler_sample(velocity, noise, steps=5, guidance=1.0, on_step=lambda i, n: steps_seen.append((i, n)))
    torch.testing.assert_close(out, target, rtol=0, atol=1e-5)
    assert seen_sigmas == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert steps_seen == [(i, 5) for i in range(1, 6)]


def test_cfg_doubles_the_batch_and_combines_uncond_and_cond():
    noise = torch.zeros(1, 3, 2)
    batches = []

    def velocity(x, sigma):
        batches.append(x.shape[0])
        return torch.cat([torch.full_like(x[:1], 1.0), torch.full_like(x[:1], 3.0)])  # [uncond; cond]

    out = euler_sample(velocity, noise, steps=2, guidance=4.0)
    # v = 1 + 4 (3 - 1) = 9 per step; sigmas 1 → 0.5 → 0 integrate dt = -1 in total
    torch.testing.assert_close(out, torch.full_like(noise, -9.0))
    assert batches == [2, 2]

    plain = euler_sample(lambda x, s: torch.ones_like(x), noise, steps=2, guidance=1.0)
    torch.testing.assert_close(plain, torch.full_like(noise, -1.0))


def test_inpainting_feeds_the_noised_prefix_and_returns_it_exactly():
    torch.manual_seed(1)
    noise = torch.randn(1, 6, 3)
    known = torch.randn(1, 6, 3)
    known_mask = torch.zeros(1, 6, dtype=torch.bool)
    known_mask[0, :2] = True
    inputs = []

    def velocity(x, sigma):
        inputs.append((sigma, x.clone()))
        return torch.sin(x) + 0.3  # anything that would move the prefix away

    out = euler_sample(velocity, noise, steps=4, guidance=1.0, known=known, known_mask=known_mask)
    assert torch.equal(out[0, :2], known[0, :2])
    assert not torch.allclose(out[0, 2:], noise[0, 2:])
    for sigma, x in inputs:
        expected = (1 - sigma) * known[0, :2] + sigma * noise[0, :2]
        torch.testing.assert_close(x[0, :2], expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        euler_sample(velocity, noise, steps=2, guidance=1.0, known=known)
