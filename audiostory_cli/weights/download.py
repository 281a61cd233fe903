"""Fetch a registered model's files: resumable, verified, honest about being offline.

Where files go: ``<audiostory cache>/models/<model>/<part>/<path in repo>`` (``AUDIOSTORY_CACHE`` or
``$XDG_CACHE_HOME/audiostory``), one folder per part, each with a ``.audiostory-part.json`` manifest (repo, revision,
resolved commit, size and sha256 of every file). The converted model folder goes beside them in ``converted/``.

Why not ``hf_hub_download`` into the Hugging Face cache: huggingface_hub 2.x downloads into a process-unique
temporary file and deletes it when the transfer fails, so an interrupted 16 GB download starts again from zero.
Here the partial file is ``<name>.incomplete`` next to its target and the next run continues it with an HTTP range
request (huggingface_hub's own ``http_get``, with its auth headers, redirects and retries). Files that the
Hugging Face cache already holds for a pinned commit (``HF_HUB_CACHE``, or ``HF_HOME/hub``, or
``~/.cache/huggingface/hub``) are linked from there instead of downloaded again.

Verification: size and sha256 from the registry when known, otherwise the hub's own hash of the file (the LFS
sha256, or the git blob sha1 of small files). A mismatch deletes the file and fetches it once more; a second
mismatch is an error. ``HF_HUB_OFFLINE=1`` (read at call time) means no network at all.

The hub client is a parameter (``HubClient``) so tests run against a local folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..errors import ModelError, OfflineError, UsageError, WeightsError
from ..fsutil import safe_child, write_json_atomic
from ..progress import ProgressFn, no_progress
from ..resources import cache_dir, data_dir
from .registry import (
    COMMIT_RE,
    DEMO_MODEL,
    OFFICIAL_MODEL,
    SHA256_RE,
    SIDECAR_NAME,
    FileSpec,
    ModelSpec,
    PartSpec,
    get_model_spec,
    list_models,
)

PART_MANIFEST = ".audiostory-part.json"
INCOMPLETE_SUFFIX = ".incomplete"
DEFAULT_ENDPOINT = "https://huggingface.co"
METADATA_TIMEOUT_S = 10.0
_HASH_CHUNK = 8 * 1024 * 1024
_GIT_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


# ---------------------------------------------------------------------------------------------------------------
# The hub client (injectable)


class HubUnreachable(Exception):
    """The hub cannot be reached (no network, offline mode, server down). Turned into ``OfflineError``."""


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says about one file at one revision."""

    repo_id: str
    path: str
    revision: str
    url: str
    size: int | None
    etag: str | None  # LFS files: the sha256 of the content; small files: the git blob sha1
    commit: str | None


class HubClient(Protocol):
    """The two calls downloading needs. ``fetch`` appends to ``out`` starting at byte ``offset``."""

    def resolve(self, repo_id: str, path: str, revision: str) -> RemoteFile: ...

    def fetch(self, remote: RemoteFile, out: BinaryIO, *, offset: int, on_bytes: Callable[[int], None]) -> None: ...


