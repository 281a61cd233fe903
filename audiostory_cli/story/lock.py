"""An exclusive lock on a story folder, held by every command that changes it for its whole read-modify-write.

The lock is the OS's advisory lock (``flock``) on ``.audiostory.lock`` inside the folder, so it dies with its
process: a ``kill -9`` leaves no stale lock. The file also names the holder (command, pid, host) so that a second
command can say what it is waiting for. It is never story content: nothing that lists or delivers a folder's files
looks at it.

Use it around everything a command reads and writes::

    with story_lock(folder.root, "render", wait=not no_wait, on_wait=print_line):
        ...

Nested use in the same thread (a command holding the lock calls a library function that takes it too) is
re-entrant; another thread or process waits. While the lock is first taken, temporary files that a killed
writer left behind (``.NAME.XXXXXXXX.tmp`` from ``fsutil.atomic_path``) are removed: holding the folder's only
lock, no live audiostory writer can own them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import platform
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from ..errors import FolderBusyError, StoryError, WaitInterrupted

LOCK_FILE = ".audiostory.lock"
SWEPT_DIRS = (".", "events", "stems", "cues", "source")  # where a story's atomic writes put their temp files
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # fsutil.atomic_path: mkstemp(prefix=".NAME.", suffix=".tmp")

# (thread id, st_dev, st_ino) of a held lock file -> (its descriptor, nesting depth)
_held: dict[tuple[int, int, int], tuple[int, int]] = {}
_held_guard = threading.Lock()
log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Holder:
    """Who holds a folder's lock, as its lock file says."""

    command: str
    pid: int
    host: str

    def describe(self, root: Path | None = None) -> str:
        """``the render of chase by pid 4711`` (``on HOST`` when it runs on another machine)."""
        of = "" if root is None else f" of {root}"
        on = "" if self.host == platform.node() else f" on {self.host}"
        return f"the {self.command}{of} by pid {self.pid}{on}"


def read_holder(root: Path) -> Holder | None:
    """The holder named in ``root``'s lock file, or None when it names none (free, or just being taken)."""
    try:
        raw = json.loads((Path(root) / LOCK_FILE).read_text(encoding="utf-8"))
        return Holder(command=str(raw["command"]), pid=int(raw["pid"]), host=str(raw["host"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def story_lock(
    root: Path,
    command: str,
    *,
    wait: bool = True,
    create: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the exclusive lock on story folder ``root`` for the block; ``command`` names the holder for others.

    When another process holds it: with ``wait`` call ``on_wait(line)`` once and wait (Ctrl-C stops waiting and
    raises ``WaitInterrupted``; nothing is changed), else raise ``FolderBusyError`` at once. ``create`` makes a
    missing folder (``tell``, ``continue``); otherwise a missing folder is a ``StoryError``.
    """
    root = Path(root)
    fd, key = _acquire(root, command, wait=wait, create=create, on_wait=on_wait)
    try:
        yield
    finally:
        _release(fd, key)


def _acquire(
    root: Path, command: str, *, wait: bool, create: bool, on_wait: Callable[[str], None] | None
) -> tuple[int, tuple[int, int, int]]:
    announced = False
    while True:
        fd = _open_lock_file(root, create=create)
        info = os.fstat(fd)
        key = (threading.get_ident(), info.st_dev, info.st_ino)
        with _held_guard:
            entry = _held.get(key)
            # Nested use only if this thread still holds it through an open descriptor on this very file (a held
            # descriptor is open, so the one just opened cannot have its number).
            if entry is not None and entry[0] != fd and _same_file(entry[0], info):
                _held[key] = (entry[0], entry[1] + 1)
                os.close(fd)
                return -1, key
            _held.pop(key, None)  # none, or stale: its descriptor is closed or names another file (inode reused)
        import fcntl

        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(root)
                if not wait:
                    doing = holder.describe() if holder else "another audiostory command"
                    raise FolderBusyError(
                        f"{root} is busy: {doing} is changing it; wait for it to finish, or run again without "
                        "--no-wait to wait for it"
                    ) from None
                if not announced and on_wait is not None:
                    doing = holder.describe(root) if holder else f"another audiostory command on {root}"
                    on_wait(f"waiting for {doing} to finish… (Ctrl-C stops waiting and changes nothing)")
                    announced = True
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except KeyboardInterrupt:
                    raise WaitInterrupted(f"stopped waiting for {root}; nothing was changed") from None
        except BaseException:
            os.close(fd)
            raise
        if not _still_the_lock_file(root, info):  # removed or replaced while we waited: lock the one there now
            os.close(fd)
            continue
        _claim(fd, command)
        with _held_guard:
            _held[key] = (fd, 1)
        try:
            sweep_temp_files(root)
        except BaseException:
            _release(fd, key)
            raise
        return fd, key


def _same_file(fd: int, info: os.stat_result) -> bool:
    """Whether descriptor ``fd`` is still open on the file ``info`` describes."""
    try:
        now = os.fstat(fd)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _open_lock_file(root: Path, *, create: bool) -> int:
    if create:
        if root.exists() and not root.is_dir():
            raise StoryError(f"{root} is a file, not a story folder; choose a folder path")
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        if root.exists():
            raise StoryError(f"{root} is a file, not a story folder")
        raise StoryError(f"story folder {root} does not exist; create one with `audiostory tell`")
    path = root / LOCK_FILE
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoryError(
                f"cannot lock {root} ({exc.strerror}): a command that changes a story needs to write in its folder"
            ) from exc
        raise


def _still_the_lock_file(root: Path, info: os.stat_result) -> bool:
    try:
        now = os.stat(root / LOCK_FILE)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _claim(fd: int, command: str) -> None:
    """Name this process in the lock file (best effort: the lock itself is the flock, not the text)."""
    text = json.dumps({"command": command, "pid": os.getpid(), "host": platform.node()}) + "\n"
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8"), 0)


def _release(fd: int, key: tuple[int, int, int]) -> None:
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[1] > 1:
            _held[key] = (entry[0], entry[1] - 1)
            return
        _held.pop(key, None)
    if fd < 0:
        return
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # names no holder once free
    os.close(fd)  # closing the only descriptor releases the flock


def sweep_temp_files(root: Path) -> list[Path]:
    """Remove temporary files of atomic writes that a killed process left in the story folder."""
    removed: list[Path] = []
    for name in SWEPT_DIRS:
        folder = Path(root) / name
        if folder.is_symlink() or not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if _TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def is_lock_file(path: Path) -> bool:
    return Path(path).name == LOCK_FILE


def holds_story_lock(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a library function whose first argument is a story folder (``StoryFolder`` or path) hold its lock.

    For Python callers of the API: a CLI command already holds the lock, so this nests (re-entrant). A folder
    without story.json is left alone (the function reports that itself, and no lock file lands in it).
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def locked(*args: P.args, **kwargs: P.kwargs) -> R:
            root = Path(getattr(args[0], "root", args[0]))  # type: ignore[arg-type]
            if not (root / "story.json").is_file():
                return function(*args, **kwargs)
            with story_lock(root, command, on_wait=log.warning):
                return function(*args, **kwargs)

        return locked

    return decorate
