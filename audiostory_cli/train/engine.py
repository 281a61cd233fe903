"""The training loop: ``train(config)`` runs a stage end to end; ``dry_run(stage)`` counts trainable parameters.

``train`` is written for ``accelerate``: run it as is on one device, or with ``accelerate launch`` on several GPUs
or nodes (DDP; each process takes its own slice of every global batch, only the main process writes files).
With ``--fsdp`` the processes shard weights, gradients and optimizer state instead of replicating them
(``sharding``); the data, the losses and the files written are the same.
Precision: fp32 weights with bf16 autocast on CUDA, plain fp32 elsewhere.

Determinism: every random draw of a micro-batch (flow noise, σ, condition dropout, LoRA dropout) comes from a
seed derived from (seed, micro-batch, process rank), and the example order from (seed, batch number). A run
resumed from step k therefore continues exactly as the uninterrupted run (bitwise on a CPU).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError, UsageError
from ..planner.tokens import FULL_VOCAB_SIZE
from ..progress import ProgressFn, no_progress
from .checkpoint import (
    CHECKPOINTS,
    checkpoint_dir,
    export_model,
    latest_checkpoint,
    load_weights,
    read_optimizer_state,
    read_state,
    save_checkpoint,
)
from .config import TrainConfig, differences
from .data import (
    GEN_STREAM,
    UND_STREAM,
    BatchOrder,
    build_examples,
    collate_generation,
    collate_understanding,
    micro_batch_kind,
    to_device,
)
from .features import FeatureCache, Featurizer
from .manifest import TrainingData, load_manifests
from .module import FlowOptions, PartCount, TrainModule, configure_trainable, lr_group, parameter_counts, part_of
from .sequences import SCOPE_CLASSES
from .stages import Stage

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class StepReport:
    """What the loop reports after each optimizer step (on the main process)."""

    step: int  # steps done
    total: int
    losses: dict[str, float]
    lr: dict[str, float]
    tokens_per_s: float
    seconds: float
    evaluation: dict[str, float] | None = None


@dataclass(frozen=True)
class RunInfo:
    """What a run is about to do (reported once, before the first step)."""

    stage: str
    counts: list[PartCount]
    generation_examples: int
    understanding_examples: int
    start_step: int
    steps: int
    device: str
    precision: str
    processes: int


@dataclass
class TrainResult:
    out: Path
    steps: int
    resumed_from: int
    counts: list[PartCount]
    last: dict[str, float] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)


def _no_log(message: str) -> None:
    """The default log: say nothing."""


# -- setup ---------------------------------------------------------------------------------------------------


def make_accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from ..runtime import resolve_device

    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if precision == "bf16" and device.type == "cpu":
        raise UsageError("--mixed-precision bf16 needs a GPU; on a CPU training runs in fp32 (use auto or no)")
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def _fp32_runtime(device: torch.device) -> Any:
    from ..runtime import Runtime

    return Runtime(
        device=device,
        dtype=torch.float32,
        vae_dtype=torch.float32,
        text_encoder_dtype=torch.float32,
        reason="training: fp32 weights (bf16 autocast on CUDA)",
    )


def check_stage_data(stage: Stage, data: TrainingData, model: Any) -> bool:
    """Raise when the data does not fit the stage; returns whether understanding (QA) batches are used."""
    if not data.generation:
        raise UsageError(f"stage {stage.name} needs generation data (clips or stories); the manifests hold none")
    if stage.needs_stories and not data.stories:
        raise UsageError(f"stage {stage.name} trains multi-event stories; add a stories manifest (--stories FILE)")
    if stage.understanding == "no" and data.qa:
        raise UsageError(f"stage {stage.name} does not use QA data (from stage 2 on); drop the QA manifest")
    if stage.understanding == "yes" and not data.qa:
        raise UsageError(f"stage {stage.name} adds audio understanding; add a QA manifest (--qa FILE)")
    use = bool(data.qa) and stage.understanding != "no"
    if use and model.audio_encoder is None:
        raise UsageError(f"model {model.name} has no audio encoder (Whisper), so it cannot learn QA data")
    return use


def _check_out(config: TrainConfig) -> Path | None:
    """The checkpoint to resume from (``--resume``), after making sure a fresh run would not mix runs."""
    out = config.out
    if config.resume:
        return latest_checkpoint(out)
    used = [name for name in (CHECKPOINTS, METRICS_FILE, CONFIG_FILE, "audiostory.json") if (out / name).exists()]
    if used:
        raise TrainingError(
            f"{out} already holds a training run ({', '.join(used)}); pass --resume to continue it or choose "
            "another --out"
        )
    return None


def _mix_seed(*parts: int) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def lr_factor(step: int, *, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine or linear decay to ``min_ratio`` at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if schedule == "cosine":
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - min_ratio) * progress


def build_optimizer(module: TrainModule, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    groups: dict[str, list[torch.nn.Parameter]] = {"llm": [], "bridge": [], "dit": []}
    for name, param in module.named_parameters():
        if param.requires_grad:
            groups[lr_group(part_of(name))].append(param)
    rates = {"llm": config.lr_llm, "bridge": config.bridge_lr, "dit": config.lr_dit}
    param_groups = [{"params": params, "lr": rates[name], "name": name} for name, params in groups.items() if params]
    optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
    factor = partial(
        lr_factor, warmup=config.warmup, total=config.steps, schedule=config.schedule, min_ratio=config.min_lr_ratio
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_train_module(model: Any, config: TrainConfig, *, understanding: bool) -> TrainModule:
    """Wrap the LLM with LoRA (seeded), gather the trainable parts and freeze by stage."""
    from ..generator.text_encoder import unconditional_tokens
    from ..planner.reasoner import apply_lora

    torch.manual_seed(config.seed)
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        llm = apply_lora(model.llm, model.dims.reasoner)
    uncond = unconditional_tokens(model.text_encoder, model.dims.bridge.num_semantic_tokens).float()
    resampler = model.audio_encoder.resampler if understanding else None
    module = TrainModule(
        llm,
        model.bridge,
        model.dit,
        resampler,
        uncond,
        stage=config.stage_spec,
        weights=config.loss_weights,
        flow=FlowOptions(config.cond_dropout, config.logit_mean, config.logit_std),
    )
    configure_trainable(module, understanding=understanding)
    if config.gradient_checkpointing:
        llm.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.dit.transformer.enable_gradient_checkpointing()
    return module.train()


# -- the run -------------------------------------------------------------------------------------------------


class _Run:
    """One training run's state; ``train()`` drives it."""

    def __init__(self, config: TrainConfig, progress: ProgressFn, log: Log) -> None:
        self.config = config
        self.progress = progress
        self.log = log
        self.accelerator = make_accelerator(config)
        self.main = self.accelerator.is_main_process
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index

    def check_world(self) -> None:
        if self.config.fsdp:
            from .sharding import check_fsdp_world

            check_fsdp_world(self.world)

    # 1. model, tokenizers, data and features
    def prepare_data(self) -> None:
        from ..model import load_model
        from ..planner.tokens import resolve_special_token_ids
        from ..resources import cache_dir
        from .t5_tokenizer import resolve_t5_tokenizer

        config = self.config
        self.resume_from = _check_out(config)
        self.model = load_model(config.model, _fp32_runtime(self.accelerator.device))
        self.t5_tokenizer, self.t5_source = resolve_t5_tokenizer(
            config.model, self.model.dims.text_encoder.vocab_size, config.t5_tokenizer
        )
        data = load_manifests(config.data, max_event_seconds=self.model.dims.window_seconds)
        for warning in data.warnings:
            self.log(str(warning))
        self.understanding = check_stage_data(config.stage_spec, data, self.model)
        self.special = resolve_special_token_ids(self.model.tokenizer)
        self.cache = FeatureCache(config.cache_dir or cache_dir() / "train-features")
        featurizer = Featurizer(self.model, self.t5_tokenizer, self.cache, progress=self.progress)
        with self.accelerator.main_process_first():
            self.gen, self.und = build_examples(
                data,
                featurizer,
                self.model.tokenizer,
                self.special,
                use_understanding=self.understanding,
                max_tokens=config.max_tokens,
            )
        self.data_hash = featurizer.data_hash(data.manifests)
        scope = config.effective_lm_scope
        self.lm_classes = SCOPE_CLASSES[scope] if scope else frozenset()

    # 2. trainable module, optimizer, resume, accelerate
    def prepare_model(self) -> None:
        config = self.config
        self.module = build_train_module(self.model, config, understanding=self.understanding)
        frozen: dict[str, torch.nn.Module] = {"text_encoder": self.model.text_encoder}
        if self.model.vae is not None:  # a spectral codec has no weights
            frozen["vae"] = self.model.vae
        if self.model.audio_encoder is not None:
            frozen["audio_encoder.whisper"] = self.model.audio_encoder.whisper
        self.counts = parameter_counts(self.module, frozen)
        if self.accelerator.device.type != "cpu":  # their features are cached: free accelerator memory
            for part in frozen.values():
                part.to("cpu")
        self.start = 0
        if self.resume_from is not None:
            self._check_resumable(read_state(self.resume_from))
            self.start = int(load_weights(self.resume_from, self.module)["step"])
            self.log(f"resumed from {self.resume_from} (step {self.start})")
        if self.start >= config.steps:
            raise TrainingError(f"the checkpoint is at step {self.start}; pass --steps larger than that to go on")
        if config.fsdp:
            from .sharding import shard_module

            shard_module(self.module, self.accelerator.device, self.world)
        self.optimizer, self.scheduler = build_optimizer(self.module, config)
        if self.resume_from is not None:
            self._load_optimizer(*read_optimizer_state(self.resume_from))
        if config.fsdp:  # sharded in place: accelerate's DDP wrapper must not wrap it again
            self.wrapped, self.optimizer_wrapped = self.module, self.optimizer
        else:
            self.wrapped, self.optimizer_wrapped = self.accelerator.prepare(self.module, self.optimizer)
        self.metrics = _MetricsLog(config.out / METRICS_FILE, enabled=self.main)
        if self.main:
            self.metrics.truncate_after(self.start)
            self._write_config()

    def _load_optimizer(self, optimizer_state: dict[str, Any], scheduler_state: dict[str, Any]) -> None:
        if self.config.fsdp:
            from .sharding import load_optimizer

            load_optimizer(self.module, self.optimizer, optimizer_state)
        else:
            self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(scheduler_state)

    def _base_info(self) -> dict[str, Any]:
        return {"ref": self.config.model, "name": self.model.name, "revision": self.model.revision}

    def _state(self, step: int) -> dict[str, Any]:
        return {
            "stage": self.config.stage,
            "step": step,
            "base_model": self._base_info(),
            "config": self.config.to_dict(),
            "data_hash": self.data_hash,
            "world_size": self.world,
            "t5_tokenizer": self.t5_source,
        }

    def _check_resumable(self, state: dict[str, Any]) -> None:
        changed = differences(state.get("config", {}), self.config.to_dict())
        if state.get("data_hash") != self.data_hash:
            changed.append("the training data (manifests or audio files)")
        if state.get("world_size", 1) != self.world:
            changed.append(f"the number of processes ({state.get('world_size')} -> {self.world})")
        if changed:
            raise TrainingError(
                f"cannot resume {self.resume_from}: the run changed ({'; '.join(changed)}); resume with the same "
                "options or start a new --out"
            )

    def _write_config(self) -> None:
        from ..fsutil import write_json_atomic

        payload = {
            **self._state(self.start),
            "trainable": [vars(c) for c in self.counts],
            "examples": {"generation": len(self.gen), "understanding": len(self.und)},
        }
        payload.pop("step")
        write_json_atomic(self.config.out / CONFIG_FILE, payload)

    # 3. batches
    def batch(self, micro: int) -> dict[str, Any]:
        config = self.config
        kind, number = micro_batch_kind(micro, config.gen_und_ratio, self.understanding)
        pad = self.special.endoftext
        if kind == "und":
            rows = self.und_order.indices(number, config.batch_size, self.world, self.rank)
            batch = collate_understanding([self.und[i] for i in rows], self.cache, pad)
        else:
            rows = self.gen_order.indices(number, config.batch_size, self.world, self.rank)
            batch = collate_generation([self.gen[i] for i in rows], self.cache, pad, self.lm_classes)
        return to_device(batch, self.accelerator.device)

    # 4. the loop
    def run(self, on_step: Callable[[StepReport], None] | None) -> TrainResult:
        config = self.config
        self.gen_order = BatchOrder(len(self.gen), config.seed, GEN_STREAM)
        self.und_order = BatchOrder(max(1, len(self.und)), config.seed, UND_STREAM)
        result = TrainResult(out=config.out, steps=config.steps, resumed_from=self.start, counts=self.counts)
        if config.eval_every and self.start == 0:
            result.evaluations.append(self._evaluate(0))
        for step in range(self.start, config.steps):
            report = self._step(step)
            done = step + 1
            if config.eval_every and (done % config.eval_every == 0 or done == config.steps):
                evaluation = self._evaluate(done)
                result.evaluations.append(evaluation)
                report = replace(report, evaluation=evaluation["losses"])
            if done % config.save_every == 0 or done == config.steps:
                self._save(done)
            result.last = report.losses
            self.progress("train", done, config.steps)
            if self.main and on_step is not None:
                on_step(report)
        self._export(result)
        self.accelerator.wait_for_everyone()  # no process exits while the main one still writes the model folder
        return result

    def close(self) -> None:
        """Leave the process group (a no-op in one process). A process that exits with its gloo or NCCL group
        still alive can abort in the group's destructor ("terminate called without an active exception")."""
        self.accelerator.end_training()

    def _step(self, step: int) -> StepReport:
        config, accelerator = self.config, self.accelerator
        started = time.perf_counter()
        sums: dict[str, float] = {}
        tokens = 0
        for a in range(config.grad_accum):
            micro = step * config.grad_accum + a
            batch = self.batch(micro)
            seed = _mix_seed(config.seed, micro, self.rank)
            torch.manual_seed(seed)  # LoRA dropout and anything else drawing from the global generator
            generator = torch.Generator(device=accelerator.device).manual_seed(seed)
            sync = a == config.grad_accum - 1
            with self._gradient_sync(sync):
                with accelerator.autocast():
                    losses = self.wrapped(batch, generator)
                accelerator.backward(losses["loss"] / config.grad_accum)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / config.grad_accum
            tokens += batch["tokens"]
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_([p for p in self.module.parameters() if p.requires_grad], config.max_grad_norm)
        lrs = {group.get("name", str(i)): float(group["lr"]) for i, group in enumerate(self.optimizer.param_groups)}
        self.optimizer_wrapped.step()
        self.scheduler.step()
        self.optimizer_wrapped.zero_grad(set_to_none=True)
        losses_mean = self._reduce(sums)
        seconds = time.perf_counter() - started
        report = StepReport(
            step=step + 1,
            total=config.steps,
            losses=losses_mean,
            lr=lrs,
            tokens_per_s=tokens * self.world / max(seconds, 1e-9),
            seconds=seconds,
        )
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            self.metrics.write(
                {
                    "step": step + 1,
                    **{f"loss/{k}": v for k, v in losses_mean.items()},
                    **{f"lr/{k}": v for k, v in lrs.items()},
                    "tokens_per_s": report.tokens_per_s,
                    "seconds": seconds,
                }
            )
        return report

    def _gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Accumulation: all-reduce (DDP) or reduce-scatter (FSDP) gradients only on a step's last micro-batch."""
        if self.config.fsdp:
            from .sharding import set_gradient_sync

            set_gradient_sync(self.module, sync)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if sync else self.accelerator.no_sync(self.wrapped)

    def _reduce(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], device=self.accelerator.device)
        reduced = self.accelerator.reduce(tensor, reduction="mean")
        return {k: float(v) for k, v in zip(keys, reduced.tolist(), strict=True)}

    def _evaluate(self, step: int) -> dict[str, Any]:
        """Losses on the first ``eval_examples`` generation examples with fixed noise and no dropout."""
        config = self.config
        examples = self.gen[: config.eval_examples]
        generator = torch.Generator(device=self.accelerator.device).manual_seed(_mix_seed(config.seed, -1))
        sums: dict[str, float] = {}
        self.wrapped.eval()
        try:
            with torch.no_grad():
                for first in range(0, len(examples), config.batch_size):
                    chunk = examples[first : first + config.batch_size]
                    batch = to_device(
                        collate_generation(chunk, self.cache, self.special.endoftext, self.lm_classes),
                        self.accelerator.device,
                    )
                    with self.accelerator.autocast():
                        losses = self.wrapped(batch, generator)
                    for key, value in losses.items():
                        sums[key] = sums.get(key, 0.0) + float(value) * len(chunk) / len(examples)
        finally:
            self.wrapped.train()
        self.metrics.write({"step": step, **{f"eval/{k}": v for k, v in sums.items()}})
        return {"step": step, "losses": sums}

    def _save(self, step: int) -> None:
        self.accelerator.wait_for_everyone()
        gathered, optimizer_state = None, None
        if self.config.fsdp:  # collective: every process takes part, rank 0 receives the whole tensors
            from .sharding import gather_optimizer, gather_trainable

            gathered, optimizer_state = gather_trainable(self.module), gather_optimizer(self.module, self.optimizer)
        if self.main:
            module = self.module if self.config.fsdp else self.accelerator.unwrap_model(self.wrapped)
            save_checkpoint(
                checkpoint_dir(self.config.out, step),
                module,
                optimizer_state if optimizer_state is not None else self.optimizer.state_dict(),
                self.scheduler.state_dict(),
                self._state(step),
                keep=self.config.keep_checkpoints,
                gathered=gathered,
            )
        self.accelerator.wait_for_everyone()

    # 5. the model folder
    def _export(self, result: TrainResult) -> None:
        from ..config import CANVAS_SIZED
        from ..model import AudioStoryModel

        self.accelerator.wait_for_everyone()
        module, base = self._final_parts()
        if not self.main:
            return
        module.eval()
        merged = module.llm.merge_and_unload()
        info = {**self._state(self.config.steps), "trainable": [vars(c) for c in self.counts]}
        history = [*base.extra.get("training_history", []), info]
        extra = {k: v for k, v in base.extra.items() if k not in ("training", "training_history")}
        # the flow loss trains on latents sized to each clip (masked), so a DiT trained here expects that canvas
        extra["canvas"] = CANVAS_SIZED if self.config.stage_spec.train_dit else base.canvas
        final = AudioStoryModel(
            name=self.config.out.name,
            dims=base.dims,
            tokenizer=base.tokenizer,
            llm=merged,
            bridge=module.bridge,
            dit=module.dit,
            text_encoder=base.text_encoder,
            vae=base.vae,
            audio_encoder=base.audio_encoder,
            revision=None,
            resampler_trained=base.resampler_trained or self.understanding,
            extra=extra,
        )
        dtype = torch.bfloat16 if self.accelerator.mixed_precision == "bf16" else None
        revision = f"@{base.revision}" if base.revision else ""
        export_model(
            self.config.out,
            final,
            self.t5_tokenizer,
            base_model=f"{self.config.model}{revision}",
            info_extra={"training": info, "training_history": history},
            dtype=dtype,
        )
        self.log(f"model folder written: {self.config.out} (use it with --model {self.config.out})")

    def _final_parts(self) -> tuple[Any, Any]:
        """(trained module, base model) whole on the main process. Under --fsdp a collective: the gathered weights
        go into a fresh unsharded copy of the base model on the CPU, loaded strictly."""
        if not self.config.fsdp:
            return self.accelerator.unwrap_model(self.wrapped), self.model
        from ..model import load_model
        from ..models.checkpoint import load_state_strict
        from .sharding import gather_model

        whole = gather_model(self.module)
        if not self.main:
            return None, None
        base = load_model(self.config.model, _fp32_runtime(torch.device("cpu")))
        module = build_train_module(base, self.config, understanding=self.understanding)
        load_state_strict(module, whole)
        return module, base


