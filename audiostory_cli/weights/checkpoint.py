"""Our model folder: safetensors weights + an ``audiostory.json`` sidecar, loaded strictly onto meta-built modules.

Layout (used for converted checkpoints, the bundled demo model and training runs)::

    <folder>/
      audiostory.json        format version, model name, ModelDims, vocab size, parts (file, dtype, sha256),
                             source repos + revisions + sha256 of the files converted, code version,
                             base model (for LoRA runs), free-form ``extra``
      llm.safetensors        one file per part; keys keep the part prefix: ``llm.model.embed_tokens.weight``,
      bridge.safetensors     ``bridge.projector.0.weight``, ``dit.transformer...``, ``text_encoder...``,
      dit.safetensors        ``vae...``, ``audio_encoder...`` (so a key names the same tensor everywhere)
      ...
      tokenizer/             written by ``planner.tokens.save_tokenizer`` (via ``save_model_folder(write_extra=)``)

One file per part lets a command load only what it needs (``export`` nothing, ``plan`` the LLM). Tied weights
(``lm_head`` ↔ ``embed_tokens``, T5 ``encoder.embed_tokens`` ↔ ``shared``) are stored once, under the first name
the module lists, and re-tied explicitly on load. Loading reads tensor by tensor through ``safe_open`` into
modules built with ``empty_weights()`` (parameters on the meta device) using ``load_state_dict(strict=True,
assign=True)``; every missing, unexpected or mis-shaped key is reported together in one ``CheckpointKeyError``.
No key renames exist yet (format version 1); a future rename must be patched here explicitly, with a log line.

torch and safetensors are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..config import ModelDims
from ..errors import CheckpointKeyError, ModelError, OutputExistsError, WeightsError
from ..fsutil import write_json_atomic
from .registry import SIDECAR_NAME

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .download import FileCheck

log = logging.getLogger(__name__)

FORMAT = "audiostory-model"
FORMAT_VERSION = 1
TOKENIZER_DIR = "tokenizer"
_MAX_LISTED = 6


# ---------------------------------------------------------------------------------------------------------------
# The sidecar


@dataclass(frozen=True)
class SourceRef:
    """A repository (or local folder) a model folder was made from, and the sha256 of the files used."""

    repo: str
    revision: str
    commit: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # path -> sha256

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "revision": self.revision, "commit": self.commit, "files": dict(self.files)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceRef:
        return cls(
            repo=str(data["repo"]),
            revision=str(data["revision"]),
            commit=data.get("commit"),
            files=dict(data.get("files", {})),
        )


@dataclass(frozen=True)
class PartFile:
    """One part's weight file, as recorded in the sidecar."""

    file: str
    dtype: str
    tensors: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ModelInfo:
    """What the caller says about a model folder it writes; the rest of the sidecar is filled in."""

    name: str
    vocab_size: int | None = None
    sources: tuple[SourceRef, ...] = ()
    base_model: str | None = None  # for LoRA training runs: the model the adapter was trained on
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFolderMeta:
    """The parsed ``audiostory.json`` of a model folder."""

    path: Path
    format_version: int
    name: str
    dims: ModelDims
    vocab_size: int | None
    parts: Mapping[str, PartFile]
    dtype: str
    sources: tuple[SourceRef, ...]
    code_version: str
    base_model: str | None
    created: str
    tokenizer: str | None
    extra: Mapping[str, Any]

    @property
    def tokenizer_dir(self) -> Path | None:
        return self.path / self.tokenizer if self.tokenizer else None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "name": self.name,
            "dims": self.dims.to_dict(),
            "vocab_size": self.vocab_size,
            "parts": {k: vars(v) for k, v in self.parts.items()},
            "dtype": self.dtype,
            "sources": [s.to_dict() for s in self.sources],
            "code_version": self.code_version,
            "base_model": self.base_model,
            "created": self.created,
            "tokenizer": self.tokenizer,
            "extra": dict(self.extra),
        }


