"""Multi-resolution complex-STFT discriminator for adversarial VAE training (``train vae --adversarial-weight``).

A deterministic decoder trained on spectral losses alone learns steady partials slowly: tones come out smeared
into noise (measured on the demo's 16 kHz VAE). Stable Audio's VAE was trained with a discriminator on top of its
reconstruction losses, as are neural audio codecs; this is the same idea at small size: one 2-D conv net per FFT
size reads the real and imaginary parts of the spectrogram (so phase counts) and says real or reconstructed, with
hinge losses and a feature-matching term (L1 between the nets' inner activations on real and reconstructed audio).
It is used only while training; model folders never hold it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DISCRIMINATOR_FFT_SIZES: tuple[int, ...] = (256, 512, 1024)

# Per sub-discriminator: its logits and the activations of each of its layers.
DiscriminatorOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]


class STFTDiscriminator(nn.Module):
    """Conv net over one complex spectrogram: (B, C, T) audio -> logits per (frame, frequency) patch."""

    window: torch.Tensor  # a buffer

    def __init__(self, n_fft: int, audio_channels: int, width: int = 32) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        norm = nn.utils.parametrizations.weight_norm
        layers = [norm(nn.Conv2d(2 * audio_channels, width, (3, 9), padding=(1, 4)))]
        for dilation in (1, 2, 4):  # time axis dilated, frequency axis strided
            layers.append(
                norm(nn.Conv2d(width, width, (3, 9), stride=(1, 2), dilation=(dilation, 1), padding=(dilation, 4)))
            )
        layers.append(norm(nn.Conv2d(width, width, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.post = norm(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, samples = audio.shape
        spec = torch.stft(
            audio.reshape(batch * channels, samples),
            self.n_fft,
            self.n_fft // 4,
            window=self.window.to(audio.dtype),
            return_complex=True,
        )
        parts = torch.view_as_real(spec)  # (B*C, bins, frames, 2)
        bins, frames = parts.shape[1], parts.shape[2]
        hidden = parts.reshape(batch, channels, bins, frames, 2).permute(0, 1, 4, 3, 2)
        hidden = hidden.reshape(batch, 2 * channels, frames, bins)
        features = []
        for layer in self.layers:
            hidden = F.leaky_relu(layer(hidden), 0.2)
            features.append(hidden)
        return self.post(hidden), features


class MultiResolutionDiscriminator(nn.Module):
    """One ``STFTDiscriminator`` per FFT size; returns each one's (logits, features)."""

    def __init__(
        self, audio_channels: int, fft_sizes: tuple[int, ...] = DISCRIMINATOR_FFT_SIZES, width: int = 32
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, audio_channels, width) for n in fft_sizes)

    def forward(self, audio: torch.Tensor) -> DiscriminatorOutput:
        return [d(audio) for d in self.discriminators]


def discriminator_hinge_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """Sum over sub-discriminators of mean(relu(1 - real logits)) + mean(relu(1 + fake logits))."""
    return sum(
        (F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake, strict=True)),
        start=real[0][0].new_zeros(()),
    )


def generator_hinge_loss(fake: DiscriminatorOutput) -> torch.Tensor:
    """Sum over sub-discriminators of mean(relu(1 - fake logits)): zero once every patch is judged real."""
    return sum((F.relu(1 - f).mean() for f, _ in fake), start=fake[0][0].new_zeros(()))


def feature_matching_loss(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """Mean over sub-discriminators of the mean over layers of L1(fake, real) / mean|real| (real detached)."""
    total = fake[0][0].new_zeros(())
    for (_, real_features), (_, fake_features) in zip(real, fake, strict=True):
        layers = [
            F.l1_loss(f, r.detach()) / r.detach().abs().mean().clamp_min(1e-5)
            for r, f in zip(real_features, fake_features, strict=True)
        ]
        total = total + sum(layers) / len(layers)
    return total / len(real)
