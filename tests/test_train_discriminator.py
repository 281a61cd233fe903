"""The multi-resolution STFT discriminator used by ``train vae --adversarial-weight``."""

from __future__ import annotations

import math

import pytest
import torch

from audiostory_cli.train.discriminator import (
    MultiResolutionDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
)


@pytest.mark.parametrize("channels", [1, 2])
def test_one_output_per_fft_size_for_mono_and_stereo(channels):
    torch.manual_seed(0)
    disc = MultiResolutionDiscriminator(channels, fft_sizes=(256, 512), width=8)
    out = disc(0.1 * torch.randn(3, channels, 4096))
    assert len(out) == 2
    for (logits, features), n_fft in zip(out, (256, 512), strict=True):
        assert logits.shape[:2] == (3, 1) and logits.shape[2] == 4096 // (n_fft // 4) + 1  # one row per frame
        assert len(features) == 5 and all(f.shape[0] == 3 and f.shape[1] == 8 for f in features)
        assert torch.isfinite(logits).all()


def test_hinge_and_feature_matching_losses():
    def output(value: float) -> list:
        return [(torch.full((2, 1, 4, 4), value), [torch.full((2, 3, 4, 4), value)])]

    # judged right with a margin: no discriminator loss; judged real: no generator loss
    assert float(discriminator_hinge_loss(output(2.0), output(-2.0))) == 0.0
    assert float(discriminator_hinge_loss(output(0.0), output(0.0))) == pytest.approx(2.0)
    assert float(generator_hinge_loss(output(1.5))) == 0.0
    assert float(generator_hinge_loss(output(-1.0))) == pytest.approx(2.0)
    assert float(feature_matching_loss(output(0.5), output(0.5))) == 0.0
    assert float(feature_matching_loss(output(0.5), output(1.0))) == pytest.approx(1.0)  # relative L1


def test_the_discriminator_learns_to_tell_a_tone_from_noise():
    torch.manual_seed(0)
    time = torch.arange(4096) / 16_000
    tones = torch.stack([0.3 * torch.sin(2 * math.pi * f * time) for f in (440.0, 660.0, 880.0, 990.0)])[:, None]
    disc = MultiResolutionDiscriminator(1, fft_sizes=(256,), width=8)
    optimizer = torch.optim.AdamW(disc.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        noise = 0.3 * torch.randn(4, 1, 4096)
        loss = discriminator_hinge_loss(disc(tones), disc(noise))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
