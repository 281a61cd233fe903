"""`audiostory regen STORY_DIR EVENT...`: re-render chosen events only, keep the others, remix, re-deliver."""

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


def regen(
    story_dir: Annotated[Path, typer.Argument(help="The story folder (holds story.json).")],
    events: Annotated[list[int], typer.Argument(help="Event numbers to regenerate (1 = first).")],
    seed: Annotated[int | None, typer.Option(help="Render with this seed.")] = None,
    new_seed: Annotated[bool, typer.Option("--new-seed", help="Render with a new random seed (the default).")] = False,
    caption: Annotated[str | None, typer.Option(help="A new caption for the event(s).")] = None,
    duration: Annotated[float | None, typer.Option(help="A new duration in seconds; later events move.")] = None,
    stems: StemsOpt = False,
    cues: RecueOpt = None,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    as_json: JsonOpt = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Re-render EVENT(s) with a new seed, caption or duration; the previous take is kept as events/NN-*.takeK.wav."""
    from ..app.pipeline import regen_events
    from ..story import StoryFolder

    folder = StoryFolder(story_dir)
    with lock_story(folder, "regen", no_wait=no_wait):
        export_options = refresh_export_options(folder, folder.load().preset, stems=stems, cues=cues)  # first
        story = regen_events(folder, events, seed=seed, new_seed=new_seed, caption=caption, duration=duration)
        err_console.print(f"[dim]audiostory regen: {story_dir} {' '.join(map(str, events))}[/]")

        from .session import rerender_and_export

        rerender_and_export(
            folder, story.model, device, export_options=export_options, offload=offload, as_json=as_json
        )
