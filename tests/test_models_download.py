"""Downloads against a local fake hub (no network): resume, checksum re-fetch, offline errors, cache reuse."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from audiostory_cli.errors import OfflineError, WeightsError
from audiostory_cli.weights.download import (
    PART_MANIFEST,
    HfHubClient,
    HubUnreachable,
    RemoteFile,
    download_model,
    model_path,
    model_status,
    part_dir,
    read_part_manifest,
    verify_model,
)
from audiostory_cli.weights.registry import FileSpec, ModelSpec, PartSpec

COMMIT = "c" * 40


class FolderHub:
    """A fake hub serving ``<root>/<owner>/<name>/<path>``; can drop the connection or corrupt a transfer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fetches: list[tuple[str, int]] = []  # (path, offset)
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the "connection" drops (once)
        self.corrupt: dict[str, int] = {}  # path -> how many transfers still arrive corrupted
        self.down = False

    def add(self, repo: str, path: str, data: bytes) -> str:
        file = self.root / repo / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def resolve(self, repo_id: str, path: str, revision: str) -> RemoteFile:
        if self.down:
            raise HubUnreachable("fake hub is down")
        file = self.root / repo_id / path
        data = file.read_bytes()
        return RemoteFile(
            repo_id=repo_id,
            path=path,
            revision=revision,
            url=str(file),
            size=len(data),
            etag=hashlib.sha256(data).hexdigest(),
            commit=COMMIT,
        )

    def fetch(self, remote: RemoteFile, out: BinaryIO, *, offset: int, on_bytes: Callable[[int], None]) -> None:
        self.fetches.append((remote.path, offset))
        data = Path(remote.url).read_bytes()[offset:]
        if self.corrupt.get(remote.path, 0) > 0:
            self.corrupt[remote.path] -= 1
            data = bytes(b ^ 0xFF for b in data)
        cut = self.cut_after.pop(remote.path, None)
        if cut is not None:
            out.write(data[:cut])
            on_bytes(cut)
            raise HubUnreachable("connection reset by peer")
        out.write(data)
        on_bytes(len(data))


