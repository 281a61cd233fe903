"""The model cache is never left half-written: a download stopped at any point (Ctrl-C, crash, full disk) leaves
no file under its final name, only the resumable ``.incomplete`` part, and the next run completes it.

Resume after a dropped connection, re-fetch after a checksum mismatch and the fast offline error are tested in
tests/test_models_download.py and tests/test_models_cli.py; model folders written by convert/train are swapped in
atomically (tests/test_models_checkpoint.py::test_force_replaces_atomically_and_failures_leave_no_trace).
"""

from __future__ import annotations

import errno

import pytest

import audiostory_cli.weights.download as download
from audiostory_cli.errors import AudiostoryError
from audiostory_cli.weights.download import (
    PART_MANIFEST,
    download_model,
    model_status,
    part_dir,
    read_part_manifest,
    verify_model,
)
from tests.test_models_download import FolderHub, _payload, _spec


@pytest.fixture
def hub(tmp_path, monkeypatch) -> FolderHub:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return FolderHub(tmp_path / "fakehub")


class StopMidFetch(FolderHub):
    """Sends ``cut`` bytes of ``weights.bin``, then fails with ``error`` (once)."""

    def __init__(self, root, cut: int, error: BaseException) -> None:
        super().__init__(root)
        self.cut, self.error = cut, error

    def fetch(self, remote, out, *, offset, on_bytes):
        if remote.path == "weights.bin" and self.error is not None:
            error, self.error = self.error, None
            data = (self.root / remote.repo_id / remote.path).read_bytes()[offset : offset + self.cut]
            out.write(data)
            on_bytes(len(data))
            raise error
        super().fetch(remote, out, offset=offset, on_bytes=on_bytes)


def assert_only_partial(spec) -> None:
    folder = part_dir(spec, spec.parts[0])
    assert not (folder / "weights.bin").exists()
    assert (folder / "weights.bin.incomplete").is_file()
    assert "weights.bin" not in read_part_manifest(folder).get("files", {})
    assert model_status(spec) != "present"
    assert {c.path: c.status for c in verify_model(spec)}["weights.bin"] == "partial"


@pytest.mark.parametrize(
    "error",
    [KeyboardInterrupt(), RuntimeError("process crashed"), OSError(errno.ENOSPC, "No space left on device")],
    ids=["ctrl-c", "crash", "disk-full"],
)
def test_a_stopped_download_leaves_only_the_partial_file_and_resumes(tmp_path, monkeypatch, error):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = StopMidFetch(tmp_path / "fakehub", cut=12_345, error=error)
    spec = _spec(hub)
    with pytest.raises(type(error)):
        download_model(spec, client=hub)
    assert_only_partial(spec)
    download_model(spec, client=hub)
    assert ("weights.bin", 12_345) in hub.fetches  # continued where it stopped
    assert (part_dir(spec, spec.parts[0]) / "weights.bin").read_bytes() == _payload(50_000, 1)
    assert [c.status for c in verify_model(spec)] == ["ok", "ok", "ok"]


def test_stopped_while_verifying_leaves_no_final_file(hub, monkeypatch):
    spec = _spec(hub)
    real_hash = download._hash_file

    def interrupted(path, **kwargs):
        if path.name.startswith("weights.bin"):
            raise KeyboardInterrupt
        return real_hash(path, **kwargs)

    monkeypatch.setattr(download, "_hash_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_model(spec, client=hub)
    assert_only_partial(spec)
    monkeypatch.setattr(download, "_hash_file", real_hash)
    download_model(spec, client=hub)
    assert model_status(spec) == "present"


def test_the_part_manifest_is_never_half_written(hub, monkeypatch):
    spec = _spec(hub)
    download_model(spec, client=hub)
    manifest = part_dir(spec, spec.parts[0]) / PART_MANIFEST
    before = manifest.read_bytes()
    (part_dir(spec, spec.parts[0]) / "config.json").unlink()  # forces one more download and manifest update

    import pathlib

    real = pathlib.Path.write_bytes

    def full_disk(self, data):
        real(self, data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk)
    with pytest.raises(AudiostoryError, match="disk full while writing"):
        download_model(spec, client=hub)
    assert manifest.read_bytes() == before  # the previous manifest, whole
    assert not list(manifest.parent.glob(".*.tmp"))
