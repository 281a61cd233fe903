"""`audiostory train planner`: pretrain a from-scratch planner on the text of stories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..common import err_console, out_console
from .view import TrainProgress, loss_summary


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
    from ...train.planner_text import PlannerTrainConfig, pretrain_planner

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
    with TrainProgress() as view:
        result = pretrain_planner(config, progress=view, on_step=view.step, on_start=view.start, log=view.note)
    err_console.print(f"planner loss {loss_summary(result)}")
    out_console.print(str(result.out))
