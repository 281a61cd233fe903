"""Draws the library's progress callbacks with Rich on stderr: one bar per stage."""

from __future__ import annotations

from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .common import err_console

STAGE_LABELS = {
    "load": "loading model",
    "plan": "planning (tokens)",
    "bridge": "bridge tokens",
    "dit": "rendering (DiT steps)",
    "vae": "decoding audio",
    "write": "writing events",
    "export": "mix and export",
}


class RichProgress:
    """A ``ProgressFn`` that shows a bar per stage; use as a context manager."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=False, disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def __call__(self, stage: str, done: int, total: int) -> None:
        label = STAGE_LABELS.get(stage, stage)
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(label, total=max(total, 1))
        task = self._tasks[stage]
        self._progress.update(task, completed=done, total=max(total, 1))