def read_sidecar(path: Path) -> ModelFolderMeta:
    """Parse and check ``<path>/audiostory.json``; errors say which folder and what to do."""
    folder = Path(path)
    sidecar = folder / SIDECAR_NAME
    if not sidecar.is_file():
        raise ModelError(f"{folder} is not a model folder (no {SIDECAR_NAME}); convert or train one first")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{sidecar} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WeightsError(f"{sidecar} is not an audiostory model sidecar (format != {FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise WeightsError(f"{sidecar}: format_version must be a positive integer")
    if version > FORMAT_VERSION:
        raise WeightsError(
            f"{folder} was written by a newer audiostory (format {version} > {FORMAT_VERSION}); upgrade audiostory"
        )
    try:
        dims = ModelDims.from_dict(data["dims"])
        parts = {str(k): PartFile(**v) for k, v in data["parts"].items()}
        sources = tuple(SourceRef.from_dict(s) for s in data.get("sources", []))
        meta = ModelFolderMeta(
            path=folder,
            format_version=version,
            name=str(data["name"]),
            dims=dims,
            vocab_size=data.get("vocab_size"),
            parts=parts,
            dtype=str(data.get("dtype", "")),
            sources=sources,
            code_version=str(data.get("code_version", "")),
            base_model=data.get("base_model"),
            created=str(data.get("created", "")),
            tokenizer=data.get("tokenizer"),
            extra=data.get("extra", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{sidecar} is missing or has a malformed field ({exc}); re-convert the model") from exc
    for name, part in meta.parts.items():
        if Path(part.file).name != part.file:
            raise WeightsError(f"{sidecar}: part {name!r} points outside the folder ({part.file!r})")
    return meta


# ---------------------------------------------------------------------------------------------------------------
# Building on the meta device


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Build modules with parameters on the meta device and buffers computed for real.

    Use it to build a model that ``load_parts_strict`` then fills: no memory or time is spent on random init.
    Unlike ``torch.device("meta")`` it keeps non-persistent buffers (rotary ``inv_freq``) real, and unlike
    accelerate's ``init_empty_weights`` it keeps tied parameters tied (a parameter already on meta is registered
    as the same object).
    """
    import torch
    from torch import nn

    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is None or param.device.type == "meta":
            return
        registered = module._parameters[name]
        assert registered is not None
        kwargs = dict(registered.__dict__)
        kwargs["requires_grad"] = registered.requires_grad
        module._parameters[name] = type(registered)(registered.to(torch.device("meta")), **kwargs)

    nn.Module.register_parameter = register  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def tie_groups(module: nn.Module) -> list[list[str]]:
    """Parameter names that share one tensor, each group in the module's own order (the first is canonical)."""
    by_id: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


# ---------------------------------------------------------------------------------------------------------------
# Strict loading


@dataclass(frozen=True)
class LoadReport:
    loaded: int
    ignored: Mapping[str, str]  # key -> reason
    tied: Mapping[str, str]  # alias -> canonical


def load_state_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    ignored: Mapping[str, str] | None = None,
    prefix: str = "",
    key_check_only: bool = False,
) -> LoadReport:
    """Load ``state`` into ``module`` so that every key is accounted for.

    - A key the module does not have is an error unless it matches ``ignored`` (exact key or ``fnmatch``
      pattern → reason); ignored keys are dropped and reported.
    - A key the module has but ``state`` lacks is an error, except tied aliases: one name of a tie group is
      enough; if several are given they must be identical.
    - A shape mismatch is an error.
    All problems are collected into one ``CheckpointKeyError`` (key names carry ``prefix``). Loading uses
    ``assign=True`` so meta-built modules receive the tensors as they are; ties are re-established afterwards.
    ``key_check_only``: ``state`` holds meta tensors (names and shapes only, e.g. the full-size key list in the
    tests), so the module is allowed to stay on the meta device afterwards.
    """
    import torch

    ignored = dict(ignored or {})
    expected = {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}
    groups = tie_groups(module)
    full: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key in expected:
            full[key] = tensor
        else:
            reason = _ignored_reason(key, ignored)
            if reason is None:
                unexpected.append(key)
            else:
                dropped[key] = reason
    tied: dict[str, str] = {}
    conflicts: list[str] = []
    for names in groups:
        given = [n for n in names if n in full]
        if not given:
            continue
        source = given[0]
        for other in given[1:]:
            same = full[other].shape == full[source].shape and (
                full[other].device.type == "meta" or torch.equal(full[other], full[source])
            )
            if not same:
                conflicts.append(f"{prefix}{other} != {prefix}{source}")
        for name in names:
            if name != source:
                tied[name] = source
                full[name] = full[source]
    missing = [k for k in expected if k not in full]
    mismatched = [
        f"{prefix}{k}: checkpoint {list(full[k].shape)} vs model {list(shape)}"
        for k, shape in expected.items()
        if k in full and tuple(full[k].shape) != shape
    ]
    if missing or unexpected or mismatched or conflicts:
        raise _key_error([prefix + k for k in missing], [prefix + k for k in unexpected], mismatched, conflicts)
    module.load_state_dict(full, strict=True, assign=True)
    for names in groups:
        _retie(module, names)
    if not key_check_only:
        _check_materialised(module, prefix)
    return LoadReport(loaded=len(full) - len(tied), ignored=dropped, tied=tied)


def _ignored_reason(key: str, ignored: Mapping[str, str]) -> str | None:
    if key in ignored:
        return ignored[key]
    for pattern, reason in ignored.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(key, pattern):
            return reason
    return None


def _retie(module: nn.Module, names: list[str]) -> None:
    canonical_owner, _, canonical_attr = names[0].rpartition(".")
    param = getattr(module.get_submodule(canonical_owner), canonical_attr)
    for alias in names[1:]:
        owner, _, attr = alias.rpartition(".")
        module.get_submodule(owner)._parameters[attr] = param


def _rebuild_meta_rotary(module: nn.Module) -> None:
    """transformers rotary embeddings keep ``inv_freq`` as a non-persistent buffer, so a module built under
    ``torch.device("meta")`` still has it on meta after loading; rebuild those modules (from their config) on the
    device the weights went to. Other meta buffers stay an error."""
    import torch

    for name, sub in list(module.named_modules()):
        stuck = any(b.device.type == "meta" for b in sub.buffers(recurse=False))
        if not (stuck and type(sub).__name__.endswith("RotaryEmbedding") and hasattr(sub, "config")):
            continue
        device = next((p.device for p in module.parameters() if p.device.type != "meta"), torch.device("cpu"))
        with torch.device(device):
            rebuilt = type(sub)(config=sub.config)
        parent, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent), attr, rebuilt)
        log.info("rebuilt %s on %s: its rotary buffers are not stored in checkpoints", name or "module", device)


