"""Audio in (for ``continue``): Whisper encoder → adaptive average pool to N tokens → 2-layer GELU MLP into the
LLM's embedding space (the official ``Whisper_Resampler_llava``).

Key names map the official checkpoint: ``seedx.whisper_resampler_llava.aud_projector.{0,2}.*`` →
``resampler.aud_projector.{0,2}.*``; the Whisper weights come from whisper-large-v3's encoder
(``model.encoder.*`` → ``whisper.*``). The pool has no parameters.

Features are Whisper log-mels at 16 kHz over a fixed 30 s window (the encoder accepts nothing else); an input
longer than 30 s contributes its LAST 30 s, because for a continuation the tail is what matters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..config import AudioEncoderDims
from ..errors import AudioInputError

WHISPER_CHUNK_SECONDS = 30


def whisper_config(dims: AudioEncoderDims) -> WhisperConfig:
    """Encoder half of a Whisper config (decoder fields are unused; token ids kept valid for any vocab)."""
    return WhisperConfig(
        num_mel_bins=dims.num_mel_bins,
        d_model=dims.d_model,
        encoder_layers=dims.num_layers,
        encoder_attention_heads=dims.num_heads,
        encoder_ffn_dim=dims.ffn_dim,
        max_source_positions=dims.max_source_positions,
        decoder_layers=1,
        decoder_attention_heads=dims.num_heads,
        decoder_ffn_dim=dims.ffn_dim,
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )


class WhisperResampler(nn.Module):
    """(B, frames, d_model) → (B, num_tokens, llm_dim): adaptive average pool over time, then Linear-GELU-Linear."""

    def __init__(self, num_tokens: int, d_model: int, llm_dim: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((num_tokens, d_model))
        self.aud_projector = nn.Sequential(nn.Linear(d_model, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.aud_projector(self.pool(hidden))

    @property
    def input_weight(self) -> torch.Tensor:
        """The first projection's weight: the Whisper states must match its dtype and device."""
        first = self.aud_projector[0]
        assert isinstance(first, nn.Linear)
        return first.weight


class AudioEncoder(nn.Module):
    """``whisper`` (transformers ``WhisperEncoder``) + ``resampler`` (``WhisperResampler``)."""

    def __init__(self, dims: AudioEncoderDims) -> None:
        super().__init__()
        self.dims = dims
        self.whisper = WhisperEncoder(whisper_config(dims))
        self.resampler = WhisperResampler(dims.num_tokens, dims.d_model, dims.llm_dim)
        self.feature_extractor = WhisperFeatureExtractor(
            feature_size=dims.num_mel_bins, sampling_rate=dims.sampling_rate, chunk_length=WHISPER_CHUNK_SECONDS
        )

    def features(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Log-mel ``input_features`` (1, num_mel_bins, 3000) for mono ``audio`` (samples,) at ``sample_rate``."""
        audio = np.asarray(audio)
        if audio.ndim != 1 or audio.size == 0:
            raise AudioInputError(
                f"the audio encoder takes mono audio as a 1-D array of samples, got shape {audio.shape}; "
                "mix down to mono first"
            )
        if sample_rate <= 0:
            raise AudioInputError(f"sample rate must be > 0, got {sample_rate}")
        if not np.isfinite(audio).all():
            raise AudioInputError("audio for the audio encoder contains NaN or infinite samples")
        wave = torch.from_numpy(audio.astype(np.float32))
        target = self.dims.sampling_rate
        if sample_rate != target:
            import torchaudio

            wave = torchaudio.functional.resample(wave, sample_rate, target)
        wave = wave[-WHISPER_CHUNK_SECONDS * target :]
        batch = self.feature_extractor(wave.numpy(), sampling_rate=target, return_tensors="pt")
        return batch.input_features

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        """(B, num_mel_bins, 3000) log-mels → (B, num_tokens, llm_dim)."""
        weight = self.resampler.input_weight
        hidden = self.whisper(input_features.to(device=weight.device, dtype=weight.dtype)).last_hidden_state
        return self.resampler(hidden)

    def embed(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """(num_tokens, llm_dim) tokens for one mono clip, without gradients."""
        with torch.no_grad():
            return self(self.features(audio, sample_rate))[0]


def build_audio_encoder(dims: AudioEncoderDims) -> AudioEncoder:
    """A randomly initialised audio encoder in eval mode."""
    return AudioEncoder(dims).eval()
