"""Progress reporting from the library. The library calls a callback; only the CLI draws anything."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: ``stage`` is a short label such as "plan", "dit", "vae", "export"."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The default callback: report nothing."""
