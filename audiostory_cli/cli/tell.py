"""`audiostory tell PROMPT --duration S`: plan, review (and edit), render, deliver."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from .common import err_console, is_interactive, out_console
from .options import (
    ALL_CUES,
    CuesOpt,
    DefaultModelOpt,
    DeviceOpt,
    GuidanceOpt,
    JsonOpt,
    OffloadOpt,
    PresetOpt,
    SeedOpt,
    StemsOpt,
    StepsOpt,
    StyleOpt,
    default_model,
    parse_cues,
)


def tell(
    prompt: Annotated[str, typer.Argument(help="The story, e.g. \"a chase through a rainstorm: footsteps, thunder\".")],
    duration: Annotated[float, typer.Option("--duration", "-d", help="Total length in seconds (1 to 3600).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Story folder to create (default: named after the prompt).")
    ] = None,
    model: DefaultModelOpt = None,
    preset: PresetOpt = "broadcast",
    style: StyleOpt = None,
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    stems: StemsOpt = False,
    cues: CuesOpt = ALL_CUES,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Render without asking (always so without a TTY).")] = False,
    ask: Annotated[bool, typer.Option("--ask", help="Ask [r]ender/[e]dit/[q]uit even without a TTY.")] = False,
    plan_only: Annotated[bool, typer.Option("--plan-only", help="Write story.json and stop; render later.")] = False,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a story already in --out.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan a story from PROMPT, show the plan, then render every event and deliver mix, stems and cues."""
    from ..audio.cues import check_cue_names
    from ..models.registry import resolve_model_ref
    from ..pipeline import PlanOptions, check_plan_options, check_preset, check_prompt, default_out_dir, plan_story
    from ..story import StoryFolder

    options = PlanOptions(total_duration=duration, preset=preset, style=style, seed=seed, steps=steps,
                          guidance=guidance)
    check_prompt(prompt)  # every cheap check first: a bad flag is one line and creates nothing
    check_plan_options(options)
    check_preset(preset)
    if style:
        from ..styles import get_style

        get_style(style)
    cue_names = check_cue_names(parse_cues(cues))
    model = default_model(model)
    resolve_model_ref(model)
    folder = StoryFolder(out or default_out_dir(prompt))
    with _removed_on_failure(folder.root):
        folder.prepare_new(force=force)
        err_console.print(f"[dim]audiostory tell: {duration:g} s, model {model}[/]")  # the first line, before imports
        from ..export import ExportOptions
        from ..story.table import plan_table
        from .progress_view import RichProgress
        from .session import load_for_command, render_and_export, wants_offload

        loaded, runtime = load_for_command(model, device)
        with RichProgress() as progress:
            story = plan_story(prompt, options, loaded, progress=progress)
        folder.save(story, keep_previous=True)
    err_console.print(plan_table(story))
    export_options = ExportOptions(loudness=preset, stems=stems, cues=cue_names, force=True)
    if plan_only:
        err_console.print(f"plan saved; render it with: audiostory render {folder.root}")
        out_console.print(str(folder.story_path))
        return
    if not _confirm_render(folder, ask=ask or (is_interactive() and not yes)):
        err_console.print(f"plan saved; render it later with: audiostory render {folder.root}")
        out_console.print(str(folder.story_path))
        return
    render_and_export(folder, loaded, runtime, export_options=export_options,
                      offload=wants_offload(offload, runtime), as_json=as_json)


@contextlib.contextmanager
def _removed_on_failure(root: Path) -> Iterator[None]:
    """A folder this command creates is removed again if loading or planning fails before anything is in it."""
    created = not root.exists()
    try:
        yield
    except BaseException:
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise


def _confirm_render(folder: object, *, ask: bool) -> bool:
    """``[r]ender / [e]dit / [q]uit`` until the user renders or quits; edits re-show the table."""
    from ..story import StoryFolder
    from ..story.edit import edit_story
    from ..story.table import plan_table
    from .plan import _ask_retry

    assert isinstance(folder, StoryFolder)
    while ask:
        choice = typer.prompt("[r]ender / [e]dit / [q]uit", default="r", err=True).strip().lower()[:1]
        if choice == "r":
            return True
        if choice == "q":
            return False
        if choice == "e":
            result = edit_story(folder, folder.load(), ask_retry=_ask_retry)
            err_console.print(plan_table(result.story) if result.changed else "no changes")
            continue
        err_console.print("please answer r, e or q")
    return True
