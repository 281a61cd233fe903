"""The model registry: one TOML file per model in the bundled ``models/`` folder, read into frozen dataclasses.

A model is made of *parts*; each part is one hub repository at one revision with the files we need from it, its
licence and its role. Revisions are pinned to a commit where one is known; ``pinned = false`` says honestly that a
part follows a branch (``main``), and ``models list``/``verify`` show it. Sizes and sha256 are recorded where known
(``None`` otherwise); downloads are verified against them, or against the hub's own LFS hash when they are unknown.

Kinds: ``hub`` (downloaded), ``bundled`` (a model folder shipped inside the package), ``builtin`` (built in memory,
e.g. ``tiny-random``), ``folder`` (any model folder given by path: a converted checkpoint or a training run).

Light module: no torch; ``doctor`` imports it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError, UnknownModelError
from ..resources import data_dir

ModelKind = Literal["hub", "bundled", "builtin", "folder"]
KINDS: tuple[str, ...] = ("hub", "bundled", "builtin", "folder")
SIDECAR_NAME = "audiostory.json"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class FileSpec:
    """One file of a part: its path inside the repository, and its size and sha256 when known."""

    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class PartSpec:
    """One hub repository at one revision, and the files we take from it."""

    name: str
    repo_id: str
    revision: str
    pinned: bool
    files: tuple[FileSpec, ...]
    licence: str
    role: str
    optional: bool = False  # fetched only with ``download --with-optional`` (e.g. training initialisation)

    @property
    def known_size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def size_complete(self) -> bool:
        return all(f.size is not None for f in self.files)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: what it is made of and under which licences."""

    name: str
    description: str
    kind: ModelKind
    licence: str
    dims: str = "full"  # "full" or "tiny": which ``config`` preset builds its modules
    parts: tuple[PartSpec, ...] = ()
    folder: str | None = None  # for ``bundled``: the model folder inside the bundled data folder
    approx_size: str | None = None  # shown while some file sizes are unknown (an estimate, never verified)
    notes: tuple[str, ...] = ()
    source: Path | None = field(default=None, compare=False)  # the TOML file it came from

    @property
    def pinned(self) -> bool:
        return all(p.pinned for p in self.parts)

    def required_parts(self, *, include_optional: bool = False) -> tuple[PartSpec, ...]:
        return tuple(p for p in self.parts if include_optional or not p.optional)

    def known_size(self, *, include_optional: bool = False) -> tuple[int, bool]:
        """(bytes of the files whose size is known, whether every size is known)."""
        parts = self.required_parts(include_optional=include_optional)
        return sum(p.known_size for p in parts), all(p.size_complete for p in parts)

    def part(self, name: str) -> PartSpec:
        for p in self.parts:
            if p.name == name:
                return p
        raise ModelError(f"model {self.name!r} has no part {name!r}; parts: {', '.join(p.name for p in self.parts)}")


# ---------------------------------------------------------------------------------------------------------------
# Reading the TOML files


def registry_dir() -> Path:
    return data_dir("models")


def list_models() -> list[ModelSpec]:
    """Every registered model, sorted by name. A broken TOML file is an error naming the file."""
    specs = [load_spec_file(path) for path in sorted(registry_dir().glob("*.toml"))]
    seen: dict[str, Path | None] = {}
    for spec in specs:
        if spec.name in seen:
            raise ModelError(f"model {spec.name!r} is registered twice ({seen[spec.name]} and {spec.source})")
        seen[spec.name] = spec.source
    return sorted(specs, key=lambda s: s.name)


def get_model_spec(name: str) -> ModelSpec:
    for spec in list_models():
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in list_models())
    raise UnknownModelError(
        f"unknown model {name!r}; registered models: {known} (a model folder path with {SIDECAR_NAME} is also accepted)"
    )


def resolve_model_ref(ref: str | Path) -> ModelSpec | Path:
    """A registered name gives its spec; a folder holding ``audiostory.json`` gives that folder."""
    text = str(ref)
    names = {s.name: s for s in list_models()}
    if text in names:
        return names[text]
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / SIDECAR_NAME).is_file():
            return path.resolve()
        raise UnknownModelError(
            f"{path} is a folder but not a model folder (no {SIDECAR_NAME}); give a registered model name "
            f"({', '.join(names)}) or a folder written by `audiostory models convert` or `audiostory train`"
        )
    if path.exists():
        raise UnknownModelError(f"{path} is a file, not a model folder; give the folder that holds {SIDECAR_NAME}")
    raise UnknownModelError(
        f"unknown model {text!r}; registered models: {', '.join(names)} (a model folder path with {SIDECAR_NAME} "
        "is also accepted)"
    )


OFFICIAL_MODEL = "audiostory-3b"
DEMO_MODEL = "demo"


