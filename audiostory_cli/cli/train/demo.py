"""`audiostory train demo`: reproduce the bundled demo model from nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ..common import err_console, out_console
from .view import TrainProgress


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the finished demo model.")],
    work: Annotated[
        Path | None, typer.Option(help="Data and per-step runs (default: OUT-work beside OUT); kept afterwards.")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The whole recipe at smoke-test size (learns nothing).")] = (
        False
    ),
    edit_dialogues: Annotated[
        int,
        typer.Option(
            help="Also teach the planner to edit plans (`audiostory edit`) from this many synthetic edit "
            "dialogues (0: the shipped demo's recipe)."
        ),
    ] = 0,
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
    from ...demo.recipe import DemoRecipe, build_demo, folder_size, quick_recipe

    recipe = replace(quick_recipe() if quick else DemoRecipe(), edit_dialogues=edit_dialogues)
    recipe.check()
    work = work or out.parent / f"{out.name}-work"
    with TrainProgress() as view:
        result = build_demo(out, work, recipe, device=device, resume=resume, progress=view, log=view.note)
    for step, seconds in result.timings.items():
        err_console.print(f"{step}: {seconds:.1f} s")
    err_console.print(
        f"demo model: {folder_size(result.out) / 1e6:.1f} MB; try it: audiostory tell "
        f'"rain, then thunder" --duration 10 --model {result.out}'
    )
    out_console.print(str(result.out))
