"""Where bundled data (model registry, presets) and the weight cache live."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Folder of bundled data: ``models`` or ``presets``.

    A wheel ships them as ``audiostory_cli/_data/<name>``; a source checkout (editable install) has them at the
    repository root.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled data folder {name!r} not found; reinstall audiostory")


def cache_dir() -> Path:
    """Weight and download cache: ``$AUDIOSTORY_CACHE`` or ``$XDG_CACHE_HOME/audiostory`` (``~/.cache``)."""
    override = os.environ.get("AUDIOSTORY_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "audiostory"
