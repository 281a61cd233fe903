"""The story folder on disk: story.json, plan.previous.json, events/, mix.wav, stems/, cues/."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputExistsError, PlanValidationError, StoryError
from ..fsutil import safe_child, write_text_atomic
from .lock import LOCK_FILE, story_lock
from .plan import Event, Story, event_slug

STORY_FILE = "story.json"
PREVIOUS_FILE = "plan.previous.json"


@dataclass(frozen=True)
class StoryFolder:
    root: Path

    # -- paths ---------------------------------------------------------------------------------------------

    @property
    def story_path(self) -> Path:
        return self.root / STORY_FILE

    @property
    def previous_path(self) -> Path:
        return self.root / PREVIOUS_FILE

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    @property
    def stems_dir(self) -> Path:
        return self.root / "stems"

    @property
    def stem_groups_dir(self) -> Path:
        """One stem per stem group (``--stem-groups``); apart from ``stems/`` so each folder sums to the mix."""
        return self.root / "stem-groups"

    @property
    def cues_dir(self) -> Path:
        return self.root / "cues"

    @property
    def mix_path(self) -> Path:
        return self.root / "mix.wav"

    def event_file_name(self, event: Event) -> str:
        """``events/03-car-skids-on.s7.wav``; relative, as stored in story.json."""
        return f"events/{event.index:02d}-{event_slug(event.caption)}.s{event.seed}.wav"

    def resolve(self, relative: str) -> Path:
        """Absolute path of a file named in story.json, refusing anything outside the folder."""
        return safe_child(self.root, relative, what="story file name")

    def content(self) -> list[Path]:
        """What the folder holds, without its lock file (which is never story content)."""
        return [p for p in self.root.iterdir() if p.name != LOCK_FILE] if self.root.is_dir() else []

    def locked(
        self, command: str, *, wait: bool = True, create: bool = False, on_wait: Callable[[str], None] | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """The folder's exclusive lock for a command that changes it (see ``story.lock.story_lock``).

        Without ``create`` the folder must already hold a story: no lock file is ever left in another folder.
        """
        if not create:
            self.check_is_story()
        return story_lock(self.root, command, wait=wait, create=create, on_wait=on_wait)

    def needs_render(self, story: Story, event: Event) -> bool:
        """Stale in the plan, or rendered but its file is gone (``render`` restores it with the stored seed)."""
        if story.is_stale(event):
            return True
        return event.status == "rendered" and event.file is not None and not self.resolve(event.file).is_file()

    # -- state ---------------------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.story_path.is_file()

    def check_is_story(self) -> None:
        """Raise a ``StoryError`` saying how to make one unless the folder holds a story.json."""
        if not self.root.exists():
            raise StoryError(f"story folder {self.root} does not exist; create one with `audiostory tell`")
        if not self.root.is_dir():
            raise StoryError(f"{self.root} is a file, not a story folder")
        if not self.story_path.is_file():
            raise StoryError(
                f"{self.root} has no {STORY_FILE}; it is not a story folder (create one with `audiostory tell`)"
            )

    def load(self) -> Story:
        self.check_is_story()
        try:
            text = self.story_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoryError(f"cannot read {self.story_path}: {exc}") from exc
        try:
            story = Story.from_json(text)
        except PlanValidationError as exc:
            raise PlanValidationError(f"{self.story_path}: {exc}", field=exc.field, line=exc.line) from exc
        for event in story.events:
            for name in ([event.file] if event.file else []) + event.takes:
                self.resolve(name)
        return story

    def save(self, story: Story, *, keep_previous: bool = False) -> Path:
        """Validate and write story.json atomically; with ``keep_previous`` the old plan becomes plan.previous.json."""
        story.validate()
        self.root.mkdir(parents=True, exist_ok=True)
        if keep_previous and self.story_path.is_file():
            write_text_atomic(self.previous_path, self.story_path.read_text(encoding="utf-8"))
        return write_text_atomic(self.story_path, story.to_json())

    def prepare_new(self, *, force: bool) -> None:
        """Make sure a new story may be written here: empty, missing, or an existing story with ``force``."""
        self.check_new(force=force)
        self.root.mkdir(parents=True, exist_ok=True)

    def check_new(self, *, force: bool) -> None:
        """``prepare_new``'s checks alone: nothing is created."""
        if self.root.exists() and not self.root.is_dir():
            raise OutputExistsError(f"--out {self.root} is a file; choose a folder path")
        if self.root.is_dir() and self.content():
            if not self.exists():
                raise OutputExistsError(
                    f"--out {self.root} is not empty and is not a story folder; choose another folder"
                )
            if not force:
                raise OutputExistsError(
                    f"{self.root} already holds a story; use --force to replace it (the old plan is kept as "
                    f"{PREVIOUS_FILE}) or choose another --out"
                )
