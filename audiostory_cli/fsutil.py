"""Atomic file writes and path safety. Nothing the user made is ever half-written or lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import AudiostoryError, InputError


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds.

    On any failure (including KeyboardInterrupt) the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; a user's files follow their umask
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise AudiostoryError(
                f"disk full while writing {target}; free some space and run the command again "
                "(previous files are intact)"
            ) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_bytes_atomic(target: Path, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: Path, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: Path, obj: Any) -> Path:
    return write_text_atomic(target, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_with_atomic(target: Path, writer: Callable[[Path], None]) -> Path:
    """Run ``writer(tmp_path)`` and move the result into place atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def safe_child(folder: Path, relative: str, *, what: str = "file name") -> Path:
    """Resolve ``relative`` inside ``folder`` and refuse anything that escapes it (``../``, absolute paths)."""
    if not relative or relative.strip() != relative:
        raise InputError(f"invalid {what} {relative!r}: it must be a plain relative path")
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise InputError(f"refusing {what} {relative!r}: it points outside {folder}")
    root = Path(folder).resolve()
    resolved = (root / candidate).resolve()
    if root != resolved and root not in resolved.parents:
        raise InputError(f"refusing {what} {relative!r}: it points outside {folder}")
    return resolved


def absolute(path: str | os.PathLike[str]) -> str:
    """A path for ``--json`` output: always absolute (normalised, symlinks kept), whatever the user typed."""
    return os.path.abspath(os.fspath(path))