class HfHubClient:
    """The real Hugging Face hub, through huggingface_hub's metadata call and its resumable ``http_get``."""

    def __init__(
        self, *, endpoint: str | None = None, token: str | bool | None = None, timeout: float = METADATA_TIMEOUT_S
    ) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.token = token
        self.timeout = timeout

    def resolve(self, repo_id: str, path: str, revision: str) -> RemoteFile:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo_id, path, revision=revision, endpoint=self.endpoint)
        with self._translated(repo_id, path, revision):
            meta = get_hf_file_metadata(url, token=self.token, timeout=self.timeout, endpoint=self.endpoint)
        return RemoteFile(
            repo_id=repo_id,
            path=path,
            revision=revision,
            url=meta.location,
            size=meta.size,
            etag=meta.etag,
            commit=meta.commit_hash,
        )

    def fetch(self, remote: RemoteFile, out: BinaryIO, *, offset: int, on_bytes: Callable[[int], None]) -> None:
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils import build_hf_headers

        with self._translated(remote.repo_id, remote.path, remote.revision):
            http_get(
                remote.url,
                out,
                resume_size=offset,
                headers=build_hf_headers(token=self.token),
                expected_size=remote.size,
                displayed_filename=remote.path,
                tqdm_class=_byte_counter(on_bytes),
            )

    @contextlib.contextmanager
    def _translated(self, repo_id: str, path: str, revision: str) -> Iterator[None]:
        """Turn huggingface_hub / HTTP exceptions into ours: unreachable vs. a real problem with the request."""
        import httpx2  # huggingface_hub's HTTP client (a pinned dependency of huggingface-hub)
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        where = f"{repo_id}@{revision}"
        try:
            yield
        except OfflineModeIsEnabled as exc:
            raise HubUnreachable("offline mode is on") from exc
        except httpx2.TransportError as exc:
            raise HubUnreachable(f"{self.endpoint} unreachable ({type(exc).__name__})") from exc
        except GatedRepoError as exc:
            raise ModelError(
                f"{repo_id} is gated: accept its licence at {self.endpoint}/{repo_id} and log in "
                "with `hf auth login` (or set HF_TOKEN)"
            ) from exc
        except RepositoryNotFoundError as exc:
            raise ModelError(
                f"{repo_id} was not found on {self.endpoint} (or it is private and no token is "
                "set); check the repo id in the model registry"
            ) from exc
        except RevisionNotFoundError as exc:
            raise ModelError(f"revision {revision} does not exist in {repo_id}; the registry pin is wrong") from exc
        except EntryNotFoundError as exc:
            raise WeightsError(
                f"{path} does not exist in {where}; the registry lists a file the repository does not have"
            ) from exc
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is None or status >= 500 or status == 429:
                raise HubUnreachable(f"{self.endpoint} answered HTTP {status}") from exc
            raise ModelError(f"hub request for {path} in {where} failed with HTTP {status}") from exc


def _byte_counter(on_bytes: Callable[[int], None]) -> type:
    """A tqdm stand-in for ``http_get``: forwards byte counts to ``on_bytes`` and draws nothing."""

    class _Counter:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> _Counter:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: int | float = 1) -> None:
            on_bytes(int(n))

    return _Counter


# ---------------------------------------------------------------------------------------------------------------
# Where things are


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now rather than when huggingface_hub was imported."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def weights_root() -> Path:
    return cache_dir() / "models"


def model_path(spec: ModelSpec) -> Path:
    """The folder of a model: downloads (one subfolder per part) for hub models, the model folder otherwise."""
    if spec.kind == "hub":
        return weights_root() / spec.name
    if spec.kind == "bundled" and spec.folder:
        return data_dir("models") / spec.folder
    raise UsageError(f"model {spec.name!r} is built in memory ({spec.kind}); it has no files on disk")


def part_dir(spec: ModelSpec, part: PartSpec) -> Path:
    return model_path(spec) / part.name


def converted_path(spec: ModelSpec) -> Path:
    """Where ``audiostory models convert <name>`` writes the model folder that inference loads."""
    return model_path(spec) / "converted"


def file_present(folder: Path, f: FileSpec) -> bool:
    """The file is in place at its expected size (a file only gets its final name after verification)."""
    path = folder / f.path
    return path.is_file() and (f.size is None or path.stat().st_size == f.size)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home).expanduser() / "hub"


# ---------------------------------------------------------------------------------------------------------------
# Download


def download_model(
    spec: ModelSpec,
    *,
    progress: ProgressFn = no_progress,
    force: bool = False,
    include_optional: bool = False,
    client: HubClient | None = None,
) -> Path:
    """Fetch and verify every file of ``spec``; returns ``model_path(spec)``.

    Present files are kept (``force`` re-downloads them). When the hub cannot be reached, or ``HF_HUB_OFFLINE``
    is set, files still missing raise one ``OfflineError`` that says which files and where to copy them.
    """
    if spec.kind != "hub":
        raise ModelError(f"model {spec.name!r} is {spec.kind}; there is nothing to download")
    offline = hub_offline()
    if offline and force:
        raise OfflineError(
            "--force downloads every file again and needs the hub, but HF_HUB_OFFLINE is set; unset it or drop --force"
        )
    hub: HubClient | None = None if offline else (client or HfHubClient())
    reason = "offline (HF_HUB_OFFLINE is set)" if offline else ""
    missing: list[tuple[PartSpec, FileSpec]] = []
    for part in spec.required_parts(include_optional=include_optional):
        folder = part_dir(spec, part)
        for f in part.files:
            if hub is not None:
                try:
                    _ensure_file(part, f, folder, hub, progress=progress, force=force)
                    continue
                except HubUnreachable as exc:
                    reason = f"cannot reach the hub: {exc}"
                    hub = None  # stop talking to the hub; list what is still missing
            if not _use_local_copy(part, f, folder, progress):
                missing.append((part, f))
    if missing:
        raise OfflineError(_offline_message(spec, missing, reason))
    return model_path(spec)