def _payload(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


@pytest.fixture
def hub(tmp_path) -> FolderHub:
    return FolderHub(tmp_path / "fakehub")


def _spec(hub: FolderHub, *, pinned_sha: bool = True, revision: str = COMMIT) -> ModelSpec:
    weights = _payload(50_000, 1)
    config = b'{"model_type": "toy"}'
    sha = hub.add("org/toy", "weights.bin", weights)
    hub.add("org/toy", "config.json", config)
    hub.add("org/extra", "sub/dir/extra.safetensors", _payload(7_000, 2))
    part = PartSpec(
        name="toy",
        repo_id="org/toy",
        revision=revision,
        pinned=revision == COMMIT,
        licence="test",
        role="test",
        files=(FileSpec("weights.bin", size=len(weights), sha256=sha if pinned_sha else None), FileSpec("config.json")),
    )
    extra = PartSpec(
        name="extra",
        repo_id="org/extra",
        revision=COMMIT,
        pinned=True,
        licence="test",
        role="test",
        files=(FileSpec("sub/dir/extra.safetensors"),),
    )
    return ModelSpec(name="toy-model", description="test", kind="hub", licence="test", parts=(part, extra))


@pytest.fixture
def online(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_download_verifies_and_records(hub, online) -> None:
    spec = _spec(hub)
    seen: list[tuple[str, int, int]] = []
    root = download_model(spec, client=hub, progress=lambda s, d, t: seen.append((s, d, t)))
    assert root == model_path(spec)
    folder = part_dir(spec, spec.parts[0])
    assert (folder / "weights.bin").read_bytes() == _payload(50_000, 1)
    assert (part_dir(spec, spec.parts[1]) / "sub/dir/extra.safetensors").is_file()
    manifest = read_part_manifest(folder)
    assert manifest["commit"] == COMMIT
    assert manifest["files"]["config.json"]["sha256"] == hashlib.sha256(b'{"model_type": "toy"}').hexdigest()
    assert ("toy/weights.bin", 50_000, 50_000) in seen
    assert model_status(spec) == "present"
    assert [c.status for c in verify_model(spec)] == ["ok", "ok", "ok"]
    # a second run touches nothing
    hub.fetches.clear()
    download_model(spec, client=hub)
    assert hub.fetches == []


def test_interrupted_download_resumes_from_the_partial_file(hub, online) -> None:
    spec = _spec(hub)
    hub.cut_after["weights.bin"] = 20_000
    with pytest.raises(OfflineError, match="cannot reach the hub"):
        download_model(spec, client=hub)
    folder = part_dir(spec, spec.parts[0])
    partial = folder / "weights.bin.incomplete"
    assert partial.stat().st_size == 20_000 and not (folder / "weights.bin").exists()
    assert model_status(spec) == "missing"
    assert verify_model(spec)[0].status == "partial"

    download_model(spec, client=hub)
    assert ("weights.bin", 20_000) in hub.fetches  # continued, not restarted
    assert (folder / "weights.bin").read_bytes() == _payload(50_000, 1)
    assert not partial.exists()


def test_partial_of_another_version_is_restarted(hub, online) -> None:
    spec = _spec(hub)
    folder = part_dir(spec, spec.parts[0])
    folder.mkdir(parents=True)
    (folder / "weights.bin.incomplete").write_bytes(b"x" * 100)
    (folder / "weights.bin.incomplete.etag").write_text("an-old-etag")
    download_model(spec, client=hub)
    assert ("weights.bin", 0) in hub.fetches
    assert (folder / "weights.bin").read_bytes() == _payload(50_000, 1)


def test_checksum_mismatch_refetches_once(hub, online) -> None:
    spec = _spec(hub)
    hub.corrupt["weights.bin"] = 1
    download_model(spec, client=hub)
    assert [f for f in hub.fetches if f[0] == "weights.bin"] == [("weights.bin", 0), ("weights.bin", 0)]
    assert (part_dir(spec, spec.parts[0]) / "weights.bin").read_bytes() == _payload(50_000, 1)


def test_checksum_mismatch_twice_is_an_error_and_leaves_nothing(hub, online) -> None:
    spec = _spec(hub)
    hub.corrupt["weights.bin"] = 2
    with pytest.raises(WeightsError, match="failed verification twice"):
        download_model(spec, client=hub)
    folder = part_dir(spec, spec.parts[0])
    assert not (folder / "weights.bin").exists() and not (folder / "weights.bin.incomplete").exists()


def test_hub_hash_is_used_when_the_registry_has_none(hub, online) -> None:
    spec = _spec(hub, pinned_sha=False)
    hub.corrupt["weights.bin"] = 1
    download_model(spec, client=hub)
    assert len([f for f in hub.fetches if f[0] == "weights.bin"]) == 2  # caught by the etag (LFS sha256)


def test_registry_and_hub_disagreeing_stops_before_downloading(hub, online) -> None:
    spec = _spec(hub)
    hub.add("org/toy", "weights.bin", _payload(50_001, 9))  # the file changed upstream
    with pytest.raises(WeightsError, match="changed upstream"):
        download_model(spec, client=hub)
    assert [f for f in hub.fetches if f[0] == "weights.bin"] == []


def test_offline_is_one_clean_line_naming_files_and_folder(hub, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = _spec(hub)
    with pytest.raises(OfflineError) as err:
        download_model(spec, client=hub)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("offline (HF_HUB_OFFLINE is set): 3 file(s) of toy-model")
    assert "toy/weights.bin" in message and str(model_path(spec)) in message
    assert "toy/ ← org/toy@cccccccccccc" in message and "unset HF_HUB_OFFLINE" in message
    assert hub.fetches == []


def test_offline_with_files_in_place_succeeds(hub, online, monkeypatch) -> None:
    spec = _spec(hub)
    download_model(spec, client=hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download_model(spec, client=hub) == model_path(spec)
    with pytest.raises(OfflineError, match="--force"):
        download_model(spec, client=hub, force=True)


def test_unreachable_hub_lists_what_is_missing(hub, online) -> None:
    spec = _spec(hub)
    hub.down = True
    with pytest.raises(OfflineError, match=re.escape("cannot reach the hub: fake hub is down: 3 file(s)")):
        download_model(spec, client=hub)


def test_hugging_face_cache_is_reused_for_pinned_commits(hub, online, tmp_path, monkeypatch) -> None:
    spec = _spec(hub)
    hf_hub = tmp_path / "hfcache"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_hub))
    data = _payload(50_000, 1)
    sha = hashlib.sha256(data).hexdigest()
    blob = hf_hub / "models--org--toy" / "blobs" / sha
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snapshot = hf_hub / "models--org--toy" / "snapshots" / COMMIT / "weights.bin"
    snapshot.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    download_model(spec, client=hub)
    assert "weights.bin" not in [f[0] for f in hub.fetches]
    assert (part_dir(spec, spec.parts[0]) / "weights.bin").read_bytes() == data


def test_verify_reports_damage(hub, online) -> None:
    spec = _spec(hub)
    download_model(spec, client=hub)
    folder = part_dir(spec, spec.parts[0])
    (folder / "config.json").write_bytes(b'{"model_type": "tampered"}')
    (part_dir(spec, spec.parts[1]) / "sub/dir/extra.safetensors").unlink()
    checks = {c.path: c for c in verify_model(spec)}
    assert checks["weights.bin"].status == "ok" and "registry" in checks["weights.bin"].detail
    assert checks["config.json"].status == "sha256 mismatch" and "download record" in checks["config.json"].detail
    assert checks["sub/dir/extra.safetensors"].status == "missing"
    assert model_status(spec) == "partial"
    assert (folder / PART_MANIFEST).is_file()


# ---------------------------------------------------------------------------------------------------------------
# The real client (huggingface_hub metadata + http_get) against a local HTTP server that speaks the hub's headers


class _HubHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str | None] = []

    def log_message(self, *args: object) -> None:
        return None

    def _lookup(self) -> bytes | None:
        match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path)
        return self.files.get(f"{match[1]}/{match[3]}") if match else None

    def _headers(self, data: bytes, start: int) -> None:
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        data = self._lookup()
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        self.send_response(200)
        self._headers(data, 0)

    def do_GET(self) -> None:  # noqa: N802
        data = self._lookup()
        assert data is not None
        header = self.headers.get("Range")
        self.ranges.append(header)
        start = int(re.match(r"bytes=(\d+)-", header)[1]) if header else 0
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self._headers(data, start)
        self.wfile.write(data[start:])


