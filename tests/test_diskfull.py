"""A full disk (ENOSPC) during any write: one clear line, exit 1, and every previous file intact.

Most tests simulate the failure where it happens (the kernel's ENOSPC from a file write, or libsndfile's bare
"System error." on a full disk); one fills a real, tiny tmpfs when the machine allows mounting one (root).
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story.folder import StoryFolder
from tests.story_factory import make_rendered_story, make_story

runner = CliRunner()
Usage = namedtuple("Usage", "total used free")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def delivered(tmp_path) -> StoryFolder:
    folder = make_rendered_story(tmp_path, [1.0, 1.5])
    result = runner.invoke(app, ["export", str(folder.root), "--cues", "story,reaper"])
    assert result.exit_code == 0, result.output
    return folder


def enospc_after_half_of_text(monkeypatch) -> None:
    """``Path.write_bytes`` (what story.json, plans and cue sheets go through) writes half, then the disk is full."""
    real = pathlib.Path.write_bytes

    def write_bytes(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


def libsndfile_fails(monkeypatch, *, free: int, after: int = 0) -> None:
    """soundfile.write fails like libsndfile on a full disk (half a file, then "System error."), after ``after``
    successful writes; ``shutil.disk_usage`` reports ``free`` bytes."""
    import audiostory_cli.audio.io as audio_io

    real = sf.write
    calls = {"n": 0}

    def write(file, data, samplerate, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= after:
            return real(file, data, samplerate, *args, **kwargs)
        real(file, data[: len(data) // 2], samplerate, *args, **kwargs)
        raise sf.LibsndfileError(2, prefix="")  # what a full disk looks like from soundfile

    monkeypatch.setattr(audio_io.sf, "write", write)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - free, free))


def test_disk_full_while_saving_the_plan_keeps_story_json(delivered, monkeypatch):
    before = snapshot(delivered.root)
    enospc_after_half_of_text(monkeypatch)
    result = runner.invoke(app, ["plan", "set", str(delivered.root), "2", "--caption", "a louder thunder clap"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "disk full while writing" in line and "previous files are intact" in line
    assert snapshot(delivered.root) == before and leftovers(delivered.root) == []


def test_disk_full_while_writing_the_mix_keeps_the_previous_delivery(delivered, monkeypatch):
    before = snapshot(delivered.root)
    libsndfile_fails(monkeypatch, free=0)
    result = runner.invoke(app, ["export", str(delivered.root), "--force", "--cues", "story,reaper"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"disk full while writing {delivered.mix_path}" in line
    assert snapshot(delivered.root) == before and leftovers(delivered.root) == []


def test_a_write_failure_with_space_left_is_not_called_a_full_disk(delivered, monkeypatch):
    before = snapshot(delivered.root)
    libsndfile_fails(monkeypatch, free=10**9)
    result = runner.invoke(app, ["export", str(delivered.root), "--force", "--cues", "story,reaper"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "cannot write audio: System error." in line and "disk full" not in line
    assert snapshot(delivered.root) == before and leftovers(delivered.root) == []


def test_disk_full_during_render_keeps_finished_events(tmp_path, monkeypatch):
    folder = StoryFolder(tmp_path / "planned")
    folder.save(make_story([1.0, 0.8]))
    libsndfile_fails(monkeypatch, free=0, after=1)  # the first event is written, the second hits a full disk
    result = runner.invoke(app, ["render", str(folder.root)])
    assert result.exit_code == 1
    line = one_error_line_after_progress(result)
    assert "disk full while writing" in line and "events/02-" in line
    story = folder.load()
    assert [e.status for e in story.events] == ["rendered", "planned"]
    assert sf.info(str(folder.resolve(story.event(1).file))).frames > 0
    assert leftovers(folder.root) == [] and sorted(p.name for p in folder.events_dir.iterdir()) == [
        Path(story.event(1).file).name
    ]


def one_error_line_after_progress(result) -> str:
    """render prints its banner and progress first; the error is still exactly one line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    return errors[0]


# -- a real full disk ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs; only where this process may mount one (root on Linux), otherwise skipped."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tiny tmpfs needs root on Linux; the simulated ENOSPC tests cover the logic")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the file system, then give back ``leave`` bytes."""
    filler = disk / "filler.bin"
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left to flush on close
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with open(filler, "r+b") as fh:
        fh.truncate(max(0, filler.stat().st_size - leave))
    return filler


def test_a_real_full_disk(tiny_disk):
    folder = make_rendered_story(tiny_disk, [1.0])
    assert runner.invoke(app, ["export", str(folder.root), "--cues", "story"]).exit_code == 0
    before = snapshot(folder.root)

    filler = fill(tiny_disk, leave=64 * 1024)  # cue sheets fit, the 280 KB mix does not
    result = runner.invoke(app, ["export", str(folder.root), "--force", "--cues", "story"])
    assert result.exit_code == 1
    assert f"disk full while writing {folder.mix_path}" in one_error_line(result)
    assert snapshot(folder.root) == before and leftovers(folder.root) == []

    filler.unlink()
    fill(tiny_disk, leave=0)
    result = runner.invoke(app, ["plan", "set", str(folder.root), "1", "--caption", "a heavier rain"])
    assert result.exit_code == 1
    assert "disk full while writing" in one_error_line(result)
    assert snapshot(folder.root) == before and leftovers(folder.root) == []
    assert folder.load().event(1).caption == "synthetic event number 1"

    (tiny_disk / "filler.bin").unlink()
    result = runner.invoke(app, ["export", str(folder.root), "--force", "--cues", "story"])
    assert result.exit_code == 0, result.output
