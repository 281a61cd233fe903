"""diffusers ``AutoencoderOobleck`` (Stable Audio Open VAE): 44.1 kHz stereo, 2048 samples per latent frame.

Decoding is chunked along time to bound memory: each chunk of ``chunk_frames`` is decoded with
``overlap_frames`` of context on each side, and the context is trimmed away. The decoder's receptive field is
about 11 latent frames (conv k7 at latent rate plus the first upsampling block's dilated convs), so with an
overlap of at least that the result equals an unchunked decode up to float rounding. (diffusers' own
``enable_tiling`` does the same trim-and-concatenate, but with fixed 512/64-frame tiles and state on the model.)

Latents here are (L, C) or (B, L, C), frames first, like the DiT's; the VAE itself wants (B, C, L).
The VAE runs in fp32 or bf16, never fp16 (Oobleck overflows).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderOobleck

from ..config import VAEDims
from ..errors import AudioInputError, ModelError
from ..progress import ProgressFn, no_progress

DEFAULT_CHUNK_FRAMES = 128  # ~5.9 s of audio per decoder call
DEFAULT_OVERLAP_FRAMES = 16  # > the decoder's ~11-frame receptive field
ENCODE_CONTEXT_FRAMES = 8  # extra audio before a tail so its first frames see real signal, not zero padding


def build_vae(dims: VAEDims) -> AutoencoderOobleck:
    """A randomly initialised Oobleck VAE in eval mode (load weights with ``load_state_dict(strict=True)``)."""
    if dims.decoder_input_channels * 2 != dims.encoder_hidden_size:
        raise ValueError(
            f"decoder_input_channels ({dims.decoder_input_channels}) must be encoder_hidden_size/2 "
            f"({dims.encoder_hidden_size}/2): the encoder emits mean and scale"
        )
    vae = AutoencoderOobleck(
        encoder_hidden_size=dims.encoder_hidden_size,
        downsampling_ratios=list(dims.downsampling_ratios),
        channel_multiples=list(dims.channel_multiples),
        decoder_channels=dims.decoder_channels,
        decoder_input_channels=dims.decoder_input_channels,
        audio_channels=dims.audio_channels,
        sampling_rate=dims.sampling_rate,
    )
    return vae.eval()


def _check_dtype(vae: AutoencoderOobleck) -> torch.dtype:
    dtype = vae.dtype
    if dtype == torch.float16:
        raise ModelError("the VAE is in fp16, where Oobleck overflows; keep it in fp32 or bf16 (Runtime.vae_dtype)")
    return dtype


def decode(
    vae: AutoencoderOobleck,
    latents: torch.Tensor,
    *,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES,
    skip_frames: int = 0,
    num_samples: int | None = None,
    progress: ProgressFn = no_progress,
) -> torch.Tensor:
    """Audio (channels, samples) for latents (L, C), or (B, channels, samples) for (B, L, C); fp32 on the CPU.

    ``skip_frames`` drops the audio of the first frames (a continuation prefix) after decoding them with their
    context; ``num_samples`` then trims to an exact length (``LatentGeometry.samples(seconds)``), which must not
    exceed what the frames decode to. Progress: ``progress("vae", chunk, chunks)``.
    """
    if chunk_frames < 1 or overlap_frames < 0:
        raise ValueError(f"chunk_frames must be >= 1 and overlap_frames >= 0, got {chunk_frames}, {overlap_frames}")
    single = latents.ndim == 2
    z = latents[None] if single else latents
    if z.ndim != 3 or z.shape[-1] != vae.config.decoder_input_channels:
        raise ModelError(
            f"latents are {tuple(latents.shape)}, the VAE expects (L, {vae.config.decoder_input_channels}) or (B, L, C)"
        )
    length = z.shape[1]
    if not 0 <= skip_frames < length:
        raise ValueError(f"skip_frames must be in [0, {length - 1}], got {skip_frames}")
    hop = vae.hop_length
    available = (length - skip_frames) * hop
    if num_samples is not None and not 0 < num_samples <= available:
        raise ValueError(
            f"num_samples must be in [1, {available}] for {length - skip_frames} frames, got {num_samples}"
        )
    dtype = _check_dtype(vae)
    z = z.to(device=vae.device, dtype=dtype).transpose(1, 2)
    pieces = []
    starts = list(range(0, length, chunk_frames))
    with torch.no_grad():
        for n, core_start in enumerate(starts):
            core_end = min(core_start + chunk_frames, length)
            lo, hi = max(0, core_start - overlap_frames), min(length, core_end + overlap_frames)
            audio = vae.decode(z[:, :, lo:hi]).sample
            pieces.append(audio[..., (core_start - lo) * hop : (core_end - lo) * hop].float().cpu())
            progress("vae", n + 1, len(starts))
    audio = torch.cat(pieces, dim=-1)[..., skip_frames * hop :]
    if num_samples is not None:
        audio = audio[..., :num_samples]
    return audio[0] if single else audio


def encode(vae: AutoencoderOobleck, audio: torch.Tensor) -> torch.Tensor:
    """Latents (L, C), fp32 on the CPU, for audio (channels, samples) at the VAE's rate and channel count.

    The audio is zero-padded at the end to a whole number of hops, so ``L = ceil(samples / hop)``; the latent is
    the posterior mean (deterministic).
    """
    _check_audio(vae, audio)
    hop = vae.hop_length
    pad = (-audio.shape[-1]) % hop
    x = torch.nn.functional.pad(audio.float(), (0, pad))[None]
    with torch.no_grad():
        mean = vae.encode(x.to(device=vae.device, dtype=_check_dtype(vae))).latent_dist.mean
    return mean[0].transpose(0, 1).float().cpu()


def encode_tail(vae: AutoencoderOobleck, audio: torch.Tensor, frames: int) -> torch.Tensor:
    """Latents (frames, C) of the last ``frames × hop`` samples of ``audio``, aligned to its END.

    This is the continuation prefix: decoded prefix + new frames then joins the input exactly at its last sample.
    Up to ``ENCODE_CONTEXT_FRAMES`` frames of earlier audio are encoded along and dropped, so the tail's first
    frames see real signal.
    """
    _check_audio(vae, audio)
    hop = vae.hop_length
    whole = audio.shape[-1] // hop
    if not 1 <= frames <= whole:
        raise AudioInputError(
            f"the input has {whole} whole latent frames ({audio.shape[-1]} samples); a tail of {frames} frames "
            "does not fit; use a shorter tail or a longer input"
        )
    take = min(whole, frames + ENCODE_CONTEXT_FRAMES)
    latents = encode(vae, audio[..., audio.shape[-1] - take * hop :])
    return latents[-frames:]


def _check_audio(vae: AutoencoderOobleck, audio: torch.Tensor) -> None:
    channels = vae.config.audio_channels
    if audio.ndim != 2 or audio.shape[0] != channels or audio.shape[1] == 0:
        raise AudioInputError(
            f"audio for the VAE must be ({channels} channels, samples) at {vae.sampling_rate} Hz, "
            f"got shape {tuple(audio.shape)}"
        )
    if not torch.isfinite(audio).all():
        raise AudioInputError("audio for the VAE contains NaN or infinite samples")
