"""Model dimensions as frozen dataclasses: one for each part, and a ``ModelDims`` that holds them all.

``full_dims()`` is the released AudioStory-3B architecture; ``tiny_dims()`` is the same classes at toy size for
tests. Builders in ``planner/`` and ``generator/`` take these; nothing is built from config strings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# Oobleck at 44.1 kHz: 2048 samples per latent frame.
FULL_SAMPLE_RATE = 44_100
FULL_HOP = 2048

# The DiT canvas: a property of each model folder (``extra["canvas"]`` in its audiostory.json).
CANVAS_FIXED = "fixed"  # denoise the whole audio_seq_len window, then trim (the official inference; TangoFlux and
#                         AudioStory trained only on zero-padded 30 s windows without a loss mask)
CANVAS_SIZED = "sized"  # a canvas sized to each event (how `audiostory train` trains: masked, variable length)
CANVASES = (CANVAS_FIXED, CANVAS_SIZED)

# The parts of an assembled model (``model.AudioStoryModel``) and of a model folder, in this order.
PART_NAMES = ("llm", "bridge", "dit", "text_encoder", "vae", "audio_encoder")

# How renders of consecutive events join (a model folder's ``extra["join"]`` overrides): the official inference
# crossfades 3 s linearly (TencentARC/AudioStory ``evaluate/inference.py``: ``--crossfade_sec 3``, ``linspace``).
OFFICIAL_JOIN = MappingProxyType({"crossfade": 3.0, "shape": "linear"})
DEFAULT_JOIN = MappingProxyType({"crossfade": 1.5, "shape": "equal-power"})


def model_canvas(extra: dict[str, Any]) -> str:
    """The canvas a model folder's weights expect: its ``canvas`` field; folders written before the field existed
    are ``fixed`` when converted from the official checkpoint, else ``sized`` (what training used)."""
    value = extra.get("canvas")
    if value is None:
        return CANVAS_FIXED if extra.get("converted_from") == "official" else CANVAS_SIZED
    if value not in CANVASES:
        raise ValueError(f"canvas {value!r} must be one of {', '.join(CANVASES)}")
    return str(value)


@dataclass(frozen=True)
class ReasonerDims:
    """Qwen2 causal LM (+ LoRA for training)."""

    hidden_size: int = 2048
    num_layers: int = 36
    num_heads: int = 16
    num_kv_heads: int = 2
    intermediate_size: int = 11008
    vocab_size: int = 152277  # 151665 Qwen tokens + 612 AudioStory tokens
    base_vocab_size: int = 151936  # stock Qwen2.5 embedding rows
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True
    lora_r: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.05


@dataclass(frozen=True)
class BridgeDims:
    """Placeholder token counts, projectors and the semantic/residual fusion."""

    num_semantic_tokens: int = 64
    num_residual_tokens: int = 8
    llm_dim: int = 2048
    projector_hidden: int = 1024
    out_dim: int = 1024  # = DiT joint_attention_dim = T5 d_model
    fusion_heads: int = 8
    t5_feature_scale: float = 10.0


@dataclass(frozen=True)
class DiTDims:
    """TangoFlux-style ``FluxTransformer2DModel`` plus duration embedder and pooled ``fc``."""

    num_layers: int = 6
    num_single_layers: int = 18
    num_attention_heads: int = 8
    attention_head_dim: int = 128
    in_channels: int = 64  # = VAE latent channels
    joint_attention_dim: int = 1024
    pooled_projection_dim: int = 1024
    duration_fourier_dim: int = 256  # StableAudioPositionalEmbedding(256): 128 learned frequencies
    max_duration: float = 30.0
    audio_seq_len: int = 645  # the DiT window in latent frames (~29.95 s at 44.1 kHz)


@dataclass(frozen=True)
class TextEncoderDims:
    """flan-t5 encoder: only encodes "" for the unconditional CFG branch and semantic targets in training."""

    vocab_size: int = 32128
    d_model: int = 1024
    d_kv: int = 64
    d_ff: int = 2816
    num_layers: int = 24
    num_heads: int = 16
    feed_forward_proj: str = "gated-gelu"


@dataclass(frozen=True)
class VAEDims:
    """diffusers ``AutoencoderOobleck``; latent channels = encoder_hidden_size / 2."""

    encoder_hidden_size: int = 128
    downsampling_ratios: tuple[int, ...] = (2, 4, 4, 8, 8)
    channel_multiples: tuple[int, ...] = (1, 2, 4, 8, 16)
    decoder_channels: int = 128
    decoder_input_channels: int = 64
    audio_channels: int = 2
    sampling_rate: int = FULL_SAMPLE_RATE

    @property
    def hop_length(self) -> int:
        hop = 1
        for r in self.downsampling_ratios:
            hop *= r
        return hop

    @property
    def latent_channels(self) -> int:
        return self.decoder_input_channels


@dataclass(frozen=True)
class SpectralCodecDims:
    """A fixed, training-free codec: the DiT's latents are normalised log-mel frames, and Griffin-Lim (with
    momentum) brings them back to audio. It has no weights; these numbers are all of it.

    One mel frame covers ``hop_length`` samples; its ``n_mels`` values are ``(ln(max(mel, floor)) - mean) / scale``
    of the magnitude mel spectrogram of a Hann-windowed ``n_fft`` STFT. One latent frame stacks
    ``frames_per_latent`` consecutive mel frames (``n_mels × frames_per_latent`` channels, frame-major), so the DiT
    sees a shorter sequence (its attention cost falls with the square of it) with the same spectral detail.
    Audio is encoded as the mean of its channels and decoded to ``audio_channels`` identical channels.
    """

    sampling_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8_000.0
    floor: float = 1e-5
    ceiling: float = 1e3  # mel magnitudes decode to at most this (a full-scale sine: ~450): bounds an untrained DiT
    mean: float = -4.0
    scale: float = 3.0
    griffin_lim_iters: int = 32
    momentum: float = 0.99
    seed: int = 0  # Griffin-Lim's initial phases: the same latents always decode to the same audio
    audio_channels: int = 2
    frames_per_latent: int = 1

    @property
    def latent_channels(self) -> int:
        return self.n_mels * self.frames_per_latent

    @property
    def samples_per_latent(self) -> int:
        """Audio samples one latent frame covers."""
        return self.hop_length * self.frames_per_latent

    def check(self) -> None:
        """Raise ``ValueError`` naming the field when the numbers cannot make a codec."""
        if self.sampling_rate < 1000 or self.n_fft < 16 or not 1 <= self.hop_length <= self.n_fft:
            raise ValueError(f"spectral codec needs sampling_rate >= 1000 and 1 <= hop_length <= n_fft, got {self}")
        if not 1 <= self.n_mels <= self.n_fft // 2 + 1:
            raise ValueError(f"spectral codec n_mels {self.n_mels} must be in 1..{self.n_fft // 2 + 1}")
        if not 0 <= self.f_min < self.f_max <= self.sampling_rate / 2:
            raise ValueError(f"spectral codec needs 0 <= f_min < f_max <= {self.sampling_rate / 2:g} Hz")
        if not (
            0 < self.floor < self.ceiling and self.scale > 0 and self.griffin_lim_iters >= 1 and 0 <= self.momentum < 1
        ):
            raise ValueError(
                "spectral codec needs 0 < floor < ceiling, scale > 0, griffin_lim_iters >= 1, 0 <= momentum < 1"
            )
        if self.audio_channels not in (1, 2):
            raise ValueError(f"spectral codec audio_channels {self.audio_channels} must be 1 or 2")
        if not 1 <= self.frames_per_latent <= 16:
            raise ValueError(f"spectral codec frames_per_latent {self.frames_per_latent} must be in 1..16")


@dataclass(frozen=True)
class AudioEncoderDims:
    """Whisper encoder + ``Whisper_Resampler_llava`` (adaptive pool to ``num_tokens`` then a 2-layer MLP)."""

    d_model: int = 1280
    num_layers: int = 32
    num_heads: int = 20
    ffn_dim: int = 5120
    num_mel_bins: int = 128
    max_source_positions: int = 1500
    sampling_rate: int = 16_000
    num_tokens: int = 300
    llm_dim: int = 2048


@dataclass(frozen=True)
class ModelDims:
    """Everything needed to build a model of our classes, and nothing that says where its weights are.

    The DiT's latent space is the model's: ``vae`` (a trained Oobleck VAE, a ``vae`` part with weights) or
    ``codec`` (the fixed spectral codec, no weights); exactly one of them is set. Old sidecars have no ``codec``
    and are Oobleck models.
    """

    reasoner: ReasonerDims = field(default_factory=ReasonerDims)
    bridge: BridgeDims = field(default_factory=BridgeDims)
    dit: DiTDims = field(default_factory=DiTDims)
    text_encoder: TextEncoderDims = field(default_factory=TextEncoderDims)
    vae: VAEDims | None = field(default_factory=VAEDims)
    audio_encoder: AudioEncoderDims | None = field(default_factory=AudioEncoderDims)
    codec: SpectralCodecDims | None = None

    def __post_init__(self) -> None:
        if (self.vae is None) == (self.codec is None):
            raise ValueError("a model has exactly one latent space: set either vae (Oobleck) or codec (spectral)")
        if self.codec is not None:
            self.codec.check()
        if self.dit.in_channels != self.latent_channels:
            raise ValueError(
                f"dit.in_channels {self.dit.in_channels} must equal the latent channels {self.latent_channels}"
            )

    @property
    def codec_kind(self) -> str:
        """``oobleck`` or ``spectral``: how the DiT's latents become audio."""
        return "oobleck" if self.codec is None else "spectral"

    @property
    def sample_rate(self) -> int:
        return self.codec.sampling_rate if self.codec is not None else self._vae.sampling_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return self.codec.samples_per_latent if self.codec is not None else self._vae.hop_length

    @property
    def latent_channels(self) -> int:
        return self.codec.latent_channels if self.codec is not None else self._vae.latent_channels

    @property
    def audio_channels(self) -> int:
        return self.codec.audio_channels if self.codec is not None else self._vae.audio_channels

    @property
    def _vae(self) -> VAEDims:
        assert self.vae is not None  # __post_init__: one of vae and codec is set
        return self.vae

    @property
    def latent_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def window_seconds(self) -> float:
        """Longest audio one DiT pass renders."""
        return self.dit.audio_seq_len * self.hop_length / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDims:
        def build(kind: type[Any], values: dict[str, Any] | None) -> Any:
            if values is None:
                return None
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = set(values) - known
            if unknown:
                raise ValueError(f"unknown {kind.__name__} fields: {', '.join(sorted(unknown))}")
            fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            return kind(**fixed)

        return cls(
            reasoner=build(ReasonerDims, data.get("reasoner", {})),
            bridge=build(BridgeDims, data.get("bridge", {})),
            dit=build(DiTDims, data.get("dit", {})),
            text_encoder=build(TextEncoderDims, data.get("text_encoder", {})),
            vae=build(VAEDims, data.get("vae", {})),
            audio_encoder=build(AudioEncoderDims, data.get("audio_encoder")),
            codec=build(SpectralCodecDims, data.get("codec")),
        )


