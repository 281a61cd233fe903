"""`audiostory train vae`: pretrain a model folder's Oobleck VAE on clips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..common import err_console, out_console
from .view import TrainProgress, loss_summary


def vae(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder whose Oobleck VAE is trained.")],
    clips: Annotated[Path, typer.Option(metavar="FILE", help="Clips manifest; audio at the VAE's sample rate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New model folder: the model with the trained VAE.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = 8,
    segment_seconds: Annotated[float, typer.Option(help="Length of each random crop in seconds.")] = 1.0,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 3e-4,
    kl_weight: Annotated[float, typer.Option(help="Weight of the KL term.")] = 1e-4,
    l1_weight: Annotated[float, typer.Option(help="Weight of the waveform L1.")] = 1.0,
    stft_weight: Annotated[float, typer.Option(help="Weight of the multi-resolution STFT loss.")] = 1.0,
    mel_weight: Annotated[float, typer.Option(help="Weight of the multi-resolution log-mel loss.")] = 0.0,
    log_floor: Annotated[float, typer.Option(help="Added to STFT magnitudes before the log (quiet clips).")] = 1e-2,
    level_db: Annotated[
        str,
        typer.Option(
            metavar="LOW,HIGH",
            help="Scale each crop to a random RMS level in this dBFS range, e.g. -30,-12; 'off' keeps clip levels.",
        ),
    ] = "off",
    sample_latents: Annotated[
        bool, typer.Option("--sample-latents", help="Decode a posterior sample instead of the mean.")
    ] = False,
    adversarial_weight: Annotated[
        float,
        typer.Option(
            help="Weight of a multi-resolution STFT discriminator's "
            "hinge loss (0: no discriminator; for long GPU runs)."
        ),
    ] = 0.0,
    feature_matching_weight: Annotated[
        float, typer.Option(help="Weight of the discriminator feature-matching loss (with --adversarial-weight).")
    ] = 2.0,
    adversarial_start: Annotated[
        int, typer.Option(help="Reconstruction-only steps before the discriminator joins.")
    ] = 0,
    check_clips: Annotated[
        int, typer.Option(help="Foley clips whose reconstructions the eval classifier checks at the end (0: none).")
    ] = 40,
    save_every: Annotated[int, typer.Option(help="Write a resumable checkpoint every N steps.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the crops and the sampling noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
) -> None:
    """Pretrain a model folder's VAE on clips (waveform L1, STFT and log-mel losses, KL, optionally a
    discriminator); other parts are kept."""
    from ...train.vae import VAETrainConfig, parse_level_db, pretrain_vae

    config = VAETrainConfig(
        model=model,
        clips=clips,
        out=out,
        steps=steps,
        batch_size=batch_size,
        segment_seconds=segment_seconds,
        lr=lr,
        kl_weight=kl_weight,
        l1_weight=l1_weight,
        stft_weight=stft_weight,
        mel_weight=mel_weight,
        log_floor=log_floor,
        level_db=parse_level_db(level_db),
        sample_latents=sample_latents,
        adversarial_weight=adversarial_weight,
        feature_matching_weight=feature_matching_weight,
        adversarial_start=adversarial_start,
        check_clips=check_clips,
        save_every=save_every,
        seed=seed,
        device=device,
        resume=resume,
    )
    config.check()
    with TrainProgress() as view:
        result = pretrain_vae(config, progress=view, on_step=view.step, on_start=view.start, log=view.note)
    recognised = result.summary.get("recognised")
    check = (
        ""
        if recognised is None
        else f"; reconstructions recognised {recognised[1]:.0%} (originals {recognised[0]:.0%})"
    )
    err_console.print(f"VAE loss {loss_summary(result)}{check}")
    out_console.print(str(result.out))
