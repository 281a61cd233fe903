"""Planner text pretraining (``audiostory train planner``): the whole LLM learns to write plans from stories' text.

The released model's planner starts from Qwen2.5-3B-Instruct, an LLM that can already read; the paper's stages
only adapt it through LoRA. A model trained from scratch (the ``demo`` model) has no such LLM, so this step gives
it one: next-token training of *every* LLM weight (no LoRA) on story plans in exactly the layout the stages and
inference use (``sequences.plan_sequence``: chat prompt, storyline reasoning, ``<|gen|>`` blocks), with the loss
of stage III's ``full`` scope (reasoning, plan text and layout tokens; never the prompt or the bridge
placeholders). Only text is needed: the stories file may have no audio at all, so thousands of stories cost
nothing to prepare. Every other part of the model folder is written back unchanged.

Resumable: a checkpoint (LLM weights, AdamW and schedule state, step) is written every ``save_every`` steps; the
example order is a pure function of (seed, step), so a resumed run ends bitwise equal to an uninterrupted one on
a CPU.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TrainingError, UsageError
from ..progress import ProgressFn, no_progress

CHECKPOINT_FILE = "planner-checkpoint.pt"
PLANNER_STREAM = 3  # BatchOrder stream of this step (the stages use 1 and 2)


@dataclass(frozen=True)
class PlannerTrainConfig:
    model: Path  # a model folder; its LLM is trained
    stories: Path  # a stories JSONL file (instruction, reasoning, events with caption/duration); audio not needed
    out: Path  # the model folder written at the end (and the checkpoint while it runs)
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    max_tokens: int = 2048
    save_every: int = 200
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


@dataclass(frozen=True)
class PlannerResult:
    out: Path
    steps: int
    resumed_from: int
    first_loss: float | None  # None when the run resumed past its first step
    final_loss: float  # mean over the last 10 % of the steps this run made
    seconds_per_step: float


def _check_out(config: PlannerTrainConfig) -> Path | None:
    """The checkpoint to resume from, after making sure a fresh run would not overwrite another one."""
    out = Path(config.out)
    checkpoint = out / CHECKPOINT_FILE
    if config.resume:
        if not checkpoint.is_file() and (out / "audiostory.json").is_file():
            raise TrainingError(f"{out} holds a finished run (no checkpoint left to resume); use it as a --model")
        return checkpoint if checkpoint.is_file() else None
    used = [name for name in (CHECKPOINT_FILE, "audiostory.json") if (out / name).exists()]
    if used:
        raise TrainingError(
            f"{out} already holds a run ({', '.join(used)}); pass --resume to continue it or choose another --out"
        )
    return None


def _save_checkpoint(
    path: Path, step: int, llm: Any, optimizer: Any, scheduler: Any, config: PlannerTrainConfig
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(
        {
            "step": step,
            "llm": llm.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "config": _resumable(config),
        },
        partial,
    )
    os.replace(partial, path)


def _resumable(config: PlannerTrainConfig) -> dict[str, Any]:
    """The options a resumed run must share with the run it continues."""
    fields = asdict(config)
    return {
        k: str(v) if isinstance(v, Path) else v
        for k, v in fields.items()
        if k not in ("out", "resume", "device", "save_every")
    }


def _read_checkpoint(checkpoint: Path, config: PlannerTrainConfig, device: torch.device) -> dict[str, Any]:
    """The resumable state in ``checkpoint``; a one-line error when it is unreadable or from other options."""
    try:
        state = torch.load(checkpoint, map_location=device, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, pickle or zip errors for a damaged file
        raise TrainingError(
            f"cannot resume from {checkpoint}: the file is unreadable ({type(error).__name__}); "
            "delete it to start the run over, or restore it from a backup"
        ) from error
    if not isinstance(state, dict) or not {"llm", "optimizer", "scheduler", "step", "config"} <= state.keys():
        raise TrainingError(
            f"cannot resume from {checkpoint}: it is not a planner checkpoint; delete it to start the run over"
        )
    if state["config"] != _resumable(config):
        raise TrainingError(
            f"cannot resume {checkpoint}: the run's options changed; resume with the same options or start a new --out"
        )
    return state


def pretrain_planner(
    config: PlannerTrainConfig, *, progress: ProgressFn = no_progress, log: Callable[[str], None] = lambda _m: None
) -> PlannerResult:
    """Train every LLM weight of ``config.model`` on the plans of ``config.stories``; write the model to ``out``."""
    from ..model import load_model_folder, quiet_libraries
    from ..models.checkpoint import load_state_strict
    from ..planner.tokens import resolve_special_token_ids
    from ..runtime import make_runtime
    from .checkpoint import export_model
    from .data import BatchOrder, lm_targets, pad_sequences
    from .engine import lr_factor
    from .manifest import load_story_texts
    from .sequences import SCOPE_CLASSES, plan_sequence
    from .t5_tokenizer import resolve_t5_tokenizer

    config.check()
    checkpoint = _check_out(config)
    runtime = make_runtime(config.device, "fp32")
    with quiet_libraries():
        model = load_model_folder(Path(config.model), runtime)
    stories = load_story_texts(config.stories, max_event_seconds=model.dims.window_seconds)
    special = resolve_special_token_ids(model.tokenizer)
    bridge = model.dims.bridge
    sequences = []
    for story in stories:
        sequence = plan_sequence(
            model.tokenizer,
            special,
            story.instruction,
            story.storyline,
            story.events,
            bridge.num_semantic_tokens,
            bridge.num_residual_tokens,
        )
        if len(sequence) > config.max_tokens:
            raise TrainingError(
                f"{story.source}: the plan is {len(sequence)} tokens, more than --max-tokens "
                f"{config.max_tokens}; shorten the story or raise --max-tokens"
            )
        sequences.append(sequence)
    classes = SCOPE_CLASSES["full"]

    llm = model.llm.float().to(runtime.device).train()
    state = _read_checkpoint(checkpoint, config, runtime.device) if checkpoint is not None else None
    if state is not None:
        # before the optimizer exists: the strict loader assigns new tensors, which an optimizer built on the old
        # ones would never update
        load_state_strict(llm, state["llm"], prefix="llm.")
    for param in llm.parameters():
        param.requires_grad_(True)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(llm.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, warmup=config.warmup, total=config.steps, schedule="cosine", min_ratio=config.min_lr_ratio
        ),
    )
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        log(f"planner pretraining resumed from {checkpoint} (step {start})")
    if start >= config.steps:
        raise TrainingError(f"the checkpoint is at step {start}; pass --steps larger than that to go on")

    order = BatchOrder(len(sequences), config.seed, PLANNER_STREAM)
    losses: list[float] = []
    began = time.perf_counter()
    for step in range(start, config.steps):
        batch = [sequences[i] for i in order.indices(step, config.batch_size)]
        ids, mask = pad_sequences(batch, special.endoftext)
        sources, targets = lm_targets(batch, ids.shape[1], classes)
        logits = llm(input_ids=ids.to(runtime.device), attention_mask=mask.to(runtime.device)).logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1])[sources.to(runtime.device)], targets.to(runtime.device)
        )
        if not torch.isfinite(loss):
            raise TrainingError(f"planner loss is {loss.item()} at step {step + 1}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(llm.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.item()))
        done = step + 1
        progress("planner-train", done, config.steps)
        if done % config.save_every == 0 and done < config.steps:
            _save_checkpoint(Path(config.out) / CHECKPOINT_FILE, done, llm, optimizer, scheduler, config)
        every = max(config.steps // 10, 1)
        if done % every == 0:
            log(f"planner step {done}/{config.steps}: loss {sum(losses[-every:]) / len(losses[-every:]):.4f}")
    seconds = (time.perf_counter() - began) / max(len(losses), 1)

    model.llm = llm.eval().cpu()
    for param in model.llm.parameters():
        param.requires_grad_(False)
    for part in model.parts().values():
        part.cpu()
    t5_tokenizer, _ = resolve_t5_tokenizer(str(config.model), model.dims.text_encoder.vocab_size)
    tail = losses[-max(len(losses) // 10, 1) :]
    first_loss = losses[0] if start == 0 else None
    final_loss = sum(tail) / len(tail)
    info = {
        "steps": config.steps,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "stories": str(config.stories),
        "n_stories": len(stories),
        "n_edits": sum(story.edit for story in stories),
        "first_loss": first_loss,
        "final_loss": final_loss,
    }
    extra = {k: v for k, v in model.extra.items() if k not in ("training", "training_history")}
    model.extra = {**extra, "planner_pretraining": info}
    if any(story.edit for story in stories):  # `audiostory edit` then rewrites with this planner as trained
        model.extra["trained_edits"] = True
    model.name = Path(config.out).name
    export_model(
        Path(config.out), model, t5_tokenizer, base_model=str(config.model), info_extra={"planner_pretraining": info}
    )
    (Path(config.out) / CHECKPOINT_FILE).unlink(missing_ok=True)
    log(f"planner pretrained on {len(stories)} stories: loss {info['final_loss']:.4f}; model folder {config.out}")
    return PlannerResult(
        out=Path(config.out),
        steps=config.steps,
        resumed_from=start,
        first_loss=first_loss,
        final_loss=final_loss,
        seconds_per_step=seconds,
    )