def load_spec_file(path: Path) -> ModelSpec:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"model registry file {path} is not valid TOML: {exc}") from exc
    return parse_spec(data, source=Path(path))


_MODEL_KEYS = {"name", "description", "kind", "licence", "dims", "parts", "folder", "notes", "approx_size"}
_PART_KEYS = {"name", "repo", "revision", "pinned", "files", "licence", "role", "optional"}
_FILE_KEYS = {"path", "size", "sha256"}


def parse_spec(data: dict[str, Any], *, source: Path | None = None) -> ModelSpec:
    """Validate one registry entry; every problem names the file and the field."""
    where = str(source) if source else "model spec"
    _check_keys(data, _MODEL_KEYS, where)
    name = _required_str(data, "name", where)
    if not NAME_RE.match(name):
        raise ModelError(f"{where}: model name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    kind = _required_str(data, "kind", where)
    if kind not in KINDS:
        raise ModelError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
    dims = str(data.get("dims", "full"))
    if dims not in ("full", "tiny"):
        raise ModelError(f"{where}: dims {dims!r} must be 'full' or 'tiny'")
    parts = tuple(_parse_part(p, f"{where} [[parts]] #{i + 1}") for i, p in enumerate(data.get("parts", [])))
    if kind == "hub" and not parts:
        raise ModelError(f"{where}: a hub model needs at least one [[parts]] table")
    if len({p.name for p in parts}) != len(parts):
        raise ModelError(f"{where}: part names must be unique")
    folder = data.get("folder")
    if kind == "bundled" and not folder:
        raise ModelError(f'{where}: a bundled model needs folder = "<folder inside models/>"')
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ModelError(f"{where}: notes must be a list of strings")
    return ModelSpec(
        name=name,
        description=_required_str(data, "description", where),
        kind=kind,  # type: ignore[arg-type]
        licence=_required_str(data, "licence", where),
        dims=dims,
        parts=parts,
        folder=str(folder) if folder else None,
        approx_size=str(data["approx_size"]) if data.get("approx_size") else None,
        notes=tuple(notes),
        source=source,
    )


def _parse_part(data: Any, where: str) -> PartSpec:
    if not isinstance(data, dict):
        raise ModelError(f"{where}: must be a table")
    _check_keys(data, _PART_KEYS, where)
    revision = _required_str(data, "revision", where)
    pinned = data.get("pinned")
    if not isinstance(pinned, bool):
        raise ModelError(f"{where}: pinned must be true or false (say false when revision is a branch)")
    if pinned and not COMMIT_RE.match(revision):
        raise ModelError(f"{where}: pinned = true needs a full 40-character commit id, not {revision!r}")
    files_data = data.get("files")
    if not isinstance(files_data, list) or not files_data:
        raise ModelError(f"{where}: files must be a non-empty list of {{ path = ... }} tables")
    files = tuple(_parse_file(f, f"{where} files #{i + 1}") for i, f in enumerate(files_data))
    if len({f.path for f in files}) != len(files):
        raise ModelError(f"{where}: file paths must be unique")
    optional = data.get("optional", False)
    if not isinstance(optional, bool):
        raise ModelError(f"{where}: optional must be true or false")
    repo = _required_str(data, "repo", where)
    if repo.count("/") != 1:
        raise ModelError(f"{where}: repo {repo!r} must be 'owner/name'")
    return PartSpec(
        name=_required_str(data, "name", where),
        repo_id=repo,
        revision=revision,
        pinned=pinned,
        files=files,
        licence=_required_str(data, "licence", where),
        role=_required_str(data, "role", where),
        optional=optional,
    )


def _parse_file(data: Any, where: str) -> FileSpec:
    if not isinstance(data, dict):
        raise ModelError(f"{where}: must be a table {{ path = ..., size = ..., sha256 = ... }}")
    _check_keys(data, _FILE_KEYS, where)
    path = _required_str(data, "path", where)
    if path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise ModelError(f"{where}: path {path!r} must be a plain relative path inside the repository")
    size = data.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise ModelError(f"{where}: size must be a positive number of bytes")
    sha = data.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256_RE.match(sha)):
        raise ModelError(f"{where}: sha256 must be 64 lower-case hex characters")
    return FileSpec(path=path, size=size, sha256=sha)


def _check_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ModelError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _required_str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ModelError(f"{where}: {key} must be a non-empty string")
    return value


def format_size(size: int, complete: bool = True) -> str:
    """``3.4 GB``; ``≥ 3.4 GB`` when some sizes are unknown; ``unknown`` when none is known."""
    if size == 0 and not complete:
        return "unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            text = f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            return text if complete else f"≥ {text}"
        value /= 1000
    raise AssertionError("unreachable")
