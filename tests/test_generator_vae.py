"""Oobleck VAE: chunked decode equals full decode, exact lengths, encode geometry, tail prefixes, precision.

The chunking and trimming logic is exercised on a hop-4 Oobleck (cheap at any length); the tiny hop-2048 VAE
checks the real geometry with a few short decodes.
"""

from __future__ import annotations

import pytest
import torch

from audiostory_cli.config import VAEDims, tiny_dims
from audiostory_cli.errors import AudioInputError, ModelError
from audiostory_cli.generator.dit import build_dit
from audiostory_cli.generator.geometry import LatentGeometry
from audiostory_cli.generator.render import EventCondition, render_latents
from audiostory_cli.generator.text_encoder import build_text_encoder, unconditional_tokens
from audiostory_cli.generator.vae import build_vae, decode, encode, encode_tail
from audiostory_cli.runtime import cpu_runtime

GEOMETRY = LatentGeometry.from_vae(tiny_dims().vae)
HOP = GEOMETRY.hop_length
# hop 4; its decoder's receptive field is ~36 frames
CHEAP = VAEDims(
    encoder_hidden_size=16,
    downsampling_ratios=(2, 2),
    channel_multiples=(1, 2),
    decoder_channels=8,
    decoder_input_channels=8,
)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_vae(tiny_dims().vae)


@pytest.fixture(scope="module")
def cheap():
    torch.manual_seed(1)
    return build_vae(CHEAP)


def test_geometry_rounds_once_everywhere():
    assert GEOMETRY.samples(3.0) == 132_300 and GEOMETRY.frames(3.0) == 65
    assert GEOMETRY.frames(GEOMETRY.seconds(645)) == 645
    assert GEOMETRY.frames(1 / 44_100) == 1
    with pytest.raises(ValueError):
        GEOMETRY.samples(float("nan"))


def test_chunked_decode_equals_full_decode(cheap):
    hop = CHEAP.hop_length
    z = torch.randn(160, 8, generator=torch.Generator().manual_seed(1))
    full = decode(cheap, z, chunk_frames=1000)
    chunks = []
    chunked = decode(cheap, z, chunk_frames=32, overlap_frames=48, progress=lambda *a: chunks.append(a))
    assert full.shape == (2, 160 * hop) and full.dtype == torch.float32
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-5)
    assert chunks[-1] == ("vae", 5, 5)
    # too little overlap for the receptive field shows up as a mismatch: the test has teeth
    assert (decode(cheap, z, chunk_frames=32, overlap_frames=4) - full).abs().max() > 1e-3
    skipped = decode(cheap, z, chunk_frames=32, overlap_frames=48, skip_frames=7, num_samples=101)
    torch.testing.assert_close(skipped, full[:, 7 * hop : 7 * hop + 101], rtol=0, atol=1e-5)
    batch = decode(cheap, torch.stack([z, -z]), chunk_frames=1000)
    assert batch.shape == (2, 2, 160 * hop)
    torch.testing.assert_close(batch[0], full, rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        decode(cheap, z, num_samples=160 * hop + 1)
    with pytest.raises(ModelError):
        decode(cheap, torch.zeros(10, 5))


def test_tiny_vae_decodes_exact_sample_counts(vae):
    z = torch.randn(10, 8, generator=torch.Generator().manual_seed(2))
    full = decode(vae, z)
    assert full.shape == (2, 10 * HOP)
    chunked = decode(vae, z, chunk_frames=4, overlap_frames=16, num_samples=GEOMETRY.samples(0.4))
    assert chunked.shape == (2, GEOMETRY.samples(0.4))
    torch.testing.assert_close(chunked, full[:, : GEOMETRY.samples(0.4)], rtol=0, atol=1e-5)


def test_encode_pads_to_whole_hops_and_tail_aligns_to_the_end(vae, cheap):
    assert encode(vae, torch.randn(2, HOP + 100) * 0.1).shape == (2, 8)
    hop = CHEAP.hop_length
    audio = torch.randn(2, 30 * hop + 3, generator=torch.Generator().manual_seed(3)) * 0.1
    latents = encode(cheap, audio)
    assert latents.shape == (31, 8)
    assert torch.equal(latents, encode(cheap, audio))  # posterior mean: deterministic
    tail = encode_tail(cheap, audio, 5)
    assert tail.shape == (5, 8)
    # the last 5 whole hops, encoded with 8 hops of context before them
    torch.testing.assert_close(tail, encode(cheap, audio[:, -13 * hop :])[-5:], rtol=0, atol=1e-6)
    with pytest.raises(AudioInputError):
        encode_tail(cheap, audio, 31)
    with pytest.raises(AudioInputError):
        encode(cheap, torch.zeros(1, 100))
    with pytest.raises(AudioInputError):
        encode(cheap, torch.full((2, 100), float("nan")))


def test_fp16_vae_is_refused():
    vae16 = build_vae(CHEAP).to(torch.float16)
    with pytest.raises(ModelError, match="fp16"):
        decode(vae16, torch.zeros(2, 8))


def test_same_seed_gives_bit_identical_audio_end_to_end(vae):
    dims = tiny_dims()
    torch.manual_seed(3)
    dit = build_dit(dims.dit)
    uncond = unconditional_tokens(build_text_encoder(dims.text_encoder), dims.bridge.num_semantic_tokens)
    tokens = torch.randn(8, 32, generator=torch.Generator().manual_seed(4))
    seconds = 0.3

    def render_audio() -> torch.Tensor:
        latents = render_latents(
            dit, [EventCondition(tokens, seconds, 77)], steps=4, guidance=4.0, uncond=uncond, runtime=cpu_runtime()
        )[0]
        return decode(vae, latents, num_samples=GEOMETRY.samples(seconds))

    first, second = render_audio(), render_audio()
    assert first.shape == (2, GEOMETRY.samples(seconds))
    assert torch.equal(first, second)
