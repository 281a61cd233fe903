"""Options shared by the commands that plan and render (tell, render, regen, continue)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ..story import StoryFolder

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Registered model (audiostory-3b, tiny-random) or a model folder."),
]
DefaultModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registered model (audiostory-3b, demo, tiny-random) or a model folder "
        "[default: audiostory-3b when downloaded, else the bundled demo].",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="Compute device: auto (cuda, then mps, then cpu), cuda, mps or cpu.")]
PresetOpt = Annotated[
    str, typer.Option("--preset", help="Delivery loudness preset: broadcast, atsc, podcast, streaming or none.")
]
StyleOpt = Annotated[
    str | None, typer.Option(help="Style preset: cartoon, field-recording, horror, sci-fi (lead phrase + settings).")
]
SeedOpt = Annotated[int | None, typer.Option(help="Base seed: event N gets seed+N-1 (default: a random one).")]
StepsOpt = Annotated[int | None, typer.Option(help="Sampling steps per event (default 50, or the style's).")]
GuidanceOpt = Annotated[float | None, typer.Option(help="Classifier-free guidance (default 4.0, or the style's).")]
RepetitionPenaltyOpt = Annotated[
    float | None,
    typer.Option(
        "--repetition-penalty",
        help="Planner repetition penalty (1 = none). Default: the model's generation config (1.05 for "
        "audiostory-3b, as the official inference applies it even when greedy).",
    ),
]
CrossfadeShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--crossfade-shape",
        help="Crossfade between events: linear (the official join) or equal-power. Default: the model's "
        "(linear, 3 s, for audiostory-3b); a --style sets the length.",
    ),
]
CanvasOpt = Annotated[
    str | None,
    typer.Option(
        "--canvas",
        help="DiT canvas: fixed (the whole 30 s window, then trimmed: the official inference) or sized (each "
        "event's own length: faster, but not validated on the released weights). Default: the model's.",
    ),
]
StemsOpt = Annotated[bool, typer.Option("--stems", help="Also export one stem per event (stems sum to the mix).")]
CuesOpt = Annotated[
    str, typer.Option(help="Cue sheets, comma-separated: story, reaper, audacity, edl (qc.json always).")
]
RecueOpt = Annotated[  # render, regen, edit: re-delivering keeps the last export's cue sheets unless told
    str | None, typer.Option("--cues", help="Cue sheets: story, reaper, audacity, edl (default: as last exported).")
]
OffloadOpt = Annotated[
    bool | None,
    typer.Option("--offload/--no-offload", help="Move the LLM off the GPU before rendering (default: when needed)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout instead of paths.")]

ALL_CUES = "story,reaper,audacity,edl"


def parse_cues(text: str) -> tuple[str, ...]:
    """``--cues`` as names, validated (an unknown format is a usage error before any work)."""
    from ..audio.cues import check_cue_names, split_cue_list

    return check_cue_names(split_cue_list(text))


def refresh_export_options(folder: StoryFolder, preset: str, *, stems: bool, cues: str | None) -> Any:
    """Options for re-delivering a story: the last export's (stems, cues, loudness), with flags on top."""
    import dataclasses

    from ..app.export import ExportOptions, last_export_options

    options = last_export_options(folder) or ExportOptions(loudness=preset, cues=parse_cues(ALL_CUES))
    changes: dict[str, Any] = {"force": True}
    if stems:
        changes["stems"] = True
    if cues is not None:
        changes["cues"] = parse_cues(cues)
    return dataclasses.replace(options, **changes)


NoWaitOpt = Annotated[
    bool,
    typer.Option("--no-wait", help="Fail at once if another command is changing the story folder (default: wait)."),
]


def lock_story(folder: StoryFolder, command: str, *, no_wait: bool, create: bool = False) -> Any:
    """The folder's lock for the whole command; while another command holds it, one line on stderr says whose."""
    from .common import err_console

    def waiting(line: str) -> None:
        err_console.print(line, markup=False, highlight=False)

    return folder.locked(command, wait=not no_wait, create=create, on_wait=waiting)


def default_model(model: str | None) -> str:
    """``--model`` as given, or the default model (``models.download.resolve_default_model``): the notice that
    the demo stands in for undownloaded weights goes to stderr, one line."""
    if model is not None:
        return model
    from ..weights.download import resolve_default_model
    from .common import err_console

    chosen = resolve_default_model()
    if chosen.notice:
        err_console.print(chosen.notice, markup=False, highlight=False)
    return chosen.name
