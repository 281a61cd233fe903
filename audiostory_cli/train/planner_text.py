"""Planner text pretraining (``audiostory train planner``): the whole LLM learns to write plans from stories' text.

The released model's planner starts from Qwen2.5-3B-Instruct, an LLM that can already read; the paper's stages
only adapt it through LoRA. A model trained from scratch (the ``demo`` model) has no such LLM, so this step gives
it one: next-token training of *every* LLM weight (no LoRA) on story plans in exactly the layout the stages and
inference use (``sequences.plan_sequence``: chat prompt, storyline reasoning, ``<|gen|>`` blocks), with the loss
of stage III's ``full`` scope (reasoning, plan text and layout tokens; never the prompt or the bridge
placeholders). Only text is needed: the stories file may have no audio at all, so thousands of stories cost
nothing to prepare. Every other part of the model folder is written back unchanged.

A training task of the one engine (``engine.run_task``): checkpoints, ``--resume`` (bitwise on a CPU: the
example order is a pure function of (seed, step)), metrics and progress are the stages' own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from ..errors import TrainingError, UsageError
from ..progress import ProgressFn, no_progress
from .config import LoopConfig
from .engine import RunContext, RunInfo, StepReport, TrainResult, fp32_runtime, run_task
from .module import PartCount

PLANNER_STREAM = 3  # BatchOrder stream of this step (the stages use 1 and 2)


@dataclass(frozen=True)
class PlannerTrainConfig:
    model: Path  # a model folder; its LLM is trained
    stories: Path  # a stories JSONL file (instruction, reasoning, events with caption/duration); audio not needed
    out: Path  # the run folder (checkpoints, metrics), which becomes the model folder at the end
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    max_tokens: int = 2048
    save_every: int = 200
    keep_checkpoints: int = 1
    seed: int = 0
    device: str = "auto"
    resume: bool = False

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError(f"--steps {self.steps} and --batch-size {self.batch_size} must be positive")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise UsageError(f"--lr {self.lr} must be in (0, 1)")
        if self.warmup < 0 or self.save_every < 1:
            raise UsageError(
                f"--warmup {self.warmup} must not be negative and --save-every {self.save_every} must be positive"
            )
        if Path(self.out).resolve() == Path(self.model).resolve():
            raise UsageError("--out must be a new folder, not the --model folder itself")

    def loop(self) -> LoopConfig:
        return LoopConfig(
            out=Path(self.out),
            steps=self.steps,
            seed=self.seed,
            warmup=self.warmup,
            schedule="cosine",
            min_lr_ratio=self.min_lr_ratio,
            weight_decay=self.weight_decay,
            max_grad_norm=1.0,
            save_every=self.save_every,
            keep_checkpoints=self.keep_checkpoints,
            device=self.device,
            mixed_precision="auto",
            resume=self.resume,
        )


class PlannerLM(torch.nn.Module):
    """The LLM as a training module: next-token loss on the positions a batch marks."""

    def __init__(self, llm: torch.nn.Module) -> None:
        super().__init__()
        self.llm = llm

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        logits = self.llm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        flat = logits.reshape(-1, logits.shape[-1])[batch["sources"]]
        return {"loss": F.cross_entropy(flat.float(), batch["targets"])}


class PlannerTask:
    """Every LLM weight of a model folder, trained on the plans of a stories file (text only)."""

    title = "planner"
    supports_fsdp = False

    def __init__(self, config: PlannerTrainConfig) -> None:
        config.check()
        self.config = config

    def prepare(self, context: RunContext) -> None:
        from ..model import load_model_folder
        from ..planner.tokens import resolve_special_token_ids
        from .data import BatchOrder
        from .manifest import load_story_texts
        from .sequences import SCOPE_CLASSES

        config = self.config
        self.model = load_model_folder(Path(config.model), fp32_runtime(context.device))
        self.stories = load_story_texts(config.stories, max_event_seconds=self.model.dims.window_seconds)
        self.special = resolve_special_token_ids(self.model.tokenizer)
        self.sequences = self._sequences()
        self.classes = SCOPE_CLASSES["full"]
        self.order = BatchOrder(len(self.sequences), config.seed, PLANNER_STREAM)
        llm = self.model.llm.float().to(context.device).train()
        for param in llm.parameters():
            param.requires_grad_(True)
        self._module = PlannerLM(llm)

    def _sequences(self) -> list[Any]:
        """Each story's plan as the stages and inference lay it out; a one-line error for one too long."""
        from .sequences import plan_sequence

        bridge = self.model.dims.bridge
        sequences = []
        for story in self.stories:
            sequence = plan_sequence(
                self.model.tokenizer,
                self.special,
                story.instruction,
                story.storyline,
                story.events,
                bridge.num_semantic_tokens,
                bridge.num_residual_tokens,
            )
            if len(sequence) > self.config.max_tokens:
                raise TrainingError(
                    f"{story.source}: the plan is {len(sequence)} tokens, more than --max-tokens "
                    f"{self.config.max_tokens}; shorten the story or raise --max-tokens"
                )
            sequences.append(sequence)
        return sequences

    def module(self) -> torch.nn.Module:
        return self._module

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "llm", "params": list(self._module.parameters()), "lr": self.config.lr}]

    def counts(self) -> list[PartCount]:
        from .module import parameter_counts

        return parameter_counts(self._module)

    def examples(self) -> dict[str, int]:
        return {"stories": len(self.sequences)}

    def resume_options(self) -> dict[str, Any]:
        return {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(self.config).items()
            if k not in ("out", "resume", "device", "save_every", "keep_checkpoints", "steps", "stories")
        }

    def data_hash(self) -> str:
        import hashlib

        return hashlib.sha256(Path(self.config.stories).read_bytes()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"base_model": {"ref": str(self.config.model), "name": self.model.name}}

    def batch(self, micro: int, world: int, rank: int, device: torch.device) -> dict[str, Any]:
        from .data import lm_targets, pad_sequences

        rows = [self.sequences[i] for i in self.order.indices(micro, self.config.batch_size, world, rank)]
        ids, mask = pad_sequences(rows, self.special.endoftext)
        sources, targets = lm_targets(rows, ids.shape[1], self.classes)
        return {
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "sources": sources.to(device),
            "targets": targets.to(device),
            "tokens": int(mask.sum()),
        }

    def evaluate(self, module: torch.nn.Module, generator: torch.Generator, device: torch.device) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict[str, Any] | None:
        return None

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Planner pretraining keeps no state beyond the LLM and its optimizer."""

    def after_step(self) -> None:
        """Nothing to update between steps."""

    def unsharded(self, whole: dict[str, torch.Tensor]) -> torch.nn.Module:
        raise TrainingError("planner pretraining does not shard (no --fsdp)")

    def export(self, module: torch.nn.Module, info: dict[str, Any], mixed_precision: str) -> dict[str, Any]:
        """The model folder: the base folder's parts with this LLM."""
        from .checkpoint import export_model
        from .t5_tokenizer import resolve_t5_tokenizer

        config, model = self.config, self.model
        model.llm = cast(Any, module).llm.eval().cpu()
        for param in model.llm.parameters():
            param.requires_grad_(False)
        for part in model.parts().values():
            part.cpu()
        t5_tokenizer, _ = resolve_t5_tokenizer(str(config.model), model.dims.text_encoder.vocab_size)
        summary = {
            **info,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "stories": str(config.stories),
            "n_stories": len(self.stories),
            "n_edits": sum(story.edit for story in self.stories),
        }
        extra = {k: v for k, v in model.extra.items() if k not in ("training", "training_history")}
        model.extra = {**extra, "planner_pretraining": summary}
        if any(story.edit for story in self.stories):  # `audiostory edit` then rewrites with this planner
            model.extra["trained_edits"] = True
        model.name = Path(config.out).name
        export_model(
            Path(config.out),
            model,
            t5_tokenizer,
            base_model=str(config.model),
            info_extra={"planner_pretraining": summary},
        )
        return {"n_stories": len(self.stories)}


def pretrain_planner(
    config: PlannerTrainConfig,
    *,
    progress: ProgressFn = no_progress,
    on_step: Callable[[StepReport], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> TrainResult:
    """Train every LLM weight of ``config.model`` on the plans of ``config.stories``; write the model to ``out``."""
    result = run_task(
        PlannerTask(config), config.loop(), progress=progress, on_step=on_step, on_start=on_start, log=log
    )
    log(f"planner pretrained: loss {result.final_loss:.4f}; model folder {config.out}")
    return result
