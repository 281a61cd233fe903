"""Interruptions: Ctrl-C (a real SIGINT) or a crash during render keeps every finished event and a valid
story.json, and a re-run renders only what is missing; a crash during export never leaves a half-written mix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story.folder import StoryFolder
from tests.story_factory import make_rendered_story, make_story

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SIGINT_PROMPT = "rain on a tin roof, then thunder rolls, a dog barks"  # three events: a wide window
WINDOW_TIMEOUT_S = 150.0  # start-up, planning and the first event on a loaded 2-core machine
EXIT_TIMEOUT_S = 60.0


def leftovers(root: Path) -> list[str]:
    """Temporary files of atomic writes (``.name.XXXX.tmp``) anywhere in the folder."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))


def statuses(path: Path) -> list[str] | None:
    """Event statuses in story.json, or None while it does not exist yet (it is only ever replaced whole)."""
    try:
        return [e["status"] for e in json.loads(path.read_text(encoding="utf-8"))["events"]]
    except FileNotFoundError:
        return None


def files_with_times(folder: StoryFolder) -> dict[int, tuple[bytes, int]]:
    story = folder.load()
    result = {}
    for event in story.events:
        if event.file:
            path = folder.resolve(event.file)
            result[event.index] = (path.read_bytes(), path.stat().st_mtime_ns)
    return result


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals to send SIGINT to a child process")
def test_sigint_mid_render_keeps_finished_events_and_render_resumes(tmp_path):
    out = tmp_path / "story"
    log_out, log_err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    command = [
        sys.executable,
        "-m",
        "audiostory_cli",
        "tell",
        SIGINT_PROMPT,
        "--duration",
        "6",
        "--out",
        str(out),
        "--model",
        "tiny-random",
        "--steps",
        "2",
        "--seed",
        "3",
        "--yes",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log_out, "wb") as stdout, open(log_err, "wb") as stderr:
        # default SIGINT in the child even when this test runs in a background job, which ignores SIGINT and
        # passes that on (a Python started with SIGINT ignored never raises KeyboardInterrupt)
        child = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # wait until the first event is on disk (story.json says so) while others are still to render
            deadline = time.monotonic() + WINDOW_TIMEOUT_S
            seen: list[str] | None = None
            while time.monotonic() < deadline and child.poll() is None:
                seen = statuses(out / "story.json")
                if seen and "rendered" in seen and "planned" in seen:
                    break
                time.sleep(0.02)
            assert child.poll() is None, f"tell ended before it could be interrupted: {log_err.read_text()}"
            assert seen and "rendered" in seen and "planned" in seen, f"never mid-render: {seen}"
            child.send_signal(signal.SIGINT)
            code = child.wait(timeout=EXIT_TIMEOUT_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    stderr_text = log_err.read_text(encoding="utf-8")
    assert code == 130, stderr_text
    assert "Traceback" not in stderr_text
    errors = [line for line in stderr_text.splitlines() if line.startswith("error:")]
    assert errors == ["error: interrupted; finished work is kept, run the same command again to resume"]
    assert log_out.read_text() == ""  # nothing delivered, nothing claimed

    # what was finished is intact and described by a valid story.json; nothing half-written is left
    folder = StoryFolder(out)
    story = folder.load()
    done = [e.index for e in story.events if e.status == "rendered"]
    missing = [e.index for e in story.events if e.status != "rendered"]
    assert done and missing
    for index in done:
        event = story.event(index)
        assert sf.info(str(folder.resolve(event.file))).frames == round(story.render_length(event) * 44_100)
    assert leftovers(out) == [] and not folder.mix_path.exists()
    kept = files_with_times(folder)

    # `render` finishes the job and renders only the missing events
    result = runner.invoke(app, ["render", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rendered"] == missing
    after = files_with_times(folder)
    assert {i: after[i] for i in done} == kept  # same bytes, never rewritten
    assert all(e.status == "rendered" for e in folder.load().events)
    assert folder.mix_path.is_file() and leftovers(out) == []


@pytest.fixture
def planned(tmp_path) -> StoryFolder:
    folder = StoryFolder(tmp_path / "planned")
    folder.save(make_story([1.0, 1.2, 0.8]))
    return folder


def test_crash_during_render_keeps_finished_events_and_render_redoes_only_the_rest(planned, monkeypatch):
    import audiostory_cli.app.pipeline as pipeline

    real_decode = pipeline._decode
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in the decoder")
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_decode", crash_on_second)
    result = runner.invoke(app, ["render", str(planned.root)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: internal error: RuntimeError: simulated crash in the decoder")
    assert "Traceback" not in result.output
    story = planned.load()
    assert [e.status for e in story.events] == ["rendered", "planned", "planned"]
    assert leftovers(planned.root) == []
    kept = files_with_times(planned)

    monkeypatch.setattr(pipeline, "_decode", real_decode)
    result = runner.invoke(app, ["render", str(planned.root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rendered"] == [2, 3]
    assert files_with_times(planned)[1] == kept[1]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def half_then(error: BaseException):
    """A stand-in for soundfile.write that leaves half a file behind, then fails like a crash or Ctrl-C."""
    real_write = sf.write

    def write(file, data, samplerate, *args, **kwargs):
        real_write(file, data[: len(data) // 2], samplerate, *args, **kwargs)
        raise error

    return write


@pytest.mark.parametrize(("error", "code"), [(RuntimeError("simulated crash"), 1), (KeyboardInterrupt(), 130)])
def test_crash_during_export_never_leaves_a_half_written_mix(tmp_path, monkeypatch, error, code):
    import audiostory_cli.audio.io as audio_io

    delivered = make_rendered_story(tmp_path, [1.0, 1.5], name="delivered")
    assert runner.invoke(app, ["export", str(delivered.root)]).exit_code == 0
    fresh = make_rendered_story(tmp_path, [1.0, 1.5], name="fresh")
    before = snapshot(delivered.root)

    monkeypatch.setattr(audio_io.sf, "write", half_then(error))
    for folder, args in ((delivered, ["--force"]), (fresh, [])):
        result = runner.invoke(app, ["export", str(folder.root), *args])
        assert result.exit_code == code, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert leftovers(folder.root) == []
    assert snapshot(delivered.root) == before  # the previous mix (and everything else) untouched
    assert not fresh.mix_path.exists()