class _MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step or evaluation (main process only)."""

    def __init__(self, path: Path, *, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop what a run logged after ``step`` (the checkpoint it resumes from); everything when starting at 0."""
        if not self.path.is_file():
            return
        if step == 0:
            self.path.unlink()
            return
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [line for line in lines if int(json.loads(line).get("step", 0)) <= step]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def train(
    config: TrainConfig,
    *,
    progress: ProgressFn = no_progress,
    on_step: Callable[[StepReport], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    log: Log = _no_log,
) -> TrainResult:
    """Train ``config.stage`` on ``config.data`` starting from ``config.model``; write checkpoints and the model.

    Returns the run's summary. ``on_start`` and ``on_step`` are called on the main process, before the first
    step and after every optimizer step; an exception they raise stops the run (the last checkpoint stays
    resumable). ``progress`` reports feature caching and steps; ``log`` gets one-line notes.
    """
    from ..model import quiet_libraries

    with quiet_libraries():
        run = _Run(config, progress, log)
    try:  # from here on the process group exists, so every way out leaves it
        run.check_world()
        with quiet_libraries():
            run.prepare_data()
            run.prepare_model()
        if run.main and on_start is not None:
            on_start(
                RunInfo(
                    stage=config.stage,
                    counts=run.counts,
                    generation_examples=len(run.gen),
                    understanding_examples=len(run.und),
                    start_step=run.start,
                    steps=config.steps,
                    device=str(run.accelerator.device),
                    precision="bf16 autocast" if run.accelerator.mixed_precision == "bf16" else "fp32",
                    processes=run.world,
                )
            )
        return run.run(on_step)
    finally:
        run.close()


# -- dry run -------------------------------------------------------------------------------------------------


def dry_run(stage: str, model_ref: str = "audiostory-3b", *, understanding: bool | None = None) -> list[PartCount]:
    """Trainable and total parameters per part for ``stage``, built on the meta device (no weights, no data).

    ``understanding``: whether the audio resampler trains (default: stages 2 and 3).
    """
    from ..model import build_model, quiet_libraries
    from ..planner.reasoner import apply_lora
    from .stages import get_stage

    spec = get_stage(stage)
    dims, vocab = _dims_of(model_ref)
    use_understanding = spec.understanding != "no" if understanding is None else understanding
    config = TrainConfig(stage=stage, data=(), out=Path("."), model=model_ref)
    with quiet_libraries(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = build_model(dims, vocab, device="meta")
        with torch.device("meta"):
            llm = apply_lora(model.llm, dims.reasoner)
            uncond = torch.zeros(dims.bridge.num_semantic_tokens, dims.bridge.out_dim)
    resampler = model.audio_encoder.resampler if (use_understanding and model.audio_encoder is not None) else None
    module = TrainModule(
        llm, model.bridge, model.dit, resampler, uncond, stage=spec, weights=config.loss_weights, flow=FlowOptions()
    )
    configure_trainable(module, understanding=resampler is not None)
    frozen: dict[str, torch.nn.Module] = {"text_encoder": model.text_encoder}
    if model.vae is not None:
        frozen["vae"] = model.vae
    if model.audio_encoder is not None:
        frozen["audio_encoder.whisper"] = model.audio_encoder.whisper
        if resampler is None:
            frozen["audio_resampler"] = model.audio_encoder.resampler
    return parameter_counts(module, frozen)


def _dims_of(model_ref: str) -> tuple[Any, int]:
    """Model dims and vocabulary size of a model reference, read from its sidecar (nothing is loaded)."""
    from ..config import full_dims
    from ..models.checkpoint import read_sidecar
    from ..models.download import converted_path, model_path
    from ..models.registry import resolve_model_ref

    resolved = resolve_model_ref(model_ref)
    if isinstance(resolved, Path):
        folder = resolved
    elif resolved.kind == "builtin":
        from ..config import tiny_dims
        from ..planner.tokens import build_tiny_tokenizer

        return tiny_dims(), len(build_tiny_tokenizer())
    elif resolved.kind == "bundled":
        folder = model_path(resolved)
    else:
        folder = converted_path(resolved)
        if not (folder / "audiostory.json").is_file():
            return full_dims(), FULL_VOCAB_SIZE
    meta = read_sidecar(folder)
    return meta.dims, int(meta.vocab_size or meta.dims.reasoner.vocab_size)
