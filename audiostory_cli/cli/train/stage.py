"""`audiostory train stage 1-warm|1|2|3` (alias `train --stage N`): fine-tune in the paper's stages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ...errors import UsageError
from ..common import err_console, out_console
from ..tables import print_table
from .view import TrainProgress, counts_table

SCHEMA_HELP = (
    "Manifests are JSONL, one example per line; audio paths are relative to the manifest (WAV/FLAC/AIFF, mono "
    "or stereo, any rate).\n\n"
    'clip: {"audio": "a.wav", "caption": "a dog barks twice"}, optional "start" and "duration" in seconds.\n\n'
    'QA (stage 2+): {"audio": "a.wav", "question": "What do you hear?", "answer": "A dog barks."}\n\n'
    'story (stage 3): {"instruction": "...", "reasoning": "storyline", "events": a list of {"caption", '
    '"story_detail", "duration", "audio"}}; or one long "audio" for the story and a "start" per event.\n\n'
    "Stages: 1-warm = LoRA + semantic projector (MSE to s·T5(caption)); 1 = + residual projector, fusion, DiT "
    "(MSE + boundary-token CE + flow); 2 = + QA understanding (Whisper frozen, 2 generation : 1 QA batches); "
    "3 = + multi-event stories with the reasoning loss.\n\n"
    "The --out folder becomes a model: `audiostory tell --model OUT`. Multi-GPU: "
    "`accelerate launch --multi_gpu --num_processes N -m audiostory_cli train stage N ...` (or torchrun; add "
    "--fsdp to shard the model instead of replicating it). Check data first: `audiostory train check-data FILE`."
)

Manifests = list[Path] | None


def stage(
    stage: Annotated[str, typer.Argument(metavar="STAGE", help="1-warm, 1, 2 or 3 (see below).")],
    data: Annotated[Manifests, typer.Option(metavar="FILE", help="Manifest (any kind per line). Repeatable.")] = None,
    clips: Annotated[Manifests, typer.Option(metavar="FILE", help="Manifest of single clips. Repeatable.")] = None,
    qa: Annotated[Manifests, typer.Option(metavar="FILE", help="Manifest of audio QA (stage 2+). Repeatable.")] = None,
    stories: Annotated[Manifests, typer.Option(metavar="FILE", help="Manifest of stories. Repeatable.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics, model).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model: name or model folder.")] = "audiostory-3b",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Examples per micro-batch and process.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    lr_llm: Annotated[float, typer.Option(help="Learning rate of LoRA, norms and embeddings.")] = 1e-4,
    lr_dit: Annotated[float, typer.Option(help="Learning rate of the DiT.")] = 1e-5,
    lr_bridge: Annotated[float | None, typer.Option(help="Learning rate of projectors, fusion, resampler.")] = None,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 100,
    schedule: Annotated[str, typer.Option(help="Decay after warm-up: cosine, linear or constant.")] = "cosine",
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.0,
    loss_weights: Annotated[str, typer.Option(help="paper (lm 1, bridge .2, flow .4) or appendix (5/2/1).")] = "paper",
    w_lm: Annotated[float | None, typer.Option(help="Weight of the LM loss (overrides the preset).")] = None,
    w_bridge: Annotated[float | None, typer.Option(help="Weight of the semantic MSE.")] = None,
    w_flow: Annotated[float | None, typer.Option(help="Weight of the flow loss.")] = None,
    lm_scope: Annotated[str | None, typer.Option(help="LM loss on: boundary, plan or full (default: stage).")] = None,
    gen_und_ratio: Annotated[str, typer.Option(help="Generation : QA micro-batches (stages 2, 3).")] = "2:1",
    cond_dropout: Annotated[float, typer.Option(help='Chance an event\'s tokens become T5("") (CFG).')] = 0.1,
    ema_decay: Annotated[float, typer.Option(help="Export an EMA of the weights with this decay (0: off).")] = 0.0,
    logit_mean: Annotated[float, typer.Option(help="Noise levels: σ = 1 − sigmoid(u), u ~ N(mean, std).")] = 0.0,
    logit_std: Annotated[float, typer.Option(help="The std of u (see --logit-mean).")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Longest example in tokens.")] = 4096,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 500,
    keep_checkpoints: Annotated[int, typer.Option(help="Newest checkpoints kept (0: all).")] = 3,
    eval_every: Annotated[int, typer.Option(help="Fixed-noise loss every N steps (0: off).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in --out.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of LoRA init, data order and noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    mixed_precision: Annotated[str, typer.Option(help="auto (bf16 on CUDA), bf16 or no.")] = "auto",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    fsdp: Annotated[
        bool,
        typer.Option(
            "--fsdp",
            help="Shard weights, gradients and optimizer state across the "
            "launched processes (FSDP2) instead of replicating them (DDP).",
        ),
    ] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache (default: the audiostory cache).")] = None,
    t5_tokenizer: Annotated[Path | None, typer.Option(help="flan-t5 tokenizer folder, if not found.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print trainable parameters per part and exit.")] = False,
) -> None:
    """Train one stage on JSONL manifests; the --out folder becomes a model the other commands accept."""
    from ...train.config import TrainConfig
    from ...train.manifest import ManifestSpec
    from ...train.stage_task import train
    from ...train.stages import resolve_loss_weights

    if dry_run:
        _print_counts(stage, model)
        return
    if out is None:
        raise UsageError("give --out DIR: the run folder that becomes the trained model")
    specs = [ManifestSpec(Path(p), None) for p in data or []]
    specs += [ManifestSpec(Path(p), "clips") for p in clips or []]
    specs += [ManifestSpec(Path(p), "qa") for p in qa or []]
    specs += [ManifestSpec(Path(p), "stories") for p in stories or []]
    config = TrainConfig(
        stage=stage,
        data=tuple(specs),
        out=out,
        model=model,
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr_llm=lr_llm,
        lr_bridge=lr_bridge,
        lr_dit=lr_dit,
        weight_decay=weight_decay,
        warmup=warmup,
        schedule=schedule,
        loss_weights=resolve_loss_weights(loss_weights, lm=w_lm, bridge=w_bridge, flow=w_flow),
        lm_scope=lm_scope,
        gen_und_ratio=parse_ratio(gen_und_ratio),
        cond_dropout=cond_dropout,
        ema_decay=ema_decay,
        logit_mean=logit_mean,
        logit_std=logit_std,
        max_tokens=max_tokens,
        save_every=save_every,
        keep_checkpoints=keep_checkpoints,
        eval_every=eval_every,
        seed=seed,
        device=device,
        mixed_precision=mixed_precision,
        gradient_checkpointing=gradient_checkpointing,
        fsdp=fsdp,
        resume=resume,
        cache_dir=cache_dir,
        t5_tokenizer=t5_tokenizer,
    )
    main = os.environ.get("RANK", "0") == "0"  # under torchrun / accelerate launch only rank 0 talks
    if main:
        err_console.print(f"[dim]audiostory train: stage {stage}, model {model} → {out}[/]")
    with TrainProgress(enabled=main) as view:
        result = train(config, progress=view, on_step=view.step, on_start=view.start, log=view.note)
    if main:
        err_console.print(f"done: {result.steps} steps; use it with: audiostory tell --model {out} ...")
        out_console.print(str(out))


def parse_ratio(text: str) -> tuple[int, int]:
    try:
        gen, und = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--gen-und-ratio {text!r} must look like 2:1") from None
    return gen, und


def _print_counts(stage: str, model: str) -> None:
    from ...train.stage_task import dry_run
    from ...train.stages import get_stage

    spec = get_stage(stage)
    with err_console.status(f"building {model} on the meta device…"):
        counts = dry_run(stage, model)
    print_table(out_console, counts_table(counts, f"stage {stage}: {spec.title}"))
