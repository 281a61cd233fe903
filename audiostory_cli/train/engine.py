"""The one training loop. Every kind of training (the paper's stages, planner text pretraining, VAE pretraining)
is a ``TrainingTask`` that says what is trained, what its batches are and how its losses are computed;
``run_task`` does the rest the same way for all of them: accelerate (one device, DDP, or FSDP where the task
allows it), the AdamW optimizer and its learning-rate schedule, gradient accumulation and clipping, checkpoints
in one format (``checkpoint``) with ``--resume``, ``metrics.jsonl``, fixed-noise evaluation, progress, and the
model folder at the end. (The split is audiocraft's ``StandardSolver`` and its subclasses, without the config
system.)

Determinism: every random draw of a micro-batch comes from a seed derived from (seed, micro-batch, process rank),
and a task's batches are a pure function of (seed, micro-batch number). A run resumed from step k therefore
continues exactly as the uninterrupted run (bitwise on a CPU), whatever the task.
Precision: fp32 weights with bf16 autocast on CUDA, plain fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch

from ..errors import TrainingError, UsageError
from ..progress import ProgressFn, no_progress
from .checkpoint import (
    CHECKPOINTS,
    checkpoint_dir,
    latest_checkpoint,
    load_weights,
    read_optimizer_state,
    read_state,
    read_task_state,
    save_checkpoint,
)
from .config import LoopConfig
from .module import PartCount

if TYPE_CHECKING:
    from .module import TrainModule

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

    title: str  # e.g. "stage 1", "planner", "vae"
    counts: list[PartCount]
    examples: dict[str, int]  # examples per kind of batch
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
    first_loss: float | None = None  # None when the run resumed past its first step
    final_loss: float | None = None  # mean of "loss" over the last 10 % of the steps this run made
    seconds_per_step: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)  # what the task's export reports (e.g. a check)


@dataclass(frozen=True)
class RunContext:
    """What a task may use while it prepares: the device, the process layout and the run's reporting."""

    device: torch.device
    world: int
    rank: int
    main: bool
    progress: ProgressFn
    log: Log
    main_process_first: Callable[[], contextlib.AbstractContextManager[Any]]


class TrainingTask(Protocol):
    """One kind of training. ``module()`` is what is trained: its ``forward(batch, generator)`` returns a dict of
    scalar losses with the total under ``"loss"``; only its parameters with ``requires_grad`` are trained and
    checkpointed (a peft LoRA LLM at ``module.llm`` is stored as a peft adapter)."""

    title: str
    supports_fsdp: bool

    def prepare(self, context: RunContext) -> None:
        """Load the model and the data on ``context.device``; build what ``module()`` returns."""

    def module(self) -> torch.nn.Module: ...

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups, each with ``name``, ``params`` and ``lr``."""
        ...

    def counts(self) -> list[PartCount]: ...

    def examples(self) -> dict[str, int]: ...

    def resume_options(self) -> dict[str, Any]:
        """JSON-ready options a resumed run must share with the run it continues (the loop adds its own)."""
        ...

    def data_hash(self) -> str: ...

    def describe(self) -> dict[str, Any]:
        """What this run is (e.g. stage, base model, options), JSON-ready: in every checkpoint's ``state.json``
        and in the model folder's training record."""
        ...

    def batch(self, micro: int, world: int, rank: int, device: torch.device) -> dict[str, Any]:
        """Micro-batch number ``micro`` of process ``rank``: a pure function of the seed and ``micro``. May hold
        ``tokens`` (int) for the tokens/s figure."""
        ...

    def evaluate(self, module: torch.nn.Module, generator: torch.Generator, device: torch.device) -> dict[str, float]:
        """Losses with fixed noise and no dropout (``--eval-every``); ``{}`` when the task has no evaluation."""
        ...

    def extra_state(self) -> dict[str, Any] | None:
        """State beyond the trained module and its optimizer (e.g. a discriminator), saved in each checkpoint."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    def after_step(self) -> None:
        """Called after every optimizer step (e.g. to update a moving average of the weights)."""
        ...

    def unsharded(self, whole: dict[str, torch.Tensor]) -> torch.nn.Module:
        """(``supports_fsdp`` tasks) a fresh whole module on the CPU holding the gathered weights."""
        ...

    def export(self, module: torch.nn.Module, info: dict[str, Any], mixed_precision: str) -> dict[str, Any]:
        """Write the model folder to the run's ``out``; returns a summary for ``TrainResult.summary``."""
        ...


# -- setup ---------------------------------------------------------------------------------------------------