def full_dims() -> ModelDims:
    """The released AudioStory-3B: Qwen2.5-3B, 64+8 bridge tokens, TangoFlux DiT, Oobleck, Whisper-large-v3."""
    return ModelDims()


def tiny_dims() -> ModelDims:
    """Same classes at toy size: builds in well under a second on a CPU. Vocab is set by the tiny tokenizer."""
    return ModelDims(
        reasoner=ReasonerDims(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=128,
            vocab_size=0,
            base_vocab_size=0,
            rope_theta=10_000.0,
            max_position_embeddings=4096,
            lora_r=4,
            lora_alpha=4,
            lora_dropout=0.0,
        ),
        bridge=BridgeDims(
            num_semantic_tokens=8,
            num_residual_tokens=2,
            llm_dim=64,
            projector_hidden=32,
            out_dim=32,
            fusion_heads=4,
            t5_feature_scale=10.0,
        ),
        dit=DiTDims(
            num_layers=1,
            num_single_layers=1,
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=8,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            duration_fourier_dim=16,
            max_duration=30.0,
            audio_seq_len=645,
        ),
        text_encoder=TextEncoderDims(
            vocab_size=256,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=4,
        ),
        vae=VAEDims(
            encoder_hidden_size=16,
            downsampling_ratios=(2, 4, 4, 8, 8),
            channel_multiples=(1, 2, 2, 2, 2),
            decoder_channels=16,
            decoder_input_channels=8,
            audio_channels=2,
            sampling_rate=FULL_SAMPLE_RATE,
        ),
        audio_encoder=AudioEncoderDims(
            d_model=32,
            num_layers=1,
            num_heads=2,
            ffn_dim=64,
            num_mel_bins=80,
            max_source_positions=1500,
            num_tokens=4,
            llm_dim=64,
        ),
    )
