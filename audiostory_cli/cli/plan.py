"""`audiostory plan show|edit|set`: look at and change a story's plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import ErrorHandlingGroup, err_console, is_interactive, out_console
from .options import NoWaitOpt, lock_story

app = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True, help="Show or change a story's plan.")

StoryDir = Annotated[Path, typer.Argument(help="The story folder (holds story.json).")]


@app.command("show")
def show(
    story_dir: StoryDir,
    fps: Annotated[float, typer.Option(help="Frame rate for the timecode column.")] = 25.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print story.json instead of the table.")] = False,
) -> None:
    """Print the plan as a table: index, start–end, timecode, duration, caption, story detail, seed, status."""
    from ..story import StoryFolder
    from ..story.timecode import frame_rate
    from .tables import print_plan

    story = StoryFolder(story_dir).load()
    if as_json:
        out_console.print_json(story.to_json())
        return
    frame_rate(fps)  # validates --fps
    print_plan(out_console, story, fps=fps)


@app.command("edit")
def edit(story_dir: StoryDir, no_wait: NoWaitOpt = False) -> None:
    """Open the plan in $VISUAL/$EDITOR as TOML; it is validated on save and re-opened on errors."""
    from ..story import StoryFolder
    from ..story.edit import edit_story
    from .tables import print_plan

    folder = StoryFolder(story_dir)
    with lock_story(folder, "plan edit", no_wait=no_wait):  # held while the editor is open: nothing can change
        result = edit_story(folder, folder.load(), ask_retry=_ask_retry)  # the plan under the user's hands
    if not result.changed:
        err_console.print("no changes")
        return
    print_plan(err_console, result.story)
    out_console.print(str(folder.story_path))


def _ask_retry(message: str) -> bool:
    if not is_interactive():
        return False  # no question to ask: the error is reported once, by the caller
    err_console.print(f"[bold red]invalid plan:[/] {_escape(message)}")
    return typer.confirm("Re-open the editor to fix it?", default=True, err=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command("set")
def set_fields(
    story_dir: StoryDir,
    event: Annotated[int, typer.Argument(help="Event number (1 = first).")],
    caption: Annotated[str | None, typer.Option(help="New caption.")] = None,
    story_detail: Annotated[str | None, typer.Option(help="New story detail.")] = None,
    duration: Annotated[float | None, typer.Option(help="New duration in seconds; later events move.")] = None,
    seed: Annotated[int | None, typer.Option(help="New seed.")] = None,
    stem: Annotated[str | None, typer.Option(help="Stem group, e.g. fx, amb, mx.")] = None,
    crossfade: Annotated[float | None, typer.Option(help="Crossfade after this event, seconds.")] = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Change one event's fields without an editor (for scripts). The previous plan is kept."""
    from ..story import StoryFolder
    from ..story.edit import set_event_fields

    folder = StoryFolder(story_dir)
    with lock_story(folder, "plan set", no_wait=no_wait):
        story = set_event_fields(
            folder, event, caption=caption, story_detail=story_detail, duration=duration, seed=seed, stem=stem,
            crossfade=crossfade,
        )
    err_console.print(f"event {event} updated; total {story.total_duration:.2f} s")
    out_console.print(str(folder.story_path))