def _ensure_file(
    part: PartSpec, f: FileSpec, folder: Path, hub: HubClient, *, progress: ProgressFn, force: bool
) -> None:
    dest = safe_child(folder, f.path, what="file path")
    if force:  # start over, but keep the current file until a verified replacement is in place
        _partial(dest).unlink(missing_ok=True)
        _etag_file(dest).unlink(missing_ok=True)
    elif _use_local_copy(part, f, folder, progress):
        return
    remote = hub.resolve(part.repo_id, f.path, part.revision)
    expected = _expected(part, f, remote)
    for attempt in (1, 2):
        _fetch_to_partial(remote, dest, expected.size, hub, progress=progress, label=f"{part.name}/{f.path}")
        actual = _hash_file(_partial(dest), progress=progress, label=f"verify {part.name}/{f.path}")
        problem = expected.problem(actual)
        if problem is None:
            os.replace(_partial(dest), dest)
            _etag_file(dest).unlink(missing_ok=True)
            _record(folder, part, f.path, actual, remote.commit)
            return
        _partial(dest).unlink(missing_ok=True)
        _etag_file(dest).unlink(missing_ok=True)
        if attempt == 2:
            raise WeightsError(
                f"{part.repo_id}/{f.path} failed verification twice ({problem}); the file on the hub does not "
                "match the registry: check the pinned revision or report it"
            )


@dataclass(frozen=True)
class _Digest:
    size: int
    sha256: str
    git_sha1: str


@dataclass(frozen=True)
class _Expected:
    size: int | None
    sha256: str | None
    git_sha1: str | None

    def problem(self, actual: _Digest) -> str | None:
        if self.size is not None and actual.size != self.size:
            return f"size {actual.size} instead of {self.size}"
        if self.sha256 is not None and actual.sha256 != self.sha256:
            return f"sha256 {actual.sha256[:12]}… instead of {self.sha256[:12]}…"
        if self.sha256 is None and self.git_sha1 is not None and actual.git_sha1 != self.git_sha1:
            return f"git sha1 {actual.git_sha1[:12]}… instead of {self.git_sha1[:12]}…"
        return None


def _expected(part: PartSpec, f: FileSpec, remote: RemoteFile) -> _Expected:
    """Registry values win; the hub's size/etag fill the gaps. A disagreement is caught before downloading."""
    if f.size is not None and remote.size is not None and f.size != remote.size:
        raise WeightsError(
            f"{part.repo_id}/{f.path}@{part.revision} is {remote.size} bytes on the hub but the registry says "
            f"{f.size}; the file changed upstream (pin the revision it was recorded at)"
        )
    etag = (remote.etag or "").strip('"').lower()
    hub_sha = etag if SHA256_RE.match(etag) else None
    if f.sha256 is not None and hub_sha is not None and hub_sha != f.sha256:
        raise WeightsError(
            f"{part.repo_id}/{f.path}@{part.revision} has sha256 {hub_sha[:12]}… on the hub but the registry says "
            f"{f.sha256[:12]}…; the file changed upstream"
        )
    git_sha1 = etag if hub_sha is None and _GIT_SHA1_RE.match(etag) else None
    return _Expected(size=f.size if f.size is not None else remote.size, sha256=f.sha256 or hub_sha, git_sha1=git_sha1)


def _partial(dest: Path) -> Path:
    return dest.with_name(dest.name + INCOMPLETE_SUFFIX)


def _etag_file(dest: Path) -> Path:
    return dest.with_name(dest.name + INCOMPLETE_SUFFIX + ".etag")


