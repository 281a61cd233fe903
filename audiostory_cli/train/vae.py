"""Oobleck VAE pretraining (``audiostory train vae``): reconstruct clips from a manifest, then write the model.

Loss: waveform L1 + multi-resolution STFT (spectral convergence + log-magnitude L1 at three FFT sizes) +
optionally a multi-resolution log-mel L1 (``mel_weight``) + a small KL to the unit Gaussian, on random
fixed-length crops of the clips (optionally each scaled to a random level, ``level_db``). Only the VAE is
trained; every other part of the model folder is written back unchanged, so the result is a model folder the
stages start from. Optionally (``adversarial_weight`` > 0, after ``adversarial_start`` steps) a multi-resolution
complex-STFT discriminator joins, with a feature-matching term, as Stable Audio's VAE was trained
(``discriminator.py``); it is meant for long GPU runs. At the end, for a foley clips manifest,
the eval classifier checks how many reconstructions it still recognises (``reconstruction_check``): the number
that says whether the VAE is usable, which its loss does not.

Choices that keep a small VAE trained from scratch from collapsing to one fixed output whatever the input
(measured on the demo's 16 kHz VAE: every reconstruction identical, 5 % of reconstructed clips recognised): the
decoder reconstructs from the posterior *mean* (the encoder's latent differences between clips start ~50x
smaller than the sampling noise, so a sampled latent carries nothing the decoder could use; the training
features are encoded as means too), the log-magnitude term has a floor (``log_floor``) so that near-silent bins
of quiet foley clips do not reward a fixed quiet output, and a random VAE starts from ``unit_variance_init``.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TrainingError, UsageError
from ..progress import ProgressFn, no_progress
from .config import LoopConfig
from .engine import RunContext, RunInfo, StepReport, TrainResult, fp32_runtime, run_task
from .module import PartCount

if TYPE_CHECKING:
    from diffusers import AutoencoderOobleck

STFT_SIZES: tuple[int, ...] = (256, 512, 1024)


@dataclass(frozen=True)
class VAETrainConfig:
    model: Path  # a model folder; its VAE is trained
    clips: Path  # a clips manifest ({"audio", "caption"}), audio at the VAE's rate
    out: Path  # the model folder written at the end
    steps: int = 1000
    batch_size: int = 8
    segment_seconds: float = 1.0
    lr: float = 3e-4
    kl_weight: float = 1e-4
    l1_weight: float = 1.0  # waveform L1
    stft_weight: float = 1.0  # multi-resolution STFT (spectral convergence + log magnitude)
    mel_weight: float = 0.0  # multi-resolution log-mel L1
    log_floor: float = 1e-2  # added to STFT and mel magnitudes before the log
    level_db: tuple[float, float] | None = None  # each crop scaled to a random RMS level in this dBFS range
    sample_latents: bool = False  # decode a posterior sample instead of the mean
    adversarial_weight: float = 0.0  # hinge loss of the multi-resolution STFT discriminator (0: no discriminator)
    feature_matching_weight: float = 2.0  # L1 between the discriminator's activations (with the discriminator only)
    adversarial_start: int = 0  # reconstruction-only steps before the discriminator joins
    check_clips: int = 40  # reconstructions checked by the eval classifier at the end (foley manifests; 0: none)
    seed: int = 0
    device: str = "auto"
    save_every: int = 500
    keep_checkpoints: int = 1
    resume: bool = False

    def loop(self) -> LoopConfig:
        """The engine's options: constant learning rate, AdamW betas (0.8, 0.99) as Stable Audio's VAE."""
        return LoopConfig(
            out=Path(self.out),
            steps=self.steps,
            seed=self.seed,
            warmup=0,
            schedule="constant",
            betas=(0.8, 0.99),
            max_grad_norm=1.0,
            save_every=self.save_every,
            keep_checkpoints=self.keep_checkpoints,
            device=self.device,
            mixed_precision="no",
            resume=self.resume,
        )

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError(f"--steps {self.steps} and --batch-size {self.batch_size} must be positive")
        if not (math.isfinite(self.segment_seconds) and 0.1 <= self.segment_seconds <= 30):
            raise UsageError(f"--segment-seconds {self.segment_seconds} must be in 0.1..30")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise UsageError(f"--lr {self.lr} must be in (0, 1)")
        weights = (
            self.kl_weight,
            self.l1_weight,
            self.stft_weight,
            self.mel_weight,
            self.adversarial_weight,
            self.feature_matching_weight,
        )
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise UsageError(
                "--kl-weight, --l1-weight, --stft-weight, --mel-weight, --adversarial-weight and "
                "--feature-matching-weight must not be negative"
            )
        if self.adversarial_weight and not 0 <= self.adversarial_start < self.steps:
            raise UsageError(
                f"--adversarial-start {self.adversarial_start} must be in 0..{self.steps - 1} "
                f"(--steps {self.steps}) so that the discriminator trains at all"
            )
        if self.check_clips < 0 or self.save_every < 1:
            raise UsageError(
                f"--check-clips {self.check_clips} must not be negative and --save-every {self.save_every} positive"
            )
        if self.l1_weight + self.stft_weight + self.mel_weight == 0:
            raise UsageError("--l1-weight, --stft-weight and --mel-weight are all 0: nothing to reconstruct")
        if self.level_db is not None:
            low, high = self.level_db
            if not (math.isfinite(low) and math.isfinite(high) and -60 <= low <= high <= 0):
                raise UsageError(f"--level-db {low:g},{high:g} must be two dBFS levels with -60 <= LOW <= HIGH <= 0")
        if not (math.isfinite(self.log_floor) and self.log_floor > 0):
            raise UsageError(f"--log-floor {self.log_floor} must be a positive number")
        if Path(self.out).resolve() == Path(self.model).resolve():
            raise UsageError("--out must be a new folder, not the --model folder itself")


def parse_level_db(text: str) -> tuple[float, float] | None:
    """``"-30,-12"`` -> (-30.0, -12.0); ``"off"`` -> None (a one-line error for anything else)."""
    if text.strip().lower() == "off":
        return None
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--level-db {text!r} must be LOW,HIGH in dBFS (e.g. -30,-12) or off") from None
    return low, high


def multi_resolution_stft_loss(
    pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = STFT_SIZES, log_floor: float = 1e-2
) -> torch.Tensor:
    """Mean over FFT sizes of spectral convergence + L1 of log(magnitude + log_floor); inputs (B, C, T)."""
    x, y = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    total = pred.new_zeros(())
    for n_fft in sizes:
        window = torch.hann_window(n_fft, device=pred.device, dtype=pred.dtype)
        sx = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs()
        sy = torch.stft(y, n_fft, n_fft // 4, window=window, return_complex=True).abs()
        convergence = torch.linalg.norm(sy - sx) / torch.linalg.norm(sy).clamp_min(1e-5)
        total = total + convergence + F.l1_loss((sx + log_floor).log(), (sy + log_floor).log())
    return total / len(sizes)


MEL_SIZES: tuple[tuple[int, int], ...] = ((256, 32), (512, 64), (1024, 80), (2048, 128))  # (FFT size, mel bands)


@functools.lru_cache(maxsize=32)
def mel_bank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """torchaudio's mel filterbank (n_fft // 2 + 1, bands), with fewer than ``n_mels`` bands where the lowest
    ones would be narrower than one FFT bin (empty filters) at this FFT size and rate."""
    import torchaudio

    for bands in range(n_mels, 0, -1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchaudio warns about the empty filters we skip
            bank = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, bands, sample_rate)
        if bool((bank.sum(dim=0) > 0).all()):
            return bank
    raise ValueError(f"no mel filterbank fits an FFT of {n_fft} at {sample_rate} Hz")


def multi_resolution_mel_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    sample_rate: int,
    sizes: tuple[tuple[int, int], ...] = MEL_SIZES,
    log_floor: float = 1e-2,
) -> torch.Tensor:
    """Mean over FFT sizes of the L1 between log10(mel magnitude + log_floor) spectra; inputs (B, C, T).

    A mel-weighted log spectrum is what listeners (and the eval classifier's features) weigh; unlike a waveform
    L1 it does not reward a quieter output for noisy sounds whose phase cannot be predicted."""
    x, y = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    total = pred.new_zeros(())
    for n_fft, n_mels in sizes:
        window = torch.hann_window(n_fft, device=pred.device, dtype=pred.dtype)
        bank = mel_bank(n_fft, n_mels, sample_rate).to(device=pred.device, dtype=pred.dtype)
        mx = torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs().transpose(1, 2) @ bank
        my = torch.stft(y, n_fft, n_fft // 4, window=window, return_complex=True).abs().transpose(1, 2) @ bank
        total = total + F.l1_loss((mx + log_floor).log10(), (my + log_floor).log10())
    return total / len(sizes)


def set_levels(batch: torch.Tensor, rng: np.random.Generator, level_db: tuple[float, float]) -> torch.Tensor:
    """Each crop of ``batch`` (B, C, T) scaled to a random RMS level in ``level_db`` (dBFS), gain at most +30 dB,
    clipped to [-1, 1]: quiet and loud clips then weigh alike in the loss."""
    rms = batch.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-6)
    wanted = torch.from_numpy(10 ** (rng.uniform(*level_db, size=(batch.shape[0], 1, 1)) / 20)).to(batch)
    return (batch * (wanted / rms).clamp(max=10**1.5)).clamp(-1.0, 1.0)


def _signal_sizes(
    vae: AutoencoderOobleck, audio: torch.Tensor, module: torch.nn.Module, watched: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The std of ``module``'s input ("in") and of ``watched``'s output ("out") when the VAE reconstructs ``audio``."""
    seen: dict[str, torch.Tensor] = {}

    def keep_output(_module: torch.nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        seen["out"] = output.std()

    def keep_input(_module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        seen["in"] = inputs[0].std()

    hooks = [watched.register_forward_hook(keep_output), module.register_forward_pre_hook(keep_input)]
    try:
        vae.decode(vae.encode(audio).latent_dist.mean)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def unit_variance_init(
    vae: AutoencoderOobleck, *, audio_std: float = 0.05, branch_gain: float = 0.3, rounds: int = 2, seed: int = 0
) -> None:
    """Rescale a *randomly initialised* Oobleck VAE so that signals keep their size through it (LSUV, Mishkin &
    Matas 2016), measured on Gaussian noise of ``audio_std``.

    With PyTorch's default conv init every layer shrinks its input ~1.7x, so the demo VAE's latents start ~300x
    smaller than the audio and its output ~1600x smaller (3e-5 for input at 0.05): pretraining then spends its
    steps growing the weights and settles on one fixed output. Here every main-path conv (the strided ones, the
    first and last of encoder and decoder) is scaled to output unit std, the decoder's last one to ``audio_std``,
    and every residual branch to add ``branch_gain`` times its input's std. Only weight-norm magnitudes change.
    Its effect on the demo VAE is in docs/demo-model.md ("VAE").
    """
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckResidualUnit

    encoder, decoder = vae.encoder, vae.decoder
    steps: list[tuple[torch.nn.Module, float | None]] = [(encoder.conv1, 1.0)]  # (module, target std | None)
    for block in encoder.block:
        steps += [(m, None) for m in block.modules() if isinstance(m, OobleckResidualUnit)] + [(block.conv1, 1.0)]
    steps += [(encoder.conv2, 1.0), (decoder.conv1, 1.0)]
    for block in decoder.block:
        steps += [(block.conv_t1, 1.0)] + [(m, None) for m in block.modules() if isinstance(m, OobleckResidualUnit)]
    steps.append((decoder.conv2, audio_std))
    generator = torch.Generator().manual_seed(seed)
    hop = int(np.prod(vae.config.downsampling_ratios))
    noise = torch.randn(2, vae.config.audio_channels, 16 * hop, generator=generator) * audio_std
    noise = noise.to(next(vae.parameters()).device)
    with torch.no_grad():
        for _ in range(rounds):
            for module, target in steps:
                watched = module.get_submodule("conv2") if target is None else module
                seen = _signal_sizes(vae, noise, module, watched)
                wanted = branch_gain * seen["in"] if target is None else target
                watched.get_parameter("weight_g").mul_(wanted / seen["out"].clamp_min(1e-12))


@dataclass(frozen=True)
class TrainingClips:
    audio: list[np.ndarray]  # int16 (channels, samples) at the VAE's rate (compact in memory)
    classes: list[str | None]  # each clip's foley ``class`` when the manifest names one
    sample_rate: int


def load_clips(manifest: Path, sample_rate: int, channels: int) -> TrainingClips:
    """Every clip of a clips manifest at ``sample_rate`` with ``channels`` channels, and its class if named."""
    from ..audio.io import read_audio

    manifest = Path(manifest)
    if not manifest.is_file():
        raise UsageError(f"clips manifest {manifest} does not exist")
    clips, classes = [], []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{manifest}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict) or "audio" not in row:
            raise TrainingError(f'{manifest}:{number}: no "audio" field; the VAE trains on a clips manifest')
        audio, rate = read_audio(manifest.parent / row["audio"], what="training audio")
        if rate != sample_rate:
            raise TrainingError(
                f"{manifest}:{number}: audio at {rate} Hz but the VAE runs at {sample_rate} Hz; "
                "write the manifest at the VAE's rate"
            )
        if audio.shape[0] != channels:
            audio = np.repeat(audio[:1], channels, axis=0) if audio.shape[0] == 1 else audio[:channels]
        clips.append(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
        classes.append(row.get("class") if isinstance(row.get("class"), str) else None)
    if not clips:
        raise TrainingError(f"{manifest} holds no clips")
    return TrainingClips(clips, classes, sample_rate)


def random_batch(clips: list[np.ndarray], rng: np.random.Generator, batch: int, length: int) -> torch.Tensor:
    """(batch, channels, length) float crops at random clips and offsets (zero-padded when a clip is short)."""
    out = np.zeros((batch, clips[0].shape[0], length), dtype=np.float32)
    for b in range(batch):
        clip = clips[int(rng.integers(len(clips)))]
        start = int(rng.integers(max(clip.shape[1] - length, 0) + 1))
        piece = clip[:, start : start + length]
        out[b, :, : piece.shape[1]] = piece / 32767.0
    return torch.from_numpy(out)


def reconstruction_check(
    vae: AutoencoderOobleck, clips: TrainingClips, *, limit: int = 40
) -> tuple[float, float] | None:
    """(originals, reconstructions) recognised by the foley eval classifier, over the first ``limit`` clips when
    they all name a foley bank class; None otherwise. The number that says whether a VAE is usable for the demo
    world: its loss alone does not."""
    from ..foley.bank import CLASS_NAMES
    from ..foley.classifier import load_or_train

    chosen = list(zip(clips.audio, clips.classes, strict=True))[:limit]
    if not chosen or not all(name in CLASS_NAMES for _, name in chosen):
        return None
    classifier = load_or_train()
    device = next(vae.parameters()).device
    originals = reconstructions = 0
    with torch.no_grad():
        for stored, name in chosen:
            wave = stored.astype(np.float32) / 32767.0
            x = torch.from_numpy(wave)[None].to(device)
            recon = vae.decode(vae.encode(x).latent_dist.mean).sample[0, :, : wave.shape[1]].float().cpu().numpy()
            originals += classifier.predict(wave, clips.sample_rate)[0] == name
            reconstructions += classifier.predict(recon, clips.sample_rate)[0] == name
    return originals / len(chosen), reconstructions / len(chosen)


def reconstruction_loss(
    config: VAETrainConfig, recon: torch.Tensor, target: torch.Tensor, sample_rate: int
) -> torch.Tensor:
    """The weighted waveform L1 + multi-resolution STFT + multi-resolution log-mel losses of ``config``."""
    loss = recon.new_zeros(())
    if config.l1_weight:
        loss = loss + config.l1_weight * F.l1_loss(recon, target)
    if config.stft_weight:
        loss = loss + config.stft_weight * multi_resolution_stft_loss(recon, target, log_floor=config.log_floor)
    if config.mel_weight:
        loss = loss + config.mel_weight * multi_resolution_mel_loss(
            recon, target, sample_rate, log_floor=config.log_floor
        )
    return loss


class Adversary:
    """The discriminator side of adversarial VAE training: ``step`` updates the discriminator on real and
    reconstructed crops, then returns the VAE's adversarial + feature-matching loss (to add to its own)."""

    def __init__(self, audio_channels: int, config: VAETrainConfig, device: torch.device) -> None:
        from .discriminator import MultiResolutionDiscriminator

        self.config = config
        self.discriminator = MultiResolutionDiscriminator(audio_channels).to(device).train()
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=config.lr, betas=(0.8, 0.99))
        self.history: list[tuple[float, float, float]] = []  # (discriminator, adversarial, feature matching)

    def step(self, real: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        from .discriminator import discriminator_hinge_loss, feature_matching_loss, generator_hinge_loss

        self.discriminator.requires_grad_(True)
        d_loss = discriminator_hinge_loss(self.discriminator(real), self.discriminator(recon.detach()))
        self.optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), 1.0)
        self.optimizer.step()
        with torch.no_grad():
            real_out = self.discriminator(real)
        self.discriminator.requires_grad_(False)  # the VAE's loss below must not train the discriminator
        fake_out = self.discriminator(recon)
        adversarial = generator_hinge_loss(fake_out)
        matching = feature_matching_loss(real_out, fake_out)
        self.history.append((float(d_loss.item()), float(adversarial.item()), float(matching.item())))
        return self.config.adversarial_weight * adversarial + self.config.feature_matching_weight * matching

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # in place (torch's strict load copies into the parameters its optimizer already holds)
        self.discriminator.load_state_dict(state["discriminator"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])

    def summary(self) -> str:
        """Recent means of the discriminator, adversarial and feature-matching losses (empty before it joins)."""
        if not self.history:
            return ""
        d_loss, adversarial, matching = np.mean(self.history[-max(self.config.steps // 10, 1) :], axis=0)
        return f" (discriminator {d_loss:.3f}, adversarial {adversarial:.3f}, feature matching {matching:.3f})"


class VAEReconstruction(torch.nn.Module):
    """The VAE as a training module: KL + reconstruction (+ the adversary's loss once it has joined)."""

    def __init__(self, vae: AutoencoderOobleck, config: VAETrainConfig, sample_rate: int) -> None:
        super().__init__()
        self.vae = vae
        self.config = config
        self.sample_rate = sample_rate
        self.adversary: Adversary | None = None  # a plain attribute: the discriminator is not what is trained

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        config, x = self.config, batch["audio"]
        posterior = self.vae.encode(x).latent_dist
        latent = posterior.sample(generator) if config.sample_latents else posterior.mean
        recon = self.vae.decode(latent).sample[..., : x.shape[-1]]
        losses = {
            "kl": posterior.kl().mean(),
            "reconstruction": reconstruction_loss(config, recon, x, self.sample_rate),
        }
        loss = config.kl_weight * losses["kl"] + losses["reconstruction"]
        if self.adversary is not None and self.training and batch["step"] > config.adversarial_start:
            losses["adversarial"] = self.adversary.step(x, recon)
            loss = loss + losses["adversarial"]
        return {"loss": loss, **losses}


class VAETask:
    """The VAE of a model folder, reconstructing random crops of a clips manifest."""

    title = "vae"
    supports_fsdp = False

    def __init__(self, config: VAETrainConfig) -> None:
        config.check()
        self.config = config

    def prepare(self, context: RunContext) -> None:
        from ..model import load_model_folder

        config = self.config
        if config.adversarial_weight and context.world > 1:  # its discriminator steps inside forward, unsynchronised
            raise UsageError("--adversarial-weight trains on one process; run train vae without accelerate/torchrun")
        self.model = load_model_folder(Path(config.model), fp32_runtime(context.device))
        if self.model.vae is None or self.model.dims.vae is None:
            raise UsageError(
                f"{config.model} uses the fixed spectral codec (no VAE weights): there is nothing to pretrain; "
                "train its stages directly"
            )
        dims = self.model.dims.vae
        self.clips = load_clips(config.clips, dims.sampling_rate, dims.audio_channels)
        self.length = int(round(config.segment_seconds * dims.sampling_rate / dims.hop_length)) * dims.hop_length
        vae = self.model.vae.float().to(context.device).train()
        for param in vae.parameters():
            param.requires_grad_(True)
        self._module = VAEReconstruction(vae, config, dims.sampling_rate)
        if config.adversarial_weight:
            torch.manual_seed(config.seed)
            self._module.adversary = Adversary(dims.audio_channels, config, context.device)

    def module(self) -> VAEReconstruction:
        return self._module

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "vae", "params": list(self._module.vae.parameters()), "lr": self.config.lr}]

    def counts(self) -> list[PartCount]:
        from .module import parameter_counts

        return parameter_counts(self._module)

    def examples(self) -> dict[str, int]:
        return {"clips": len(self.clips.audio)}

    def resume_options(self) -> dict[str, Any]:
        skip = ("out", "resume", "device", "save_every", "keep_checkpoints", "steps", "clips", "check_clips")
        return {
            k: list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v
            for k, v in vars(self.config).items()
            if k not in skip
        }

    def data_hash(self) -> str:
        import hashlib

        digest = hashlib.sha256()
        for clip in self.clips.audio:
            digest.update(clip.tobytes())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"base_model": {"ref": str(self.config.model), "name": self.model.name}}

    def batch(self, micro: int, world: int, rank: int, device: torch.device) -> dict[str, Any]:
        """Random crops drawn from (seed, micro-batch, rank) alone, so a resumed run draws what it would have."""
        config = self.config
        rng = np.random.default_rng([config.seed, 0xAE, micro, rank])
        x = random_batch(self.clips.audio, rng, config.batch_size, self.length)
        if config.level_db is not None:
            x = set_levels(x, rng, config.level_db)
        return {"audio": x.to(device), "step": micro + 1, "tokens": 0}

    def evaluate(self, module: torch.nn.Module, generator: torch.Generator, device: torch.device) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict[str, Any] | None:
        adversary = self._module.adversary
        return None if adversary is None else {"adversary": adversary.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self._module.adversary is None or "adversary" not in state:
            raise TrainingError(
                "the checkpoint's adversarial state does not match this run; resume with the same options"
            )
        self._module.adversary.load_state_dict(state["adversary"])

    def after_step(self) -> None:
        """Nothing to update between steps."""

    def unsharded(self, whole: dict[str, torch.Tensor]) -> torch.nn.Module:
        raise TrainingError("VAE pretraining does not shard (no --fsdp)")

    def export(self, module: torch.nn.Module, info: dict[str, Any], mixed_precision: str) -> dict[str, Any]:
        """Check the reconstructions (foley clips), then write the model folder with this VAE."""
        from .checkpoint import export_model
        from .t5_tokenizer import resolve_t5_tokenizer

        config, model = self.config, self.model
        vae = module.vae.eval()  # type: ignore[union-attr]
        recognised = reconstruction_check(vae, self.clips, limit=config.check_clips) if config.check_clips else None
        adversary = self._module.adversary
        summary: dict[str, Any] = {
            **info,
            **self.resume_options(),
            "clips": str(config.clips),
            "discriminator": None if adversary is None else adversary.summary().strip(" ()") or None,
            "recognised": None
            if recognised is None
            else {"originals": recognised[0], "reconstructions": recognised[1]},
        }
        model.vae = vae.cpu()
        for param in model.vae.parameters():
            param.requires_grad_(False)
        for part in model.parts().values():
            part.cpu()
        t5_tokenizer, _ = resolve_t5_tokenizer(str(config.model), model.dims.text_encoder.vocab_size)
        kept = {k: v for k, v in model.extra.items() if k not in ("training", "training_history")}
        model.extra = {**kept, "vae_pretraining": summary}
        model.name = Path(config.out).name
        export_model(
            Path(config.out), model, t5_tokenizer, base_model=str(config.model), info_extra={"vae_pretraining": summary}
        )
        return {"recognised": recognised}


def pretrain_vae(
    config: VAETrainConfig,
    *,
    progress: ProgressFn = no_progress,
    on_step: Callable[[StepReport], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> TrainResult:
    """Train the VAE of ``config.model`` on ``config.clips`` and write the whole model to ``config.out``.

    ``result.summary["recognised"]``: (originals, reconstructions) recognised by the eval classifier, or None.
    """
    task = VAETask(config)
    result = run_task(task, config.loop(), progress=progress, on_step=on_step, on_start=on_start, log=log)
    adversary = task.module().adversary
    if adversary is not None and adversary.history:
        log(f"adversarial training, recent means:{adversary.summary()}")
    recognised = result.summary.get("recognised")
    if recognised is not None:
        log(
            f"eval classifier on the first clips: originals {recognised[0]:.0%}, "
            f"reconstructions {recognised[1]:.0%} recognised"
        )
    log(f"VAE pretrained: loss {result.final_loss:.4f}; model folder {config.out}")
    return result
