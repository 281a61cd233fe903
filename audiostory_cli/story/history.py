"""The edit history of a story folder: ``edits.json``, one turn per applied ``audiostory edit``.

A turn keeps the instruction, the plan before and after, the time, and where the edit moved the renders it made
stale (``moved``: the old event file → the take it became), so that ``edit --undo`` can restore the plan
before and its audio without rendering. The file is rewritten atomically on every change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoryError
from ..fsutil import write_text_atomic
from .folder import StoryFolder
from .plan import Story

HISTORY_FILE = "edits.json"
HISTORY_VERSION = 1


@dataclass(frozen=True)
class EditTurn:
    instruction: str
    time: str  # ISO 8601, UTC
    before: dict[str, Any]  # Story.to_dict() before the edit
    after: dict[str, Any]  # ... and as applied (before any rendering)
    moved: dict[str, str] = field(default_factory=dict)  # event file -> take it was moved to

    def to_dict(self) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "time": self.time,
            "before": self.before,
            "after": self.after,
            "moved": dict(self.moved),
        }

    def before_story(self) -> Story:
        return Story.from_dict(self.before)

    def after_story(self) -> Story:
        return Story.from_dict(self.after)


def history_path(folder: StoryFolder) -> Any:
    return folder.root / HISTORY_FILE


def load_history(folder: StoryFolder) -> list[EditTurn]:
    """The turns, oldest first; no file means no edits yet."""
    path = history_path(folder)
    if not path.is_file():
        return []
    where = f"{path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoryError(f"cannot read the edit history {where}: {exc}; move it away to start a new history") from exc
    if not isinstance(data, dict) or data.get("version") != HISTORY_VERSION or not isinstance(data.get("turns"), list):
        raise StoryError(f"{where} is not an audiostory edit history (version {HISTORY_VERSION}); move it away")
    turns = []
    for number, raw in enumerate(data["turns"], start=1):
        try:
            turn = EditTurn(
                instruction=str(raw["instruction"]),
                time=str(raw["time"]),
                before=dict(raw["before"]),
                after=dict(raw["after"]),
                moved={str(k): str(v) for k, v in dict(raw.get("moved", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoryError(f"{where}: turn {number} is incomplete ({exc}); move the file away") from exc
        for name in [*turn.moved, *turn.moved.values()]:
            folder.resolve(name)  # a history naming files outside the folder is refused
        turns.append(turn)
    return turns


def save_history(folder: StoryFolder, turns: list[EditTurn]) -> None:
    text = json.dumps({"version": HISTORY_VERSION, "turns": [t.to_dict() for t in turns]}, indent=2, ensure_ascii=False)
    write_text_atomic(history_path(folder), text + "\n")