def make_accelerator(device_name: str, mixed_precision: str) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    from ..runtime import resolve_device

    device = resolve_device(device_name)
    cuda = device.type == "cuda"
    precision = mixed_precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if precision == "bf16" and device.type == "cpu":
        raise UsageError("--mixed-precision bf16 needs a GPU; on a CPU training runs in fp32 (use auto or no)")
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def fp32_runtime(device: torch.device) -> Any:
    """The runtime every task loads its model with: fp32 weights (autocast adds bf16 on CUDA)."""
    from ..runtime import Runtime

    return Runtime(
        device=device,
        dtype=torch.float32,
        vae_dtype=torch.float32,
        text_encoder_dtype=torch.float32,
        reason="training: fp32 weights (bf16 autocast on CUDA)",
    )


def mix_seed(*parts: int) -> int:
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


def build_optimizer(groups: list[dict[str, Any]], loop: LoopConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the task's groups and the warm-up + decay schedule of ``loop``."""
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=loop.weight_decay, betas=loop.betas)
    factor = partial(
        lr_factor, warmup=loop.warmup, total=loop.steps, schedule=loop.schedule, min_ratio=loop.min_lr_ratio
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_out(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (``--resume``), after making sure a fresh run would not mix runs."""
    if resume:
        found = latest_checkpoint(out)
        if found is None and (out / "audiostory.json").is_file():
            raise TrainingError(f"{out} holds a finished run (no checkpoint left to resume); use it as a --model")
        return found
    used = [name for name in (CHECKPOINTS, METRICS_FILE, CONFIG_FILE, "audiostory.json") if (out / name).exists()]
    if used:
        raise TrainingError(
            f"{out} already holds a training run ({', '.join(used)}); pass --resume to continue it or choose "
            "another --out"
        )
    return None


# Loop options that may differ between a checkpoint and the run resuming it.
LOOP_RESUMABLE = frozenset(
    {"out", "steps", "save_every", "keep_checkpoints", "log_every", "eval_every", "resume", "device"}
)


def resume_options(task: TrainingTask, loop: LoopConfig) -> dict[str, Any]:
    """Everything a resumed run must share with the run it continues, JSON-ready."""
    fixed = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in vars(loop).items()
        if k not in LOOP_RESUMABLE and not isinstance(v, Path)
    }
    return {"loop": fixed, "task": task.resume_options()}


def changed_options(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    changed = []
    for part in ("loop", "task"):
        old, new = saved.get(part, {}), current.get(part, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changed.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return changed


# -- the run -------------------------------------------------------------------------------------------------


class _Run:
    """One run of one task; ``run_task()`` drives it."""

    def __init__(self, task: TrainingTask, loop: LoopConfig, progress: ProgressFn, log: Log) -> None:
        self.task, self.loop = task, loop
        self.progress, self.log = progress, log
        self.accelerator = make_accelerator(loop.device, loop.mixed_precision)
        self.main = self.accelerator.is_main_process
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.losses: list[float] = []

    def check_world(self) -> None:
        if self.loop.fsdp:
            if not self.task.supports_fsdp:
                raise UsageError(f"--fsdp is for the paper's stages; {self.task.title} trains unsharded")
            from .sharding import check_fsdp_world

            check_fsdp_world(self.world)

    def prepare(self) -> None:
        loop = self.loop
        self.resume_from = check_out(loop.out, loop.resume)
        context = RunContext(
            device=self.accelerator.device,
            world=self.world,
            rank=self.rank,
            main=self.main,
            progress=self.progress,
            log=self.log,
            main_process_first=self.accelerator.main_process_first,
        )
        self.task.prepare(context)
        self.module = self.task.module()
        self.counts = self.task.counts()
        self.start = 0
        if self.resume_from is not None:
            self._check_resumable(read_state(self.resume_from))
            self.start = int(load_weights(self.resume_from, self.module)["step"])
            extra = read_task_state(self.resume_from)
            if extra is not None:
                self.task.load_extra_state(extra)
            self.log(f"resumed from {self.resume_from} (step {self.start})")
        if self.start >= loop.steps:
            raise TrainingError(
                f"{loop.out} holds a finished run (its checkpoint is at step {self.start}); use it as a --model, "
                f"or pass --steps larger than {self.start} to go on"
            )
        if loop.fsdp:
            from .sharding import shard_module

            shard_module(cast("TrainModule", self.module), self.accelerator.device, self.world)  # stages only
        self.optimizer, self.scheduler = build_optimizer(self.task.param_groups(), loop)
        if self.resume_from is not None:
            self._load_optimizer(*read_optimizer_state(self.resume_from))
        if loop.fsdp:  # sharded in place: accelerate's DDP wrapper must not wrap it again
            self.wrapped, self.optimizer_wrapped = self.module, self.optimizer
        else:
            self.wrapped, self.optimizer_wrapped = self.accelerator.prepare(self.module, self.optimizer)
        self.metrics = _MetricsLog(loop.out / METRICS_FILE, enabled=self.main)
        if self.main:
            self.metrics.truncate_after(self.start)
            self._write_config()

    def _load_optimizer(self, optimizer_state: dict[str, Any], scheduler_state: dict[str, Any]) -> None:
        if self.loop.fsdp:
            from .sharding import load_optimizer

            load_optimizer(self.module, self.optimizer, optimizer_state)
        else:
            self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(scheduler_state)

    def state(self, step: int) -> dict[str, Any]:
        return {
            **self.task.describe(),
            "task": self.task.title,
            "step": step,
            "resume_options": resume_options(self.task, self.loop),
            "data_hash": self.task.data_hash(),
            "world_size": self.world,
        }

    def _check_resumable(self, state: dict[str, Any]) -> None:
        changed = changed_options(state.get("resume_options", {}), resume_options(self.task, self.loop))
        if state.get("task") != self.task.title:
            changed.insert(0, f"the kind of training ({state.get('task')} -> {self.task.title})")
        if state.get("data_hash") != self.task.data_hash():
            changed.append("the training data")
        if state.get("world_size", 1) != self.world:
            changed.append(f"the number of processes ({state.get('world_size')} -> {self.world})")
        if changed:
            raise TrainingError(
                f"cannot resume {self.resume_from}: the run changed ({'; '.join(changed)}); resume with the same "
                "options or start a new --out"
            )

    def _write_config(self) -> None:
        from ..fsutil import write_json_atomic

        payload = {**self.state(self.start), "trainable": [vars(c) for c in self.counts], "examples": self.examples}
        payload.pop("step")
        write_json_atomic(self.loop.out / CONFIG_FILE, payload)

    @property
    def examples(self) -> dict[str, int]:
        return self.task.examples()

    def info(self) -> RunInfo:
        return RunInfo(
            title=self.task.title,
            counts=self.counts,
            examples=self.examples,
            start_step=self.start,
            steps=self.loop.steps,
            device=str(self.accelerator.device),
            precision="bf16 autocast" if self.accelerator.mixed_precision == "bf16" else "fp32",
            processes=self.world,
        )

    def run(self, on_step: Callable[[StepReport], None] | None) -> TrainResult:
        loop = self.loop
        result = TrainResult(out=loop.out, steps=loop.steps, resumed_from=self.start, counts=self.counts)
        if loop.eval_every and self.start == 0:
            self._record_evaluation(0, result)
        began = time.perf_counter()
        for step in range(self.start, loop.steps):
            report = self._step(step)
            done = step + 1
            if loop.eval_every and (done % loop.eval_every == 0 or done == loop.steps):
                evaluation = self._record_evaluation(done, result)
                if evaluation is not None:
                    report = replace(report, evaluation=evaluation)
            if done % loop.save_every == 0 or done == loop.steps:
                self._save(done)
            result.last = report.losses
            every = max(loop.steps // 10, 1)
            if done % every == 0:
                recent = self.losses[-every:]
                self.log(f"{self.task.title} step {done}/{loop.steps}: loss {sum(recent) / len(recent):.4f}")
            self.progress("train", done, loop.steps)
            if self.main and on_step is not None:
                on_step(report)
        made = loop.steps - self.start
        result.seconds_per_step = (time.perf_counter() - began) / max(made, 1)
        result.first_loss = self.losses[0] if self.start == 0 and self.losses else None
        tail = self.losses[-max(len(self.losses) // 10, 1) :]
        result.final_loss = sum(tail) / len(tail) if tail else None
        self._export(result)
        self.accelerator.wait_for_everyone()  # no process exits while the main one still writes the model folder
        return result

    def close(self) -> None:
        """Leave the process group (a no-op in one process). A process that exits with its gloo or NCCL group
        still alive can abort in the group's destructor ("terminate called without an active exception")."""
        self.accelerator.end_training()

    def _step(self, step: int) -> StepReport:
        loop, accelerator = self.loop, self.accelerator
        started = time.perf_counter()
        sums: dict[str, float] = {}
        tokens = 0
        for a in range(loop.grad_accum):
            micro = step * loop.grad_accum + a
            batch = self.task.batch(micro, self.world, self.rank, accelerator.device)
            seed = mix_seed(loop.seed, micro, self.rank)
            torch.manual_seed(seed)  # LoRA dropout and anything else drawing from the global generator
            generator = torch.Generator(device=accelerator.device).manual_seed(seed)
            sync = a == loop.grad_accum - 1
            with self._gradient_sync(sync):
                with accelerator.autocast():
                    losses = self.wrapped(batch, generator)
                if not torch.isfinite(losses["loss"]):
                    raise TrainingError(
                        f"{self.task.title} loss is {float(losses['loss'])} at step {step + 1}; lower the learning rate"
                    )
                accelerator.backward(losses["loss"] / loop.grad_accum)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / loop.grad_accum
            tokens += int(batch.get("tokens", 0))
        if loop.max_grad_norm > 0:
            accelerator.clip_grad_norm_([p for p in self.module.parameters() if p.requires_grad], loop.max_grad_norm)
        lrs = {group.get("name", str(i)): float(group["lr"]) for i, group in enumerate(self.optimizer.param_groups)}
        self.optimizer_wrapped.step()
        self.scheduler.step()
        self.optimizer_wrapped.zero_grad(set_to_none=True)
        self.task.after_step()
        losses_mean = self._reduce(sums)
        self.losses.append(losses_mean["loss"])
        seconds = time.perf_counter() - started
        report = StepReport(
            step=step + 1,
            total=loop.steps,
            losses=losses_mean,
            lr=lrs,
            tokens_per_s=tokens * self.world / max(seconds, 1e-9),
            seconds=seconds,
        )
        if (step + 1) % loop.log_every == 0 or step + 1 == loop.steps:
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
        if self.loop.fsdp:
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

    def _record_evaluation(self, step: int, result: TrainResult) -> dict[str, float] | None:
        generator = torch.Generator(device=self.accelerator.device).manual_seed(mix_seed(self.loop.seed, -1))
        with _evaluating(self.wrapped), torch.no_grad(), self.accelerator.autocast():
            losses = self.task.evaluate(self.wrapped, generator, self.accelerator.device)
        if not losses:
            return None
        self.metrics.write({"step": step, **{f"eval/{k}": v for k, v in losses.items()}})
        result.evaluations.append({"step": step, "losses": losses})
        return losses

    def _save(self, step: int) -> None:
        self.accelerator.wait_for_everyone()
        gathered, optimizer_state = None, None
        if self.loop.fsdp:  # collective: every process takes part, rank 0 receives the whole tensors
            from .sharding import gather_optimizer, gather_trainable

            gathered, optimizer_state = gather_trainable(self.module), gather_optimizer(self.module, self.optimizer)
        if self.main:
            module = self.module if self.loop.fsdp else self.accelerator.unwrap_model(self.wrapped)
            save_checkpoint(
                checkpoint_dir(self.loop.out, step),
                module,
                optimizer_state if optimizer_state is not None else self.optimizer.state_dict(),
                self.scheduler.state_dict(),
                self.state(step),
                keep=self.loop.keep_checkpoints,
                gathered=gathered,
                task_state=self.task.extra_state(),
            )
        self.accelerator.wait_for_everyone()

    def _export(self, result: TrainResult) -> None:
        self.accelerator.wait_for_everyone()
        module = self._final_module()
        if not self.main or module is None:
            return
        module.eval()
        info = {**self.state(self.loop.steps), "trainable": [vars(c) for c in self.counts]}
        result.summary = self.task.export(module, info, self.accelerator.mixed_precision)
        self.log(f"model folder written: {self.loop.out} (use it with --model {self.loop.out})")

    def _final_module(self) -> torch.nn.Module | None:
        """The trained module, whole, on the main process (None elsewhere under --fsdp: a collective)."""
        if not self.loop.fsdp:
            return self.accelerator.unwrap_model(self.wrapped)
        from .sharding import gather_model

        whole = gather_model(self.module)
        if not self.main:
            return None
        return self.task.unsharded(whole)


@contextlib.contextmanager
def _evaluating(module: torch.nn.Module) -> Iterator[None]:
    module.eval()
    try:
        yield
    finally:
        module.train()


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


def run_task(
    task: TrainingTask,
    loop: LoopConfig,
    *,
    progress: ProgressFn = no_progress,
    on_step: Callable[[StepReport], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    log: Log = lambda _m: None,
) -> TrainResult:
    """Train ``task`` for ``loop.steps`` optimizer steps; write checkpoints, metrics and the model folder.

    ``on_start`` and ``on_step`` are called on the main process, before the first step and after every optimizer
    step; an exception they raise stops the run (the last checkpoint stays resumable). ``progress`` reports the
    task's preparation and the steps; ``log`` gets one-line notes.
    """
    from ..model import quiet_libraries

    with quiet_libraries():
        run = _Run(task, loop, progress, log)
    try:  # from here on the process group exists, so every way out leaves it
        run.check_world()
        with quiet_libraries():
            run.prepare()
        if run.main and on_start is not None:
            on_start(run.info())
        return run.run(on_step)
    finally:
        run.close()
