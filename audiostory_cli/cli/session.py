"""Loading a model for a command, with a spinner, and running the render → export tail every command shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .common import absolute, err_console, is_interactive, out_console

if TYPE_CHECKING:
    from ..model import AudioStoryModel
    from ..runtime import Runtime
    from ..story import StoryFolder


def load_for_command(model_ref: str, device: str) -> tuple[AudioStoryModel, Runtime]:
    """Pick device and dtype once, then load the model behind a transient spinner."""
    with err_console.status(f"loading {model_ref}…"):
        from ..model import load_model
        from ..runtime import make_runtime

        runtime = make_runtime(device)
        model = load_model(model_ref, runtime)
    err_console.print(f"model {model.name} on {runtime.describe()}")
    return model, runtime


def wants_offload(flag: bool | None, runtime: Runtime) -> bool:
    """``--offload`` as given; by default only on CUDA when free memory is below what the full model needs."""
    if flag is not None:
        return flag
    if runtime.device.type != "cuda":
        return False
    from ..runtime import memory_summary

    free = memory_summary(runtime.device).get("free") or 0
    needed = 12 * 1024**3
    if free < needed:
        err_console.print(f"low GPU memory ({free / 1024**3:.1f} GiB free): the LLM is offloaded before rendering")
        return True
    return False


def render_and_export(
    folder: StoryFolder,
    model: AudioStoryModel | None,
    runtime: Runtime | None,
    *,
    export_options: Any,
    offload: bool,
    as_json: bool,
) -> None:
    """Render what is missing, export, and print the results (paths, or JSON with --json) on stdout.

    ``model`` None: nothing needs rendering (the caller checked), so no model is loaded; only delivery runs.
    """
    from ..app.pipeline import deliver_story
    from .progress_view import RichProgress

    with RichProgress() as progress:
        delivery = deliver_story(
            folder, model, runtime, export_options=export_options, progress=progress, offload=offload
        )
    story, report, result = delivery.story, delivery.render, delivery.export
    if as_json:
        summary = {
            "story": absolute(folder.story_path),
            **result.files_dict(),
            "rendered": report.rendered,
            "events": [
                {
                    "index": e.index,
                    "start": e.start,
                    "duration": e.duration,
                    "caption": e.caption,
                    "seed": e.seed,
                    "file": absolute(folder.resolve(e.file)) if e.file else None,
                }
                for e in story.events
            ],
            **result.loudness_dict(),
        }
        out_console.print_json(json.dumps(summary))
        return
    for path in [folder.story_path, result.mix, *result.stems, *result.cues, result.qc_path]:
        out_console.print(str(Path(path)), soft_wrap=True)


def rerender_and_export(
    folder: StoryFolder,
    model_ref: str,
    device: str,
    *,
    export_options: Any,
    offload: bool | None,
    as_json: bool,
    needs_model: bool = True,
) -> None:
    """The tail ``render`` and ``regen`` share: load the story's model (not when ``needs_model`` is false:
    nothing is stale, so only delivery runs), render what is missing, export, print the results."""
    if not needs_model:
        render_and_export(folder, None, None, export_options=export_options, offload=False, as_json=as_json)
        return
    loaded, runtime = load_for_command(model_ref, device)
    render_and_export(
        folder, loaded, runtime, export_options=export_options, offload=wants_offload(offload, runtime), as_json=as_json
    )


def ask_retry(message: str) -> bool:
    """After an invalid hand edit: whether to re-open the editor (never asked when not interactive)."""
    if not is_interactive():
        return False  # no question to ask: the error is reported once, by the caller
    from rich.markup import escape

    err_console.print(f"[bold red]invalid plan:[/] {escape(message)}")
    return typer.confirm("Re-open the editor to fix it?", default=True, err=True)


def confirm_render(folder: object, *, ask: bool) -> bool:
    """``[r]ender / [e]dit / [q]uit`` until the user renders or quits; edits re-show the table (``tell`` and
    ``continue`` review a plan with it)."""
    from ..story import StoryFolder
    from ..story.edit import edit_story
    from .tables import print_plan

    assert isinstance(folder, StoryFolder)
    while ask:
        choice = typer.prompt("[r]ender / [e]dit / [q]uit", default="r", err=True).strip().lower()[:1]
        if choice == "r":
            return True
        if choice == "q":
            return False
        if choice == "e":
            result = edit_story(folder, folder.load(), ask_retry=ask_retry)
            if result.changed:
                print_plan(err_console, result.story)
            else:
                err_console.print("no changes")
            continue
        err_console.print("please answer r, e or q")
    return True