def _check_materialised(module: nn.Module, prefix: str) -> None:
    _rebuild_meta_rotary(module)
    left = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    left += [n for n, b in module.named_buffers() if b.device.type == "meta"]
    if left:
        shown = ", ".join(prefix + n for n in left[:_MAX_LISTED])
        raise WeightsError(
            f"{len(left)} tensor(s) still on the meta device after loading ({shown}): non-persistent buffers "
            "are not in checkpoints; build the module inside audiostory_cli.weights.checkpoint.empty_weights()"
        )


def _key_error(
    missing: list[str], unexpected: list[str], mismatched: list[str], conflicts: list[str]
) -> CheckpointKeyError:
    pieces = []
    for label, items in (
        ("missing", missing),
        ("unexpected (not listed as ignored)", unexpected),
        ("shape mismatch", mismatched),
        ("tied weights differ", conflicts),
    ):
        if items:
            shown = ", ".join(items[:_MAX_LISTED])
            more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            pieces.append(f"{len(items)} {label}: {shown}{more}")
    return CheckpointKeyError(
        "checkpoint does not match the model: " + "; ".join(pieces),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        conflicts=conflicts,
    )


def merge_key_errors(errors: list[CheckpointKeyError]) -> CheckpointKeyError:
    """One error for several parts (so a user sees every problem at once)."""
    return _key_error(
        [k for err in errors for k in err.missing],
        [k for err in errors for k in err.unexpected],
        [k for err in errors for k in err.mismatched],
        [k for err in errors for k in err.conflicts],
    )


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading model folders


