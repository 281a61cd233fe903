"""How the DiT's latents become audio, and back: the model's codec.

A model folder declares its latent space in its dims (``ModelDims.vae`` or ``ModelDims.codec``), and
``model_codec(model)`` gives the matching codec, so the pipeline, continuation and training never ask which one:

- ``OobleckCodec``: the trained Oobleck VAE of the released model (``generator.vae``; weights in the ``vae`` part).
- ``SpectralCodec``: the demo's fixed, training-free codec. Encoding is a magnitude mel spectrogram, normalised
  ``(ln(max(mel, floor)) - mean) / scale``; decoding undoes the normalisation, maps the mel bands back to linear
  frequency bins with the filterbank's pseudo-inverse and recovers a phase with Griffin-Lim (torchaudio's, with
  momentum: the "fast Griffin-Lim" of Perraudin et al.). Its initial phases come from a fixed seed, so the same
  latents always decode to the same audio.

Latents are (L, C) or (B, L, C), frames first, like the DiT's. Frame ``i`` stands for samples
``[i·hop, (i+1)·hop)``, so ``L = ceil(samples / hop)`` for both codecs and ``LatentGeometry`` holds for both.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..config import ModelDims, SpectralCodecDims
from ..errors import AudioInputError, ModelError
from ..progress import ProgressFn, no_progress
from .geometry import LatentGeometry

if TYPE_CHECKING:
    from diffusers import AutoencoderOobleck

DECODE_CHUNK_FRAMES = 2048  # ~33 s at 16 kHz / hop 256: a whole event per Griffin-Lim call in practice
DECODE_CONTEXT_FRAMES = 16  # frames of context on each side of a chunk (> n_fft / hop): seamless joins


class Codec(Protocol):
    """What the pipeline and training need from a latent space."""

    @property
    def kind(self) -> str: ...

    @property
    def geometry(self) -> LatentGeometry: ...

    @property
    def latent_channels(self) -> int: ...

    @property
    def audio_channels(self) -> int: ...

    def encode(self, audio: torch.Tensor) -> torch.Tensor: ...

    def encode_tail(self, audio: torch.Tensor, frames: int) -> torch.Tensor: ...

    def decode(
        self,
        latents: torch.Tensor,
        *,
        skip_frames: int = 0,
        num_samples: int | None = None,
        progress: ProgressFn = no_progress,
    ) -> torch.Tensor: ...

    def fingerprint(self) -> str: ...


def model_codec(dims: ModelDims, vae: AutoencoderOobleck | None) -> Codec:
    """The codec a model's dims declare (``vae`` is the model's Oobleck part, ``None`` for a spectral codec)."""
    if dims.codec is not None:
        if vae is not None:
            raise ModelError("the model declares a spectral codec but also holds a VAE; its folder is inconsistent")
        return SpectralCodec(dims.codec)
    if vae is None:
        raise ModelError("the model declares an Oobleck VAE but holds none; its folder is incomplete")
    return OobleckCodec(vae)


# -- Oobleck --------------------------------------------------------------------------------------------------


@dataclass
class OobleckCodec:
    """The trained VAE (``generator.vae``), behind the codec interface. Nothing about it changes here."""

    vae: AutoencoderOobleck
    kind: str = "oobleck"
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def geometry(self) -> LatentGeometry:
        return LatentGeometry(sample_rate=int(self.vae.config.sampling_rate), hop_length=int(self.vae.hop_length))

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.decoder_input_channels)

    @property
    def audio_channels(self) -> int:
        return int(self.vae.config.audio_channels)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        from .vae import encode

        return encode(self.vae, audio)

    def encode_tail(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        from .vae import encode_tail

        return encode_tail(self.vae, audio, frames)

    def decode(
        self,
        latents: torch.Tensor,
        *,
        skip_frames: int = 0,
        num_samples: int | None = None,
        progress: ProgressFn = no_progress,
    ) -> torch.Tensor:
        from .vae import DEFAULT_OVERLAP_FRAMES, decode

        if skip_frames > DEFAULT_OVERLAP_FRAMES:  # the decoder only sees this far back: keep just that much context
            latents = latents[..., skip_frames - DEFAULT_OVERLAP_FRAMES :, :]
            skip_frames = DEFAULT_OVERLAP_FRAMES
        return decode(self.vae, latents, skip_frames=skip_frames, num_samples=num_samples, progress=progress)

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = module_fingerprint(self.vae)
        return self._fingerprint


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every tensor of the state dict (names, dtypes, shapes, bytes): the identity of weights
    (the VAE's here, every part's in ``train.features``' cache keys)."""
    sha = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        sha.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.numel():
            sha.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


