"""Editing a story's plan: in the user's editor (validated, re-openable, never losing text) or by fields."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError, PlanValidationError
from ..fsutil import write_text_atomic
from .editview import parse_view, render_view
from .folder import StoryFolder
from .lock import holds_story_lock
from .plan import MAX_TOTAL_SECONDS, MIN_EVENT_SECONDS, Story

EDIT_FILE = "plan.edit.toml"


@dataclass(frozen=True)
class EditResult:
    story: Story
    changed: bool


def find_editor() -> list[str]:
    """``$VISUAL``, then ``$EDITOR``, then nano or vi; split like a shell would, but never run through one."""
    for variable in ("VISUAL", "EDITOR"):
        value = os.environ.get(variable, "").strip()
        if value:
            return shlex.split(value)
    for fallback in ("nano", "vi"):
        if shutil.which(fallback):
            return [fallback]
    raise InputError("no text editor found; set $EDITOR (e.g. export EDITOR=nano) or use `audiostory plan set`")


@holds_story_lock("plan edit")
def edit_story(
    folder: StoryFolder,
    story: Story,
    *,
    ask_retry: Callable[[str], bool],
    editor: list[str] | None = None,
) -> EditResult:
    """Open the plan in an editor until it validates or the user gives up.

    The text being edited lives in ``plan.edit.toml`` inside the story folder. On a bad edit ``ask_retry(error)``
    decides whether to re-open it; if not, the text stays in that file (nothing typed is lost) and the error is
    raised. On success the new plan is saved, the old one kept as plan.previous.json.
    """
    command = editor or find_editor()
    edit_path = folder.root / EDIT_FILE
    original = render_view(story)
    if not edit_path.is_file():  # otherwise an unfinished edit from last time is reopened as it is
        write_text_atomic(edit_path, original)
    while True:
        _run_editor(command, edit_path)
        text = edit_path.read_text(encoding="utf-8")
        try:
            new_story = parse_view(text, story)
        except PlanValidationError as exc:
            if ask_retry(str(exc)):
                continue
            raise PlanValidationError(
                f"{exc} (your text is kept in {edit_path}; run `audiostory plan edit {folder.root}` to continue)",
                field=exc.field,
                line=exc.line,
            ) from exc
        edit_path.unlink(missing_ok=True)
        if text == original or new_story.to_dict() == story.to_dict():
            return EditResult(story=story, changed=False)
        folder.save(new_story, keep_previous=True)
        return EditResult(story=new_story, changed=True)


def _run_editor(command: list[str], path: Path) -> None:
    try:
        completed = subprocess.run([*command, str(path)], check=False)  # no shell: the path is never parsed
    except FileNotFoundError as exc:
        raise InputError(f"editor {command[0]!r} not found; set $EDITOR to an installed editor") from exc
    if completed.returncode != 0:
        raise InputError(
            f"editor {command[0]!r} exited with status {completed.returncode}; the plan is unchanged "
            f"(your text is kept in {path})"
        )


@holds_story_lock("plan set")
def set_event_fields(
    folder: StoryFolder,
    index: int,
    *,
    caption: str | None = None,
    story_detail: str | None = None,
    duration: float | None = None,
    seed: int | None = None,
    stem: str | None = None,
    crossfade: float | None = None,
) -> Story:
    """Change fields of one event without an editor; later events re-flow; the old plan is kept."""
    story = folder.load()
    event = story.event(index)
    if event.status == "source":
        raise InputError(f"event {index} is the source audio of a continuation and cannot be changed")
    changes = {
        "caption": caption,
        "story_detail": story_detail,
        "duration": duration,
        "seed": seed,
        "stem": stem,
        "crossfade": crossfade,
    }
    if all(value is None for value in changes.values()):
        raise InputError(
            "nothing to change; give at least one of --caption, --story-detail, --duration, --seed, --stem, --crossfade"
        )
    if duration is not None and not MIN_EVENT_SECONDS <= duration <= MAX_TOTAL_SECONDS:
        raise InputError(
            f"--duration {duration:g} is out of range; an event lasts {MIN_EVENT_SECONDS:g} to "
            f"{MAX_TOTAL_SECONDS:g} seconds"
        )
    new_events = [replace(e, takes=list(e.takes)) for e in story.events]
    target = new_events[story.position(event)]  # a continued story numbers its events from 0
    for name, value in changes.items():
        if value is not None:
            setattr(target, name, value)
    new_story = replace(story, events=new_events)
    reflow_keeping_gaps(new_story, story)
    folder.save(new_story, keep_previous=True)
    return new_story


def reflow_keeping_gaps(new: Story, old: Story) -> None:
    """Re-place events after a duration change: each keeps the gap it had before it; total follows the end."""
    cursor = old.events[0].start
    previous_old_end = old.events[0].start
    for new_event, old_event in zip(new.events, old.events, strict=True):
        gap = max(0.0, old_event.start - previous_old_end)
        new_event.start = round(cursor + gap, 6)
        cursor = new_event.end
        previous_old_end = old_event.end
    trailing_silence = max(0.0, old.total_duration - old.events[-1].end)
    new.total_duration = round(cursor + trailing_silence, 6)
