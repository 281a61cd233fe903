"""`audiostory train --stage 1-warm|1|2|3` and `audiostory train check-data FILE`: fine-tune, validate data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from .common import ErrorHandlingGroup, absolute, err_console, out_console
from .progress_view import RichProgress, training_columns
from .tables import print_table

if TYPE_CHECKING:
    from ..train.config import TrainConfig
    from ..train.engine import RunInfo, StepReport

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
    "`accelerate launch --multi_gpu --num_processes N -m audiostory_cli train ...` (or torchrun; add --fsdp to "
    "shard the model instead of replicating it). Check data "
    "first: `audiostory train check-data FILE`."
)

Manifests = list[Path] | None

app = typer.Typer(
    cls=ErrorHandlingGroup,
    invoke_without_command=True,
    help="Fine-tune a model in the paper's stages (LoRA planner, bridge, DiT); validate training manifests.",
    epilog=SCHEMA_HELP,
)


@app.callback()
def train(
    ctx: typer.Context,
    stage: Annotated[str | None, typer.Option(help="1-warm, 1, 2 or 3 (see below).")] = None,
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
    if ctx.invoked_subcommand is not None:
        return
    if stage is None:
        raise UsageError("give --stage 1-warm|1|2|3 (or `audiostory train check-data FILE`); see --help")
    if dry_run:
        _print_counts(stage, model)
        return
    if out is None:
        raise UsageError("give --out DIR: the run folder that becomes the trained model")
    options = dict(locals())
    config = _config(options)
    main = os.environ.get("RANK", "0") == "0"  # under torchrun / accelerate launch only rank 0 talks
    if main:
        err_console.print(f"[dim]audiostory train: stage {stage}, model {model} → {out}[/]")
    from ..train.engine import train as run_training

    with _TrainProgress(enabled=main) as view:
        result = run_training(config, progress=view, on_step=view.step, on_start=view.start, log=view.note)
    if main:
        err_console.print(f"done: {result.steps} steps; use it with: audiostory tell --model {out} ...")
        out_console.print(str(out))


def _config(options: dict[str, Any]) -> TrainConfig:
    from ..train.config import TrainConfig
    from ..train.manifest import ManifestSpec
    from ..train.stages import resolve_loss_weights

    specs = [ManifestSpec(Path(p), None) for p in options["data"] or []]
    for kind in ("clips", "qa", "stories"):
        specs += [ManifestSpec(Path(p), kind) for p in options[kind] or []]
    weights = resolve_loss_weights(
        options["loss_weights"], lm=options["w_lm"], bridge=options["w_bridge"], flow=options["w_flow"]
    )
    skip = {
        "ctx",
        "data",
        "clips",
        "qa",
        "stories",
        "loss_weights",
        "w_lm",
        "w_bridge",
        "w_flow",
        "dry_run",
        "gen_und_ratio",
    }
    fields = {k: v for k, v in options.items() if k not in skip}
    return TrainConfig(
        data=tuple(specs), loss_weights=weights, gen_und_ratio=_ratio(options["gen_und_ratio"]), **fields
    )


def _ratio(text: str) -> tuple[int, int]:
    try:
        gen, und = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--gen-und-ratio {text!r} must look like 2:1") from None
    return gen, und


def _print_counts(stage: str, model: str) -> None:
    from ..train.engine import dry_run
    from ..train.stages import get_stage

    spec = get_stage(stage)
    with err_console.status(f"building {model} on the meta device…"):
        counts = dry_run(stage, model)
    print_table(out_console, _counts_table(counts, f"stage {stage}: {spec.title}"))


def _counts_table(counts: list[Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("part")
    table.add_column("trainable", justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    for count in counts:
        table.add_row(count.part, f"{count.trainable:,}", f"{count.total:,}")
    table.add_row("all", f"{sum(c.trainable for c in counts):,}", f"{sum(c.total for c in counts):,}", style="bold")
    return table


class _TrainProgress(RichProgress):
    """Bars on stderr: feature caching, then the steps with loss, learning rate and tokens/s."""

    def __init__(self, *, enabled: bool = True) -> None:
        super().__init__(enabled=enabled, columns=training_columns())
        self._enabled = enabled

    def start(self, info: RunInfo) -> None:
        if self._enabled:
            self.console.print(_counts_table(info.counts, f"stage {info.stage}: parameters"))
        self.note(
            f"{info.generation_examples} generation + {info.understanding_examples} QA examples; "
            f"{info.device} {info.precision}, {info.processes} process(es); from step {info.start_step}"
        )
        self("train", info.start_step, info.steps)

    def step(self, report: StepReport) -> None:
        losses = " ".join(f"{k} {v:.3g}" for k, v in report.losses.items())
        lr = report.lr.get("llm", next(iter(report.lr.values()), 0.0))
        self("train", report.step, report.total)
        self.set_info("train", f"{losses} · lr {lr:.1e} · {report.tokens_per_s:,.0f} tok/s")

    def note(self, message: str) -> None:
        if self._enabled:
            self.console.print(message, markup=False, highlight=False)


@app.command("check-data")
def check_data(
    manifest: Annotated[Path, typer.Argument(help="A JSONL manifest.")],
    kind: Annotated[str | None, typer.Option(help="clips, qa, stories or edits (default: detected per line).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a manifest line by line (JSON, fields, durations, audio files); exit 1 if any error."""
    from ..train.manifest import KINDS, check_manifest

    report = check_manifest(manifest, kind=kind)
    counts = {k: report.count(k) for k in KINDS}
    if as_json:
        out_console.print_json(
            json.dumps(
                {
                    "manifest": absolute(manifest),
                    "lines": report.lines,
                    "valid": counts,
                    "issues": [
                        {"line": i.source.line, "severity": i.severity, "message": i.message} for i in report.issues
                    ],
                }
            )
        )
    else:
        for issue in report.issues:
            out_console.print(str(issue), markup=False, highlight=False)
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no valid examples"
        err_console.print(
            f"{report.lines} line(s): {summary}; {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )
    if report.errors:
        raise typer.Exit(1)


@app.command("vae")
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
    seed: Annotated[int, typer.Option(help="Seed of the crops and the sampling noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
) -> None:
    """Pretrain a model folder's VAE on clips (waveform L1, STFT and log-mel losses, KL, optionally a
    discriminator); other parts are kept."""
    from ..train.vae import VAETrainConfig, parse_level_db, pretrain_vae

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
        seed=seed,
        device=device,
    )
    config.check()
    with RichProgress() as progress:
        result = pretrain_vae(config, progress=progress, log=_note(progress))
    recognised = (
        ""
        if result.recognised is None
        else f"; reconstructions recognised {result.recognised[1]:.0%} (originals {result.recognised[0]:.0%})"
    )
    err_console.print(
        f"VAE loss {result.first_loss:.4f} -> {result.final_loss:.4f} "
        f"({result.seconds_per_step:.2f} s/step){recognised}"
    )
    out_console.print(str(result.out))


@app.command("planner")
def planner(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model folder whose LLM (planner) is trained.")],
    stories: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="Stories JSONL (instruction, reasoning, events with "
            "caption and duration; or edit turns: story, instruction, edited); "
            "audio is not needed.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New model folder: the model with the trained planner.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(help="Stories per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate (linear warm-up, cosine decay).")] = 1e-3,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 100,
    save_every: Annotated[int, typer.Option(help="Write a resumable checkpoint every N steps.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the story order.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
) -> None:
    """Pretrain a from-scratch planner: every LLM weight learns the plans of text-only stories (no LoRA, no audio)."""
    from ..train.planner_text import PlannerTrainConfig, pretrain_planner

    config = PlannerTrainConfig(
        model=model,
        stories=stories,
        out=out,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=warmup,
        save_every=save_every,
        seed=seed,
        device=device,
        resume=resume,
    )
    config.check()
    with RichProgress() as progress:
        result = pretrain_planner(config, progress=progress, log=_note(progress))
    first = f"{result.first_loss:.4f} -> " if result.first_loss is not None else ""
    err_console.print(f"planner loss {first}{result.final_loss:.4f} ({result.seconds_per_step:.2f} s/step)")
    out_console.print(str(result.out))


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the finished demo model.")],
    work: Annotated[
        Path | None, typer.Option(help="Data and per-step runs (default: OUT-work beside OUT); kept afterwards.")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The whole recipe at smoke-test size (learns nothing).")] = (
        False
    ),
    device: Annotated[str, typer.Option(help="auto, cuda, mps or cpu.")] = "auto",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Go on with an interrupted build in --work: finished steps are kept, a stage continues "
            "from its last checkpoint.",
        ),
    ] = False,
) -> None:
    """Reproduce the `demo` model from scratch: foley data, tokenizer, planner pretraining, stages 1-warm..3."""
    from ..demo import DemoRecipe, build_demo, folder_size, quick_recipe

    recipe = quick_recipe() if quick else DemoRecipe()
    work = work or out.parent / f"{out.name}-work"
    with RichProgress() as progress:
        result = build_demo(out, work, recipe, device=device, resume=resume, progress=progress, log=_note(progress))
    for step, seconds in result.timings.items():
        err_console.print(f"{step}: {seconds:.1f} s")
    err_console.print(
        f"demo model: {folder_size(result.out) / 1e6:.1f} MB; try it: audiostory tell "
        f'"rain, then thunder" --duration 10 --model {result.out}'
    )
    out_console.print(str(result.out))


def _note(progress: RichProgress) -> Any:
    """One plain line above the bars (no Rich markup: paths may hold brackets)."""
    return lambda message: progress.console.print(message, markup=False, highlight=False)