# -- spectral -------------------------------------------------------------------------------------------------


class SpectralCodec:
    """Normalised log-mel frames ↔ audio (see the module docstring). Runs on the CPU in fp32."""

    kind = "spectral"

    def __init__(self, dims: SpectralCodecDims) -> None:
        import torchaudio.functional as AF

        dims.check()
        self.dims = dims
        self.geometry = LatentGeometry(sample_rate=dims.sampling_rate, hop_length=dims.samples_per_latent)
        self.latent_channels = dims.latent_channels
        self.audio_channels = dims.audio_channels
        # (freqs, mels) triangular filters, HTK scale, unnormalised: mel = |STFT| @ fbank
        self.fbank = AF.melscale_fbanks(
            dims.n_fft // 2 + 1, dims.f_min, dims.f_max, dims.n_mels, dims.sampling_rate, norm=None, mel_scale="htk"
        )
        self.inverse = torch.linalg.pinv(self.fbank)  # (mels, freqs): least-squares back to linear bins
        self.window = torch.hann_window(dims.n_fft)

    def _stft_magnitude(self, mono: torch.Tensor) -> torch.Tensor:
        """(frames, freqs) for mono (samples,), a whole number of hops long: frame i is centred on sample i·hop
        (``torch.stft(center=True)`` without its extra last frame)."""
        d = self.dims
        spec = torch.stft(
            mono, d.n_fft, d.hop_length, window=self.window, center=True, pad_mode="constant", return_complex=True
        )
        return spec.abs().T[: mono.shape[-1] // d.hop_length]

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Latents (L, C), fp32 on the CPU, for audio (channels, samples) at the codec's rate;
        ``L = ceil(samples / samples_per_latent)`` (the end is zero-padded to a whole latent frame)."""
        self._check_audio(audio)
        d = self.dims
        mono = audio.detach().float().cpu().mean(dim=0)
        mono = torch.nn.functional.pad(mono, (0, (-mono.shape[-1]) % d.samples_per_latent))
        mel = self._stft_magnitude(mono) @ self.fbank
        frames = (mel.clamp_min(d.floor).log() - d.mean) / d.scale  # (mel frames, n_mels)
        return frames.reshape(-1, self.latent_channels).contiguous()  # frames_per_latent mel frames per row

    def encode_tail(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """Latents (frames, C) of the last ``frames × hop`` samples of ``audio``, aligned to its END, with the
        audio before it as the STFT's left context."""
        self._check_audio(audio)
        hop = self.geometry.hop_length
        whole = audio.shape[-1] // hop
        if not 1 <= frames <= whole:
            raise AudioInputError(
                f"the input has {whole} whole latent frames ({audio.shape[-1]} samples); a tail of {frames} frames "
                "does not fit; use a shorter tail or a longer input"
            )
        context = min(whole - frames, DECODE_CONTEXT_FRAMES)
        start = audio.shape[-1] - (frames + context) * hop
        return self.encode(audio[..., start:])[-frames:]

    def magnitudes(self, latents: torch.Tensor) -> torch.Tensor:
        """Linear-frequency magnitudes (freqs, mel frames) for latents (L, C): ``L × frames_per_latent`` frames."""
        d = self.dims
        frames = latents.float().cpu().reshape(-1, d.n_mels)
        mel = (frames * d.scale + d.mean).clamp_max(math.log(d.ceiling)).exp()
        mel = torch.where(mel <= d.floor * 1.0001, torch.zeros_like(mel), mel)  # the floor stands for silence
        return (mel @ self.inverse).clamp_min(0.0).T

    def decode(
        self,
        latents: torch.Tensor,
        *,
        skip_frames: int = 0,
        num_samples: int | None = None,
        progress: ProgressFn = no_progress,
    ) -> torch.Tensor:
        """Audio (channels, samples) for latents (L, C), or (B, channels, samples) for (B, L, C); fp32 on the CPU.

        ``skip_frames`` drops the audio of the first frames (a continuation prefix) after reconstructing them as
        context; ``num_samples`` then trims to an exact length. Progress: ``progress("vae", chunk, chunks)``.
        """
        if latents.ndim == 3:
            return torch.stack([self.decode(z, skip_frames=skip_frames, num_samples=num_samples) for z in latents])
        if latents.ndim != 2 or latents.shape[-1] != self.latent_channels:
            raise ModelError(
                f"latents are {tuple(latents.shape)}, the spectral codec expects (L, {self.latent_channels}) "
                "or (B, L, C)"
            )
        length = latents.shape[0]
        hop = self.geometry.hop_length
        if not 0 <= skip_frames < length:
            raise ValueError(f"skip_frames must be in [0, {length - 1}], got {skip_frames}")
        available = (length - skip_frames) * hop
        if num_samples is not None and not 0 < num_samples <= available:
            raise ValueError(
                f"num_samples must be in [1, {available}] for {length - skip_frames} frames, got {num_samples}"
            )
        # Chunks of DECODE_CHUNK_FRAMES, each with DECODE_CONTEXT_FRAMES of context on both sides; neighbouring
        # chunks' phases differ, so they are cross-faded over the 2 × context frames both reconstruct.
        first = max(0, skip_frames - DECODE_CONTEXT_FRAMES)
        starts = list(range(skip_frames, length, DECODE_CHUNK_FRAMES))
        total = torch.zeros((length - first) * hop)
        weight = torch.zeros_like(total)

        def overlap(core: int) -> int:  # samples both chunk ``core`` and the one before it reconstruct
            return (min(length, core + DECODE_CONTEXT_FRAMES) - (core - DECODE_CONTEXT_FRAMES)) * hop

        with torch.no_grad():
            for n, core in enumerate(starts):
                end = min(core + DECODE_CHUNK_FRAMES, length)
                lo, hi = max(first, core - DECODE_CONTEXT_FRAMES), min(length, end + DECODE_CONTEXT_FRAMES)
                audio = self._griffin_lim(latents[lo:hi])
                w = torch.ones_like(audio)
                if n > 0:
                    fade_in = overlap(core)
                    w[:fade_in] = torch.linspace(0.0, 1.0, fade_in + 2)[1:-1]
                if n < len(starts) - 1:
                    fade_out = overlap(starts[n + 1])
                    w[-fade_out:] = torch.linspace(1.0, 0.0, fade_out + 2)[1:-1]
                total[(lo - first) * hop : (hi - first) * hop] += audio * w
                weight[(lo - first) * hop : (hi - first) * hop] += w
                progress("vae", n + 1, len(starts))
        mono = (total / weight)[(skip_frames - first) * hop :]
        if num_samples is not None:
            mono = mono[:num_samples]
        return mono[None].repeat(self.audio_channels, 1)

    def _griffin_lim(self, latents: torch.Tensor) -> torch.Tensor:
        """Mono audio of ``len(latents) × samples_per_latent`` samples."""
        import torchaudio.functional as AF

        d = self.dims
        spec = self.magnitudes(latents)
        spec = torch.cat([spec, spec[:, -1:]], dim=1)  # L + 1 centred frames span exactly L × hop samples
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(d.seed)
            return AF.griffinlim(
                spec,
                self.window,
                d.n_fft,
                d.hop_length,
                d.n_fft,
                1.0,
                d.griffin_lim_iters,
                d.momentum,
                latents.shape[0] * d.samples_per_latent,
                True,
            )

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self.dims), sort_keys=True).encode()).hexdigest()

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.ndim != 2 or audio.shape[0] not in (1, 2) or audio.shape[1] == 0:
            raise AudioInputError(
                f"audio for the spectral codec must be (channels, samples) at {self.dims.sampling_rate} Hz, "
                f"got shape {tuple(audio.shape)}"
            )
        if not torch.isfinite(audio).all():
            raise AudioInputError("audio for the spectral codec contains NaN or infinite samples")


def spectral_stats(codec: SpectralCodec, clips: list[Any]) -> tuple[float, float]:
    """Mean and standard deviation of ``ln(max(mel, floor))`` over clips (channels, samples): the normalisation
    a spectral codec's dims record (measured once, then fixed)."""
    values = []
    d = codec.dims
    for clip in clips:
        mono = torch.as_tensor(clip, dtype=torch.float32).mean(dim=0)
        mono = torch.nn.functional.pad(mono, (0, (-mono.shape[-1]) % d.hop_length))
        values.append((codec._stft_magnitude(mono) @ codec.fbank).clamp_min(d.floor).log().reshape(-1))
    flat = torch.cat(values)
    return float(flat.mean()), float(flat.std())
