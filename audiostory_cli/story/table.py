"""The plan as a Rich table: what the user reviews before rendering.

Identifier columns (event number, times, seed, status, group) are ``no_wrap``: the CLI prints them whole at any
width (see ``cli/tables.py``). ``compact=True`` is the layout for a narrow terminal: the timecode goes under the
times and the story detail under the caption, so an 80-column terminal keeps room for the words.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..text import one_line
from .plan import Story
from .timecode import smpte

_STATUS_STYLE = {"planned": "yellow", "rendered": "green", "source": "cyan"}


def plan_table(story: Story, *, fps: float = 25.0, title: str | None = None, compact: bool = False) -> Table:
    table = Table(
        title=Text(title or f"{one_line(story.prompt)[:80]}  ·  {story.total_duration:.2f} s  ·  {story.model}"),
        title_justify="left",
        show_lines=compact,
        expand=False,
    )
    groups = not compact or len({e.stem for e in story.events}) > 1  # a narrow table spends no room on one group
    table.add_column("#", justify="right", style="bold", no_wrap=True)
    table.add_column("start–end (s)", justify="right", no_wrap=True)
    if not compact:
        table.add_column("timecode", no_wrap=True, style="dim")
    table.add_column("dur", justify="right", no_wrap=True)
    table.add_column("caption")
    if not compact:
        table.add_column("story detail", style="dim")
    if groups and not compact:
        table.add_column("group", no_wrap=True)
    table.add_column("seed", justify="right", no_wrap=True)
    table.add_column("status\ngroup" if compact and groups else "status", no_wrap=True)
    for event in story.events:
        status = event.status
        if status == "rendered" and story.is_stale(event):
            status_text = "[yellow]stale[/]"
        else:
            status_text = f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"
        times = f"{event.start:.2f}–{event.end:.2f}"
        caption, detail = one_line(event.caption), one_line(event.story_detail)
        if compact:
            cells: list[str | Text] = [
                Text(f"{times}\n") + Text(smpte(event.start, fps), style="dim"),
                f"{event.duration:.2f}",
                _caption_with_detail(caption, detail),
            ]
        else:
            cells = [times, smpte(event.start, fps), f"{event.duration:.2f}", Text(caption), Text(detail)]
        row = [str(event.index), *cells]
        if groups and not compact:
            row.append(Text(event.stem))
        if compact and groups:  # the group under the status, so a narrow table keeps room for the caption
            table.add_row(*row, str(event.seed), Text.from_markup(status_text) + Text("\n" + event.stem))
        else:
            table.add_row(*row, str(event.seed), status_text)
    return table


def render_notes(story: Story) -> list[str]:
    """How the plan will be rendered, in plain lines: where the bridge states come from, the canvas, the join."""
    planned = story.planned_events()
    first = planned[0].index if planned else 1
    keep = story.unedited_events()
    if story.generated is None:
        bridge = "re-serialised plan (no generated tokens stored with this story)"
    elif keep >= len(planned):
        bridge = "the reasoner's own tokens for every event (as the official inference)"
    elif keep == 0:
        bridge = "re-serialised plan for every event (the plan was edited after planning)"
    else:
        last_kept = first + keep - 1
        bridge = (
            f"the reasoner's own tokens for events {first}-{last_kept}; re-serialised plan from event "
            f"{last_kept + 1} on (edited after planning)"
        )
    settings = story.settings
    canvas = (
        "fixed: the whole 30 s DiT window, trimmed (official)"
        if settings.canvas == "fixed"
        else "sized to each event (opt-in; not validated on the released weights)"
    )
    shape = "linear" if settings.crossfade_shape == "linear" else "equal-power"
    official = " (official)" if (settings.crossfade, shape) == (3.0, "linear") else ""
    return [
        f"bridge: {bridge}",
        f"canvas: {canvas}",
        f"join: {settings.crossfade:g} s {shape} crossfade{official}; clips include the crossfade tail",
    ]


def _caption_with_detail(caption: str, detail: str) -> Text:
    text = Text(caption)
    if detail and detail != caption:
        text.append("\n" + detail, style="dim")
    return text