def _fetch_to_partial(
    remote: RemoteFile, dest: Path, size: int | None, hub: HubClient, *, progress: ProgressFn, label: str
) -> None:
    """Continue ``<dest>.incomplete`` from where it stopped (restart if it belongs to another version)."""
    partial = _partial(dest)
    partial.parent.mkdir(parents=True, exist_ok=True)
    etag_file = _etag_file(dest)
    etag = remote.etag or ""
    if partial.exists():
        recorded = etag_file.read_text(encoding="utf-8").strip() if etag_file.exists() else ""
        too_long = size is not None and partial.stat().st_size > size
        if recorded != etag or too_long:
            partial.unlink()
    etag_file.write_text(etag, encoding="utf-8")
    offset = partial.stat().st_size if partial.exists() else 0
    total = size or 0
    done = offset
    progress(label, done, total)

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        progress(label, done, max(total, done))

    if size is not None and offset == size:
        return
    with open(partial, "ab") as out:
        hub.fetch(remote, out, offset=offset, on_bytes=on_bytes)
        out.flush()
        os.fsync(out.fileno())


def _hash_file(path: Path, *, progress: ProgressFn = no_progress, label: str = "verify") -> _Digest:
    """sha256 and git blob sha1 in one pass."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    git = hashlib.sha1(usedforsecurity=False)
    git.update(f"blob {size}\0".encode())
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            sha.update(chunk)
            git.update(chunk)
            done += len(chunk)
            progress(label, done, size)
    return _Digest(size=size, sha256=sha.hexdigest(), git_sha1=git.hexdigest())


def sha256_file(path: Path) -> str:
    return _hash_file(Path(path)).sha256


def _use_local_copy(part: PartSpec, f: FileSpec, folder: Path, progress: ProgressFn) -> bool:
    """The file is already in place, or the Hugging Face cache has it for this commit (linked, then verified)."""
    if file_present(folder, f):
        return True
    source = _hf_cache_file(part, f)
    if source is None:
        return False
    dest = safe_child(folder, f.path, what="file path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = _partial(dest)
    staged.unlink(missing_ok=True)
    _link_or_copy(source, staged)
    actual = _hash_file(staged, progress=progress, label=f"verify {part.name}/{f.path}")
    blob_name = source.resolve().name if source.is_symlink() else ""
    expected = _Expected(
        size=f.size,
        sha256=f.sha256 or (blob_name if SHA256_RE.match(blob_name) else None),
        git_sha1=blob_name if _GIT_SHA1_RE.match(blob_name) else None,
    )
    if expected.problem(actual) is not None:
        staged.unlink(missing_ok=True)  # a damaged cache entry: download it instead
        return False
    os.replace(staged, dest)
    _record(folder, part, f.path, actual, part.revision)
    return True


def _hf_cache_file(part: PartSpec, f: FileSpec) -> Path | None:
    if not COMMIT_RE.match(part.revision):
        return None  # a branch may have moved: only an exact commit is safe to reuse
    owner, name = part.repo_id.split("/")
    candidate = hf_cache_dir() / f"models--{owner}--{name}" / "snapshots" / part.revision / f.path
    return candidate if candidate.is_file() else None


def _link_or_copy(source: Path, target: Path) -> None:
    real = source.resolve()
    try:
        os.link(real, target)
    except OSError:
        shutil.copyfile(real, target)


def _record(folder: Path, part: PartSpec, path: str, digest: _Digest, commit: str | None) -> None:
    manifest = read_part_manifest(folder)
    manifest.update({"repo": part.repo_id, "revision": part.revision})
    if commit:
        manifest["commit"] = commit
    manifest.setdefault("files", {})[path] = {"size": digest.size, "sha256": digest.sha256}
    write_json_atomic(folder / PART_MANIFEST, manifest)


def read_part_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / PART_MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path} is corrupt ({exc}); delete it and run `audiostory models verify`") from exc
    return data if isinstance(data, dict) else {}


def _offline_message(spec: ModelSpec, missing: list[tuple[PartSpec, FileSpec]], reason: str) -> str:
    names = [f"{p.name}/{f.path}" for p, f in missing]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    parts = {p.name: p for p, _ in missing}
    sources = "; ".join(f"{name}/ ← {p.repo_id}@{p.revision[:12]}" for name, p in parts.items())
    retry = (
        "or unset HF_HUB_OFFLINE to download them"
        if reason.startswith("offline")
        else "or run the same command again when the hub is reachable (partial files resume)"
    )
    return (
        f"{reason}: {len(names)} file(s) of {spec.name} are not here: {shown}. Copy each repository's files into "
        f"{model_path(spec)}/<part>/ ({sources}), {retry}, or try the pipeline offline with --model tiny-random"
    )


# ---------------------------------------------------------------------------------------------------------------
# Verify


@dataclass(frozen=True)
class FileCheck:
    """One file's state: ``ok``, ``unverified`` (present, nothing to compare with), ``missing``, ``partial``
    (an interrupted download), ``size mismatch`` or ``sha256 mismatch``."""

    part: str
    path: str
    status: str
    detail: str = ""
    size: int | None = None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unverified")


def verify_model(
    spec: ModelSpec, *, include_optional: bool = False, progress: ProgressFn = no_progress
) -> list[FileCheck]:
    """Hash every file of a hub model and compare with the registry, else with what was recorded at download."""
    if spec.kind != "hub":
        raise ModelError(f"model {spec.name!r} is {spec.kind}; verify a model folder with its path instead")
    checks: list[FileCheck] = []
    for part in spec.required_parts(include_optional=include_optional):
        folder = part_dir(spec, part)
        recorded = read_part_manifest(folder).get("files", {})
        for f in part.files:
            checks.append(_check_file(part, f, folder, recorded.get(f.path, {}), progress))
    return checks


def _check_file(part: PartSpec, f: FileSpec, folder: Path, recorded: dict[str, Any], progress: ProgressFn) -> FileCheck:
    path = folder / f.path
    if not path.is_file():
        if _partial(path).is_file():
            have = _partial(path).stat().st_size
            return FileCheck(part.name, f.path, "partial", f"{have} bytes downloaded; run download to resume")
        return FileCheck(part.name, f.path, "missing")
    digest = _hash_file(path, progress=progress, label=f"verify {part.name}/{f.path}")
    if f.size is not None and digest.size != f.size:
        return FileCheck(
            part.name,
            f.path,
            "size mismatch",
            f"{digest.size} bytes, registry says {f.size}",
            digest.size,
            digest.sha256,
        )
    reference, source = (f.sha256, "registry") if f.sha256 else (recorded.get("sha256"), "download record")
    if reference is None:
        return FileCheck(part.name, f.path, "unverified", "no sha256 known", digest.size, digest.sha256)
    if digest.sha256 != reference:
        return FileCheck(part.name, f.path, "sha256 mismatch", f"differs from the {source}", digest.size, digest.sha256)
    return FileCheck(part.name, f.path, "ok", f"sha256 matches the {source}", digest.size, digest.sha256)


@dataclass(frozen=True)
class DefaultModel:
    """The model a command uses when ``--model`` is not given, and the one line to tell the user, if any."""

    name: str
    notice: str | None = None


def resolve_default_model() -> DefaultModel:
    """``audiostory-3b`` when its weights are on this machine (converted or downloaded); otherwise the bundled
    ``demo`` when one is registered and present, with a notice naming the download command; otherwise
    ``audiostory-3b`` (loading it then says how to download it)."""
    official = get_model_spec(OFFICIAL_MODEL)
    if (converted_path(official) / SIDECAR_NAME).is_file() or model_status(official) != "missing":
        return DefaultModel(OFFICIAL_MODEL)
    demo = next((s for s in list_models() if s.name == DEMO_MODEL and s.kind == "bundled"), None)
    if demo is None or model_status(demo) != "present":
        return DefaultModel(OFFICIAL_MODEL)
    return DefaultModel(
        DEMO_MODEL,
        (
            f"{OFFICIAL_MODEL} is not downloaded: using the bundled {DEMO_MODEL} model (a small foley world); "
            f"for the full model run `audiostory models download {OFFICIAL_MODEL}`"
        ),
    )


def model_status(spec: ModelSpec) -> str:
    """``builtin``, ``present`` (every required file on disk at its expected size), ``partial`` or ``missing``.

    Cheap: only file sizes are looked at; ``verify_model`` hashes.
    """
    if spec.kind == "builtin":
        return "builtin"
    if spec.kind in ("bundled", "folder"):
        try:
            return "present" if (model_path(spec) / SIDECAR_NAME).is_file() else "missing"
        except ModelError:
            return "missing"
    present = total = 0
    for part in spec.required_parts():
        folder = part_dir(spec, part)
        for f in part.files:
            total += 1
            present += file_present(folder, f)
    if total and present == total:
        return "present"
    return "partial" if present else "missing"
