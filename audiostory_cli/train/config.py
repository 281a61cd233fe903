"""``TrainConfig`` (every option of a stage run) and ``LoopConfig`` (the options the training engine shares
across every kind of training), checked before anything heavy is imported. Torch-free.

Defaults follow the official run where it is known (lr 1e-4 for the LLM, batch 8, LoRA from the model dims,
t5_feature_scale from the bridge dims) and TangoFlux for the DiT (lr 1e-5, logit-normal(0, 1) timesteps).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .manifest import KINDS, ManifestSpec
from .stages import LM_SCOPES, LossWeights, get_stage

# Options that may differ between a checkpoint and the run resuming it (everything else must match). The run
# folder and manifest paths may move: the data itself is compared by its content hash.
RESUMABLE_CHANGES = frozenset(
    {
        "out",
        "data",
        "steps",
        "save_every",
        "keep_checkpoints",
        "log_every",
        "eval_every",
        "eval_examples",
        "resume",
        "device",
        "cache_dir",
    }
)


@dataclass(frozen=True)
class LoopConfig:
    """The loop's options, the same for every task (each task's config builds one from its own options)."""

    out: Path
    steps: int
    seed: int = 0
    grad_accum: int = 1
    warmup: int = 100
    schedule: str = "cosine"  # cosine | linear | constant (after warm-up)
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0
    save_every: int = 500
    keep_checkpoints: int = 3  # newest checkpoints kept; 0 keeps all
    log_every: int = 1
    eval_every: int = 0  # 0: no evaluation
    device: str = "auto"
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, none elsewhere) | bf16 | no
    fsdp: bool = False
    resume: bool = False


@dataclass(frozen=True)
class TrainConfig:
    stage: str
    data: tuple[ManifestSpec, ...]
    out: Path
    model: str = "audiostory-3b"
    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr_llm: float = 1e-4
    lr_bridge: float | None = None  # None: lr_llm
    lr_dit: float = 1e-5
    weight_decay: float = 0.0
    warmup: int = 100
    schedule: str = "cosine"  # cosine | linear | constant (after warmup)
    min_lr_ratio: float = 0.1  # the decay ends at this fraction of the peak lr
    max_grad_norm: float = 1.0
    loss_weights: LossWeights = field(default_factory=lambda: LossWeights(1.0, 0.2, 0.4))
    lm_scope: str | None = None  # None: the stage's
    gen_und_ratio: tuple[int, int] = (2, 1)
    cond_dropout: float = 0.1  # probability of replacing an event's bridge tokens by T5("") (CFG training)
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # Exponential moving average of the trained weights (diffusers' EMAModel), exported instead of the last step's:
    # 0 turns it off; the decay warms up as (1 + step) / (10 + step) until it reaches this value
    ema_decay: float = 0.0
    max_tokens: int = 4096  # longest token sequence; longer examples are an error naming the line
    save_every: int = 500
    keep_checkpoints: int = 3  # newest checkpoints kept; 0 keeps all
    log_every: int = 1
    eval_every: int = 0  # 0: no evaluation; else a fixed-noise loss on up to eval_examples, logged
    eval_examples: int = 16
    seed: int = 0
    device: str = "auto"
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, none elsewhere) | bf16 | no
    gradient_checkpointing: bool = False
    fsdp: bool = False  # shard weights, gradients and optimizer state across processes (FSDP2) instead of DDP
    resume: bool = False
    cache_dir: Path | None = None  # None: $AUDIOSTORY_CACHE/train-features
    t5_tokenizer: Path | None = None  # flan-t5 tokenizer folder when the model folder has none

    def __post_init__(self) -> None:
        self.check()

    @property
    def stage_spec(self) -> Any:
        return get_stage(self.stage)

    @property
    def effective_lm_scope(self) -> str | None:
        return self.lm_scope if self.lm_scope is not None else self.stage_spec.lm_scope

    @property
    def bridge_lr(self) -> float:
        return self.lr_bridge if self.lr_bridge is not None else self.lr_llm

    def check(self) -> None:
        get_stage(self.stage)
        positive_ints = {
            "--steps": self.steps,
            "--batch-size": self.batch_size,
            "--grad-accum": self.grad_accum,
            "--save-every": self.save_every,
            "--log-every": self.log_every,
            "--max-tokens": self.max_tokens,
            "--eval-examples": self.eval_examples,
        }
        for flag, value in positive_ints.items():
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{flag} {value} must be a positive integer")
        if self.warmup < 0 or self.eval_every < 0 or self.keep_checkpoints < 0:
            raise UsageError("--warmup, --eval-every and --keep-checkpoints must not be negative")
        for flag, lr in (("--lr-llm", self.lr_llm), ("--lr-dit", self.lr_dit), ("--lr-bridge", self.bridge_lr)):
            if not (math.isfinite(lr) and 0 < lr < 1):
                raise UsageError(f"{flag} {lr} must be in (0, 1), e.g. 1e-4")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight-decay {self.weight_decay} must be >= 0")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise UsageError(f"--schedule {self.schedule!r} must be cosine, linear or constant")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UsageError(f"--min-lr-ratio {self.min_lr_ratio} must be in [0, 1]")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0):
            raise UsageError(f"--max-grad-norm {self.max_grad_norm} must be >= 0 (0 disables clipping)")
        if not 0 <= self.cond_dropout < 1:
            raise UsageError(f"--cond-dropout {self.cond_dropout} must be in [0, 1)")
        if not (math.isfinite(self.logit_std) and self.logit_std > 0 and math.isfinite(self.logit_mean)):
            raise UsageError("--logit-std must be positive and --logit-mean finite")
        if not 0 <= self.ema_decay < 1:
            raise UsageError(f"--ema-decay {self.ema_decay} must be in [0, 1), e.g. 0.999 (0: no averaging)")
        if self.ema_decay and self.fsdp:
            raise UsageError("--ema-decay averages whole weights; it does not work with --fsdp (drop one of them)")
        if self.lm_scope is not None and self.lm_scope not in LM_SCOPES:
            raise UsageError(f"--lm-scope {self.lm_scope!r} must be one of {', '.join(LM_SCOPES)}")
        gen, und = self.gen_und_ratio
        if gen < 1 or und < 0:
            raise UsageError(f"--gen-und-ratio {gen}:{und} needs at least one generation batch per cycle")
        if not 0 <= self.seed < 2**31:
            raise UsageError(f"--seed {self.seed} must be in 0..2^31-1")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise UsageError(f"--mixed-precision {self.mixed_precision!r} must be auto, bf16 or no")
        for spec in self.data:
            if spec.kind is not None and spec.kind not in KINDS:
                raise UsageError(f"manifest kind {spec.kind!r} must be one of {', '.join(KINDS)}")
        self.loss_weights.check()

    def loop(self) -> LoopConfig:
        """The engine's options of this run."""
        return LoopConfig(
            out=self.out,
            steps=self.steps,
            seed=self.seed,
            grad_accum=self.grad_accum,
            warmup=self.warmup,
            schedule=self.schedule,
            min_lr_ratio=self.min_lr_ratio,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            save_every=self.save_every,
            keep_checkpoints=self.keep_checkpoints,
            log_every=self.log_every,
            eval_every=self.eval_every,
            device=self.device,
            mixed_precision=self.mixed_precision,
            fsdp=self.fsdp,
            resume=self.resume,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, the manifests as ``{path, kind}``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "data":
                value = [{"path": str(s.path), "kind": s.kind} for s in value]
            elif f.name == "loss_weights":
                value = dataclasses.asdict(value)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Options that changed between a checkpoint's config and this run's, other than ``RESUMABLE_CHANGES``."""
    changed = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_CHANGES:
            continue
        if saved.get(key) != current.get(key):
            changed.append(f"{key}: {saved.get(key)!r} -> {current.get(key)!r}")
    return changed