def state_for_saving(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict with each tie group stored once (under its first name)."""
    state = module.state_dict()
    for names in tie_groups(module):
        for alias in names[1:]:
            state.pop(alias, None)
    return state


PartLike = Any  # nn.Module, or a mapping of part-relative key -> tensor


def save_model_folder(
    path: Path,
    parts: Mapping[str, PartLike],
    dims: ModelDims,
    info: ModelInfo,
    *,
    dtype: torch.dtype | None = None,
    part_dtypes: Mapping[str, torch.dtype] | None = None,
    force: bool = False,
    write_extra: Callable[[Path], None] | None = None,
) -> ModelFolderMeta:
    """Write a model folder atomically: everything goes into a temporary sibling folder that is renamed at the end.

    ``parts`` maps part names (``llm``, ``bridge``...) to modules (or state dicts); floating tensors are cast to
    ``part_dtypes[name]`` or ``dtype`` when given. ``write_extra(tmp_folder)`` adds files such as ``tokenizer/``.
    An existing folder is replaced only with ``force`` and only if it is a model folder itself.
    """
    target = Path(path)
    if target.exists():
        if not force:
            raise OutputExistsError(f"{target} already exists; choose another --out or pass --force to replace it")
        if not target.is_dir() or (any(target.iterdir()) and not (target / SIDECAR_NAME).is_file()):
            raise OutputExistsError(f"{target} exists and is not a model folder; refusing to replace it")
    for name in parts:
        if not name or Path(name).name != name or name.startswith("."):
            raise ModelError(f"part name {name!r} must be a plain name such as 'llm'")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files: dict[str, PartFile] = {}
        for name, part in parts.items():
            cast = (part_dtypes or {}).get(name, dtype)
            files[name] = _write_part(tmp, name, part, cast)
        tokenizer = None
        if write_extra is not None:
            write_extra(tmp)
            tokenizer = TOKENIZER_DIR if (tmp / TOKENIZER_DIR).is_dir() else None
        dtypes = sorted({f.dtype for f in files.values()})
        meta = ModelFolderMeta(
            path=target,
            format_version=FORMAT_VERSION,
            name=info.name,
            dims=dims,
            vocab_size=info.vocab_size,
            parts=files,
            dtype=dtypes[0] if len(dtypes) == 1 else "mixed",
            sources=tuple(info.sources),
            code_version=__version__,
            base_model=info.base_model,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            tokenizer=tokenizer,
            extra=dict(info.extra),
        )
        write_json_atomic(tmp / SIDECAR_NAME, meta.to_json())
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _write_part(folder: Path, name: str, part: PartLike, dtype: torch.dtype | None) -> PartFile:
    import torch
    from safetensors.torch import save_file

    from .download import sha256_file

    if isinstance(part, torch.nn.Module):
        state = state_for_saving(part)
    else:
        state = dict(part)
    tensors: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for key, tensor in state.items():
        if tensor.device.type == "meta":
            raise WeightsError(f"cannot save {name}.{key}: it is on the meta device (never loaded)")
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        t = t.to("cpu").contiguous()
        storage = t.untyped_storage().data_ptr()
        if storage in seen_storage:
            t = t.clone()  # safetensors refuses shared storage; ties were already removed on purpose
        seen_storage.add(t.untyped_storage().data_ptr())
        tensors[f"{name}.{key}"] = t
    file = f"{name}.safetensors"
    save_file(tensors, str(folder / file), metadata={"format": "pt", "part": name})
    with open(folder / file, "rb") as fh:
        os.fsync(fh.fileno())
    kinds = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()})
    return PartFile(
        file=file,
        dtype=kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none"),
        tensors=len(tensors),
        bytes=(folder / file).stat().st_size,
        sha256=sha256_file(folder / file),
    )


def _swap_in(tmp: Path, target: Path) -> None:
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def read_part_state(
    path: Path,
    part: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    meta: ModelFolderMeta | None = None,
) -> dict[str, torch.Tensor]:
    """One part's tensors, keys without the part prefix, read tensor by tensor from the memory-mapped file."""
    from safetensors import SafetensorError, safe_open

    meta = meta or read_sidecar(path)
    if part not in meta.parts:
        raise WeightsError(
            f"{meta.path} has no {part!r} weights (it has: {', '.join(meta.parts) or 'none'}); use a model that "
            "includes this part"
        )
    file = meta.path / meta.parts[part].file
    if not file.is_file():
        raise WeightsError(f"{file} is missing; the model folder is incomplete, convert it again")
    head = f"{part}."
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as fh:
            for key in fh.keys():
                if not key.startswith(head):
                    raise WeightsError(f"{file} holds {key!r}, which is not a {part!r} key; the file is corrupt")
                tensor = fh.get_tensor(key)
                if dtype is not None and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                state[key[len(head) :]] = tensor
    except SafetensorError as exc:  # never falls back to another format: only safetensors are read here
        raise WeightsError(
            f"{file} is not a valid safetensors file ({exc}); run `audiostory models verify {meta.path}` and "
            "convert the model again"
        ) from exc
    return state


def load_parts_strict(
    path: Path,
    parts: Mapping[str, nn.Module],
    *,
    ignored: Mapping[str, str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | Mapping[str, torch.dtype] | None = None,
) -> ModelFolderMeta:
    """Fill the given modules (built with ``empty_weights()``) from a model folder, strictly.

    ``dtype`` casts floating tensors while reading (one dtype, or one per part). ``ignored`` lists keys
    (global names, e.g. ``llm.some.key``, or patterns) that may be present without a home. Problems in all parts
    are reported together.
    """
    meta = read_sidecar(path)
    errors: list[CheckpointKeyError] = []
    for name, module in parts.items():
        cast = dtype.get(name) if isinstance(dtype, Mapping) else dtype
        state = read_part_state(path, name, device=device, dtype=cast, meta=meta)
        local_ignored = {k[len(name) + 1 :]: v for k, v in (ignored or {}).items() if k.startswith(name + ".")}
        try:
            load_state_strict(module, state, ignored=local_ignored, prefix=f"{name}.")
        except CheckpointKeyError as exc:
            errors.append(exc)
    if errors:
        raise merge_key_errors(errors) if len(errors) > 1 else errors[0]
    return meta


def verify_model_folder(path: Path) -> list[FileCheck]:
    """Hash every part file of a model folder and compare with the sha256 in its sidecar."""
    from .download import FileCheck, sha256_file

    meta = read_sidecar(path)
    checks = []
    for name, part in meta.parts.items():
        file = meta.path / part.file
        if not file.is_file():
            checks.append(FileCheck(name, part.file, "missing"))
            continue
        size = file.stat().st_size
        if size != part.bytes:
            checks.append(FileCheck(name, part.file, "size mismatch", f"{size} bytes, sidecar says {part.bytes}", size))
            continue
        digest = sha256_file(file)
        status = "ok" if digest == part.sha256 else "sha256 mismatch"
        checks.append(FileCheck(name, part.file, status, "against audiostory.json", size, digest))
    return checks
