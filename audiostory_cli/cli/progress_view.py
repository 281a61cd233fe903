"""Draws the library's progress callbacks with Rich on stderr: one bar per stage."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .common import err_console

STAGE_LABELS = {
    "load": "loading model",
    "plan": "planning (tokens)",
    "edit": "rewriting the plan (tokens)",
    "bridge": "bridge tokens",
    "dit": "rendering (DiT steps)",
    "vae": "decoding audio",
    "events": "events rendered",
    "read": "reading events",
    "master": "loudness and limiting",
    "write": "writing mix, stems, cues",
    "export": "mix and export",
}


def step_columns() -> tuple[ProgressColumn, ...]:
    return (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def byte_columns() -> tuple[ProgressColumn, ...]:
    """For downloads and hashing: sizes, speed and time left."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )


def training_columns() -> tuple[ProgressColumn, ...]:
    """Steps plus a free ``info`` field (loss, learning rate, tokens/s) and time left."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class RichProgress:
    """A ``ProgressFn`` that shows a bar per stage; use as a context manager.

    ``total=0`` means unknown (an indeterminate bar) when ``unknown_totals`` is set, else it counts as one step.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        columns: tuple[ProgressColumn, ...] | None = None,
        transient: bool = False,
        unknown_totals: bool = False,
    ) -> None:
        self._progress = Progress(
            *(columns or step_columns()), console=err_console, transient=transient, disable=not enabled
        )
        self._tasks: dict[str, TaskID] = {}
        self._unknown_totals = unknown_totals

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    @property
    def console(self) -> Any:
        return self._progress.console

    def __call__(self, stage: str, done: int, total: int) -> None:
        size: int | None = (total or None) if self._unknown_totals else max(total, 1)
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(STAGE_LABELS.get(stage, stage), total=size, info="")
        self._progress.update(self._tasks[stage], completed=done, total=size)

    def set_info(self, stage: str, info: str) -> None:
        """Update the free text shown by ``training_columns()`` for ``stage``."""
        if stage in self._tasks:
            self._progress.update(self._tasks[stage], info=info)
