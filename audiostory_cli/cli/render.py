"""`audiostory render STORY_DIR`: render what is missing or stale (after a hand edit), then deliver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import err_console
from .options import (
    DeviceOpt,
    JsonOpt,
    NoWaitOpt,
    OffloadOpt,
    RecueOpt,
    StemsOpt,
    lock_story,
    refresh_export_options,
)


def render(
    story_dir: Annotated[Path, typer.Argument(help="The story folder (holds story.json).")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to render with (default: the story's model).")
    ] = None,
    stems: StemsOpt = False,
    cues: RecueOpt = None,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    as_json: JsonOpt = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Render every event that has no audio yet or whose caption, duration, seed or settings changed."""
    from ..story import StoryFolder
    from ..weights.registry import resolve_model_ref

    folder = StoryFolder(story_dir)
    with lock_story(folder, "render", no_wait=no_wait):
        story = folder.load()
        export_options = refresh_export_options(folder, story.preset, stems=stems, cues=cues)  # checked before work
        if model:
            resolve_model_ref(model)  # an unknown --model changes nothing in the folder
        err_console.print(f"[dim]audiostory render: {story_dir}[/]")
        if model and model != story.model:
            story.model = model  # every event's render hash names the model: all become stale
            folder.save(story, keep_previous=True)
        stale = [e.index for e in story.events if folder.needs_render(story, e)]
        err_console.print(f"{len(stale)} of {len(story.events)} events to render" if stale else "all events rendered")

        from .session import rerender_and_export

        # nothing stale: deliver again without loading a model
        rerender_and_export(
            folder,
            story.model,
            device,
            export_options=export_options,
            offload=offload,
            as_json=as_json,
            needs_model=bool(stale),
        )
