"""`audiostory plan show|edit|set`: look at and change a story's plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import ErrorHandlingGroup, err_console, out_console
from .options import NoWaitOpt, lock_story
from .session import ask_retry

app = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True, help="Show or change a story's plan.")

StoryDir = Annotated[Path, typer.Argument(help="The story folder (holds story.json).")]


@app.command("show")
def show(
    story_dir: StoryDir,
    fps: Annotated[float, typer.Option(help="Frame rate for the timecode column.")] = 25.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print story.json instead of the table.")] = False,
    history: Annotated[
        bool, typer.Option("--history", help="List the edits (`audiostory edit`) of the story, oldest first.")
    ] = False,
) -> None:
    """Print the plan as a table: index, start–end, timecode, duration, caption, story detail, seed, status."""
    from ..story import StoryFolder
    from ..story.timecode import frame_rate
    from .tables import print_plan

    folder = StoryFolder(story_dir)
    story = folder.load()
    if history:
        _show_history(folder, as_json=as_json)
        return
    if as_json:
        out_console.print_json(story.to_json())
        return
    frame_rate(fps)  # validates --fps
    print_plan(out_console, story, fps=fps)


def _show_history(folder: object, *, as_json: bool) -> None:
    import json

    from rich.table import Table
    from rich.text import Text

    from ..story import StoryFolder
    from ..story.diff import pair_events, story_changes, summary
    from ..story.history import load_history

    assert isinstance(folder, StoryFolder)
    turns = load_history(folder)
    rows = []
    for turn in turns:
        before, after = turn.before_story(), turn.after_story()
        old = [e.caption for e in before.events if e.status != "source"]
        new = [e.caption for e in after.events if e.status != "source"]
        pairs, moved = pair_events(old, new)
        rows.append((turn, summary(story_changes(before, after, pairs, moved)).split(";")[0]))
    if as_json:
        out_console.print_json(
            json.dumps(
                [
                    {
                        "turn": n,
                        "time": t.time,
                        "instruction": t.instruction,
                        "change": change,
                        "events_before": len(t.before["events"]),
                        "events_after": len(t.after["events"]),
                    }
                    for n, (t, change) in enumerate(rows, start=1)
                ]
            )
        )
        return
    if not turns:
        err_console.print(f'no edits yet; make one with: audiostory edit {folder.root} "add a siren at the end"')
        return
    table = Table(title=Text(f"edits of {folder.root}"), title_justify="left", expand=False)
    table.add_column("turn", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("instruction", overflow="fold", ratio=3)
    table.add_column("change", overflow="fold", ratio=2)
    for number, (turn, change) in enumerate(rows, start=1):
        table.add_row(str(number), turn.time.replace("T", " ")[:19], Text(turn.instruction), change)
    from .tables import print_table

    print_table(out_console, table)


@app.command("edit")
def edit(story_dir: StoryDir, no_wait: NoWaitOpt = False) -> None:
    """Open the plan in $VISUAL/$EDITOR as TOML; it is validated on save and re-opened on errors."""
    from ..story import StoryFolder
    from ..story.edit import edit_story
    from .tables import print_plan

    folder = StoryFolder(story_dir)
    with lock_story(folder, "plan edit", no_wait=no_wait):  # held while the editor is open: nothing can change
        result = edit_story(folder, folder.load(), ask_retry=ask_retry)  # the plan under the user's hands
    if not result.changed:
        err_console.print("no changes")
        return
    print_plan(err_console, result.story)
    out_console.print(str(folder.story_path))


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
            folder,
            event,
            caption=caption,
            story_detail=story_detail,
            duration=duration,
            seed=seed,
            stem=stem,
            crossfade=crossfade,
        )
    err_console.print(f"event {event} updated; total {story.total_duration:.2f} s")
    out_console.print(str(folder.story_path))
