"""`audiostory continue IN.wav [INSTRUCTION] --duration S`: plan what follows an input and render it after it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import absolute, err_console, is_interactive, out_console
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

if TYPE_CHECKING:
    from ..app.continuation import ContinuationResult
    from ..story import StoryFolder


def continue_(
    audio: Annotated[Path, typer.Argument(help="The audio to continue: WAV, FLAC, OGG, AIFF, MP3 (M4A with ffmpeg).")],
    duration: Annotated[float, typer.Option("--duration", "-d", help="Length of the NEW part in seconds.")],
    instruction: Annotated[
        str | None, typer.Argument(help='What happens next, e.g. "the storm passes, birds return".')
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Story folder to create (default: named after the input).")
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
    only_new: Annotated[
        bool, typer.Option("--only-new", help="Also deliver the new part alone (continuation.wav, from the seam).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Render without asking (always so without a TTY).")] = False,
    ask: Annotated[bool, typer.Option("--ask", help="Ask \\[r]ender/\\[e]dit/\\[q]uit even without a TTY.")] = False,
    plan_only: Annotated[bool, typer.Option("--plan-only", help="Write story.json and stop; render later.")] = False,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a story already in --out.")] = False,
    as_json: JsonOpt = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Continue AUDIO by --duration seconds, seamlessly; the mix is input + continuation.

    The story folder's event 0 is the input itself (not rendered); `regen DIR N` works on the new events.
    """
    from ..app.continuation import check_continue_inputs, continue_story
    from ..app.export import ExportOptions
    from ..app.pipeline import PlanOptions, check_preset, default_out_dir
    from ..app.understand import understanding_precheck
    from ..audio.input import read_input_audio
    from ..errors import UsageError
    from ..story import StoryFolder
    from ..weights.registry import resolve_model_ref

    # 1. everything that can be wrong is found before the model loads
    model = default_model(model)
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
    source = read_input_audio(audio)
    instruction = check_continue_inputs(source, instruction, options)
    check_preset(preset)
    if style:
        from ..styles import get_style

        get_style(style)
    if instruction is None and (gap := understanding_precheck(model)) is not None:
        raise UsageError(f"{gap}, so it cannot hear what to continue: give an INSTRUCTION saying what follows")
    export_options = ExportOptions(loudness=preset, stems=stems, cues=parse_cues(cues), force=True)
    resolve_model_ref(model)
    folder = StoryFolder(out or default_out_dir(f"{audio.stem} continued"))
    from ..app.pipeline import removed_if_left_empty
    from .progress_view import RichProgress
    from .session import confirm_render, load_for_command, wants_offload
    from .tables import print_plan

    folder.check_new(force=force)  # before the lock: no lock file is left in a folder that is not ours
    created = not folder.root.exists()
    with lock_story(folder, "continue", no_wait=no_wait, create=True):
        with removed_if_left_empty(folder.root, created):  # a folder made here goes again if planning fails
            folder.prepare_new(force=force)
            err_console.print(f"[dim]audiostory continue: {audio} + {duration:g} s, model {model}[/]")
            # 2. plan (listening to the input when the model can), review, render, deliver
            loaded, runtime = load_for_command(model, device)
            with RichProgress() as progress:
                story = continue_story(source, instruction, options, loaded, folder, progress=progress, notify=_notice)
        print_plan(err_console, story)
        if plan_only or not confirm_render(folder, ask=not plan_only and (ask or (is_interactive() and not yes))):
            err_console.print(f"plan saved; render it with: audiostory render {folder.root}")
            out_console.print(str(folder.story_path))
            return
        from ..app.continuation import deliver_continuation

        with RichProgress() as progress:
            result = deliver_continuation(
                folder,
                loaded,
                runtime,
                export_options,
                only_new=only_new,
                offload=wants_offload(offload, runtime),
                progress=progress,
            )
        _print_result(folder, result, as_json=as_json)


def _notice(message: str) -> None:
    err_console.print(f"[yellow]note:[/] {message}", markup=True, highlight=False)


def _print_result(folder: StoryFolder, result: ContinuationResult, *, as_json: bool) -> None:
    seam = result.seam
    err_console.print(
        f"seam at {result.seam_seconds:.3f} s: step {seam.jump:.2g} against the audio's own steps "
        f"(99th percentile {seam.p99_around:.2g}): {'continuous' if seam.continuous else 'a jump, check it'}"
    )
    export = result.export
    new_part_lufs = None
    if result.new_part is not None:
        from ..audio.io import read_audio
        from ..audio.loudness import integrated_loudness

        audio, rate = read_audio(result.new_part, what="continuation")
        measured = integrated_loudness(audio, rate)
        new_part_lufs = round(measured, 2) if measured > float("-inf") else None
        err_console.print(
            f"note: {result.new_part.name} is mix.wav from the seam on, mastered with the input as one mix; it is "
            f"not normalised on its own ({'silent' if new_part_lufs is None else f'{new_part_lufs:.2f} LUFS'}, "
            f"mix {export.qc.get('integrated_lufs')} LUFS); export it separately if it must meet the target alone",
            markup=False,
            highlight=False,
        )
    if as_json:
        files = export.files_dict()
        summary: dict[str, Any] = {
            "story": absolute(folder.story_path),
            "mix": files.pop("mix"),
            "new_part": absolute(result.new_part) if result.new_part else None,
            "new_part_lufs": new_part_lufs,
            **files,
            "rendered": result.rendered,
            "seam_seconds": round(result.seam_seconds, 6),
            "seam": seam.to_dict(),
            **export.loudness_dict(),
        }
        out_console.print_json(json.dumps(summary))
        return
    parts = [result.new_part] if result.new_part else []
    for path in [folder.story_path, export.mix, *parts, *export.stems, *export.cues, export.qc_path]:
        out_console.print(str(Path(path)), soft_wrap=True)