@pytest.fixture
def local_hub(monkeypatch) -> Iterator[str]:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # frozen at import by conftest's env
    _HubHandler.files = {"org/toy/weights.bin": _payload(40_000, 3)}
    _HubHandler.ranges = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_real_client_resumes_with_a_range_request(local_hub, tmp_path) -> None:
    data = _HubHandler.files["org/toy/weights.bin"]
    part = PartSpec(
        name="toy",
        repo_id="org/toy",
        revision=COMMIT,
        pinned=True,
        licence="t",
        role="t",
        files=(FileSpec("weights.bin", size=len(data)),),
    )
    spec = ModelSpec(name="toy-model", description="t", kind="hub", licence="t", parts=(part,))
    folder = part_dir(spec, part)
    folder.mkdir(parents=True)
    (folder / "weights.bin.incomplete").write_bytes(data[:12_345])
    (folder / "weights.bin.incomplete.etag").write_text(hashlib.sha256(data).hexdigest())
    download_model(spec, client=HfHubClient(endpoint=local_hub, token=False))
    assert _HubHandler.ranges == ["bytes=12345-"]
    assert (folder / "weights.bin").read_bytes() == data
    assert read_part_manifest(folder)["commit"] == COMMIT


def test_real_client_names_a_missing_file(local_hub) -> None:
    client = HfHubClient(endpoint=local_hub, token=False)
    with pytest.raises(WeightsError, match="does not exist in org/toy"):
        client.resolve("org/toy", "nope.bin", COMMIT)


def test_real_client_unreachable_endpoint_is_fast(monkeypatch) -> None:
    import time

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    client = HfHubClient(endpoint="http://127.0.0.1:9", token=False, timeout=2.0)
    start = time.monotonic()
    with pytest.raises(HubUnreachable, match="unreachable"):
        client.resolve("org/toy", "weights.bin", COMMIT)
    assert time.monotonic() - start < 5


def test_force_refetches_but_keeps_files_when_the_hub_is_down(hub, online) -> None:
    spec = _spec(hub)
    download_model(spec, client=hub)
    hub.fetches.clear()
    download_model(spec, client=hub, force=True)
    assert sorted(f[0] for f in hub.fetches) == ["config.json", "sub/dir/extra.safetensors", "weights.bin"]
    hub.down = True
    download_model(spec, client=hub, force=True)  # unreachable: the verified files already here still count
    assert (part_dir(spec, spec.parts[0]) / "weights.bin").read_bytes() == _payload(50_000, 1)
