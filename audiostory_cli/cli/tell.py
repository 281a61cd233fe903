"""`audiostory tell PROMPT --duration S`: plan, review (and edit), render, deliver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import err_console, is_interactive, out_console
from .options import (
    ALL_CUES,
    CanvasOpt,
    CrossfadeShapeOpt,
    CuesOpt,
    DefaultModelOpt,
    DeviceOpt,
    GuidanceOpt,
    JsonOpt,
    NoWaitOpt,
    OffloadOpt,
    PresetOpt,
    RepetitionPenaltyOpt,
    SeedOpt,
    StemsOpt,
    StepsOpt,
    StyleOpt,
    default_model,
    lock_story,
    parse_cues,
)


def tell(
    prompt: Annotated[str, typer.Argument(help='The story, e.g. "a chase through a rainstorm: footsteps, thunder".')],
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
    canvas: CanvasOpt = None,
    repetition_penalty: RepetitionPenaltyOpt = None,
    crossfade_shape: CrossfadeShapeOpt = None,
    stems: StemsOpt = False,
    cues: CuesOpt = ALL_CUES,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Render without asking (always so without a TTY).")] = False,
    ask: Annotated[bool, typer.Option("--ask", help="Ask \\[r]ender/\\[e]dit/\\[q]uit even without a TTY.")] = False,
    plan_only: Annotated[bool, typer.Option("--plan-only", help="Write story.json and stop; render later.")] = False,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a story already in --out.")] = False,
    as_json: JsonOpt = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Plan a story from PROMPT, show the plan, then render every event and deliver mix, stems and cues."""
    from ..app.pipeline import PlanOptions, check_tell_inputs, default_out_dir, removed_if_left_empty, start_story
    from ..story import StoryFolder

    options = PlanOptions(
        total_duration=duration,
        preset=preset,
        style=style,
        seed=seed,
        steps=steps,
        guidance=guidance,
        canvas=canvas,
        repetition_penalty=repetition_penalty,
        crossfade_shape=crossfade_shape,
    )
    model = default_model(model)
    # every cheap check first: a bad flag is one line and creates nothing
    cue_names = check_tell_inputs(prompt, options, cues=parse_cues(cues), model=model)
    folder = StoryFolder(out or default_out_dir(prompt))
    folder.check_new(force=force)  # before the lock: no lock file is left in a folder that is not ours
    created = not folder.root.exists()
    with lock_story(folder, "tell", no_wait=no_wait, create=True), removed_if_left_empty(folder.root, created):
        folder.prepare_new(force=force)  # again under the lock: another tell may have filled it meanwhile
        err_console.print(f"[dim]audiostory tell: {duration:g} s, model {model}[/]")  # the first line, before imports
        from ..app.export import ExportOptions
        from .progress_view import RichProgress
        from .session import confirm_render, load_for_command, render_and_export, wants_offload
        from .tables import print_plan

        loaded, runtime = load_for_command(model, device)
        with RichProgress() as progress:
            story = start_story(folder, prompt, options, loaded, progress=progress)
        print_plan(err_console, story)
        export_options = ExportOptions(loudness=preset, stems=stems, cues=cue_names, force=True)
        if plan_only:
            err_console.print(f"plan saved; render it with: audiostory render {folder.root}")
            out_console.print(str(folder.story_path))
            return
        if not confirm_render(folder, ask=ask or (is_interactive() and not yes)):
            err_console.print(f"plan saved; render it later with: audiostory render {folder.root}")
            out_console.print(str(folder.story_path))
            return
        render_and_export(
            folder,
            loaded,
            runtime,
            export_options=export_options,
            offload=wants_offload(offload, runtime),
            as_json=as_json,
        )
