"""Domain errors. The library raises these; the CLI edge turns them into one red line and an exit code.

Every message should say what went wrong, where, and how to fix it, in one line.

Exit codes: 2 for a usage error (an option, argument or name that is invalid or unknown: ``UsageError``,
``UnknownModelError``, click's own), 1 for everything else (missing or damaged files, failed work), 130 when
interrupted. README.md ("Commands") documents this.
"""

from __future__ import annotations

from collections.abc import Sequence


class AudiostoryError(Exception):
    """Base class for every error a user can cause or fix."""

    exit_code = 1


class UsageError(AudiostoryError):
    """A flag or argument is invalid (exit code 2, like a Click usage error)."""

    exit_code = 2


class InputError(AudiostoryError):
    """A value or file the user gave is unusable."""


class AudioInputError(InputError):
    """An audio file cannot be read or is out of the supported range."""


class StoryError(AudiostoryError):
    """A story folder or its story.json is missing, corrupt or inconsistent."""


class PlanValidationError(StoryError):
    """A plan failed validation; names the event and field, and the line when parsed from text."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.line = line


class OutputExistsError(AudiostoryError):
    """Refusing to overwrite something the user made."""


class ModelError(AudiostoryError):
    """A model cannot be found, built or loaded."""


class UnknownModelError(ModelError):
    """The model name is neither registered nor a model folder (a usage error: exit code 2)."""

    exit_code = 2


class WeightsError(ModelError):
    """Weight files are missing, corrupt or do not match the architecture."""


class CheckpointKeyError(WeightsError):
    """Strict loading found missing, unexpected or mis-shaped keys; the fields list them (full key names)."""

    def __init__(
        self,
        message: str,
        *,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Sequence[str] = (),
        conflicts: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.missing = list(missing)  # keys the model has and the checkpoint lacks
        self.unexpected = list(unexpected)  # keys the checkpoint has and the model does not (nor ignores)
        self.mismatched = list(mismatched)  # keys whose shapes differ
        self.conflicts = list(conflicts)  # tied weights that differ in the checkpoint


class OfflineError(ModelError):
    """Weights are not cached and the hub cannot be reached."""


class DeviceError(AudiostoryError):
    """The requested compute device is not available."""


class TrainingError(AudiostoryError):
    """A training run cannot start or continue."""


class FolderBusyError(AudiostoryError):
    """Another command holds the story folder's lock (``--no-wait``); exit code 75, "try again later"."""

    exit_code = 75


class WaitInterrupted(AudiostoryError):
    """Ctrl-C while waiting for a story folder's lock; nothing was changed (exit code 130, like SIGINT)."""

    exit_code = 130
