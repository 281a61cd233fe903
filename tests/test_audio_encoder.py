"""Audio encoder for `continue`: Whisper log-mels at 16 kHz (last 30 s), encoder, pooled resampler tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiostory_cli.config import tiny_dims
from audiostory_cli.errors import AudioInputError
from audiostory_cli.planner.audio_encoder import build_audio_encoder


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return build_audio_encoder(tiny_dims().audio_encoder)


def test_features_resample_and_pad_to_the_whisper_window(encoder):
    dims = tiny_dims().audio_encoder
    rng = np.random.default_rng(0)
    feats = encoder.features(rng.standard_normal(22_050).astype(np.float32) * 0.1, 44_100)
    assert feats.shape == (1, dims.num_mel_bins, 3000) and feats.dtype == torch.float32
    # 0.5 s of audio fills only the first 50 mel frames; the rest is padding
    assert not torch.allclose(feats[0, :, :40], feats[0, :, -40:])


def test_long_input_uses_its_last_30_seconds(encoder):
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(16_000 * 34).astype(np.float32) * 0.1
    torch.testing.assert_close(encoder.features(audio, 16_000), encoder.features(audio[-16_000 * 30 :], 16_000))
    assert not torch.allclose(encoder.features(audio, 16_000), encoder.features(audio[: 16_000 * 30], 16_000))


def test_forward_gives_llm_sized_tokens_with_official_key_names(encoder):
    dims = tiny_dims().audio_encoder
    feats = encoder.features(np.zeros(8000, dtype=np.float32), 16_000)
    tokens = encoder(torch.cat([feats, feats]))
    assert tokens.shape == (2, dims.num_tokens, dims.llm_dim)
    assert encoder.embed(np.zeros(8000, dtype=np.float32), 16_000).shape == (dims.num_tokens, dims.llm_dim)
    keys = set(encoder.state_dict())
    assert {
        "resampler.aud_projector.0.weight",
        "resampler.aud_projector.2.bias",
        "whisper.conv1.weight",
        "whisper.layers.0.self_attn.q_proj.weight",
        "whisper.layer_norm.weight",
    } <= keys
    assert not any(k.startswith("resampler.pool") for k in keys)


def test_pool_averages_time_into_tokens(encoder):
    hidden = torch.arange(1500, dtype=torch.float32)[None, :, None].expand(1, 1500, 32)
    pooled = encoder.resampler.pool(hidden)
    assert pooled.shape == (1, 4, 32)
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor([187.0, 562.0, 937.0, 1312.0]))


def test_bad_audio_is_refused(encoder):
    with pytest.raises(AudioInputError, match="mono"):
        encoder.features(np.zeros((2, 100), dtype=np.float32), 16_000)
    with pytest.raises(AudioInputError, match="NaN"):
        encoder.features(np.full(100, np.nan, dtype=np.float32), 16_000)
