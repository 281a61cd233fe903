"""`audiostory continue` through the real CLI with tiny-random: delivery, --only-new, --json, render of a
continued plan, and one-line errors (exit ≠ 0) for bad input before any model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story import StoryFolder
from tests.test_continue_api import input_signal

runner = CliRunner()
FAST = ["--model", "tiny-random", "--steps", "2", "--seed", "3", "--guidance", "1", "--preset", "none"]
NOTICE = "no trained audio understanding (resampler) weights"


def write_input(tmp_path, rate=48_000, channels=2, seconds=3.0, name="in.wav"):
    path = tmp_path / name
    sf.write(str(path), input_signal(rate, seconds, channels), rate, subtype="PCM_24")
    return path


def test_continue_only_new_json(tmp_path):
    source = write_input(tmp_path)
    out = tmp_path / "after"
    result = runner.invoke(
        app,
        [
            "continue",
            str(source),
            "rain, then thunder",
            "-d",
            "3",
            "--out",
            str(out),
            *FAST,
            "--only-new",
            "--json",
            "--stems",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"note: model 'tiny-random' has {NOTICE}" in result.stderr
    assert result.stderr.count(NOTICE) == 1
    summary = json.loads(result.stdout)
    assert list(summary) == [
        "story",
        "mix",
        "new_part",
        "new_part_lufs",
        "stems",
        "cues",
        "qc",
        "rendered",
        "seam_seconds",
        "seam",
        "integrated_lufs",
        "true_peak_dbtp",
    ]
    assert summary["new_part"] == str(out / "continuation.wav") and summary["mix"] == str(out / "mix.wav")
    assert summary["seam_seconds"] == 3.0 and summary["seam"]["continuous"] is True
    mix, rate = sf.read(summary["mix"], always_2d=True)
    new, _ = sf.read(summary["new_part"], always_2d=True)
    assert rate == 48_000 and mix.shape[0] == 6 * rate and new.shape[0] == 3 * rate
    np.testing.assert_array_equal(new, mix[3 * rate :])
    story = StoryFolder(out).load()
    assert story.events[0].status == "source" and story.source == "source/in.wav"
    assert len(summary["stems"]) == len(story.events)


def test_plan_only_then_render_a_continued_story(tmp_path):
    source = write_input(tmp_path, rate=22_050, channels=1)
    out = tmp_path / "after"
    result = runner.invoke(
        app, ["continue", str(source), "a dog barks", "-d", "2", "-o", str(out), *FAST, "--plan-only"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(out / "story.json")]
    assert not (out / "mix.wav").exists() and (out / "events" / "00-source.wav").is_file()
    result = runner.invoke(app, ["render", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out / "mix.wav") in result.stdout.split()
    assert sf.info(str(out / "mix.wav")).frames == 5 * 48_000


def bad_input(kind, tmp_path):
    path = tmp_path / f"{kind}.wav"
    if kind == "not-audio":
        path.write_text("plain text\n")
    elif kind == "zero-length":
        sf.write(str(path), np.zeros((0, 2), np.float32), 44_100)
    elif kind == "all-nan":
        sf.write(str(path), np.full((44_100, 1), np.nan, np.float32), 44_100, subtype="FLOAT")
    elif kind == "8-channel":
        sf.write(str(path), np.zeros((44_100, 8), np.float32), 44_100)
    elif kind == "1-hour":
        sf.write(str(path), np.zeros(3600 * 1000, np.int16), 1000, subtype="PCM_16")
    return path  # "unreadable-path": never written


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("not-audio", "is it damaged, or not audio at all?"),
        ("zero-length", "holds no audio (0 samples)"),
        ("all-nan", "contains NaN or infinite samples"),
        ("8-channel", "has 8 channels; audiostory takes mono or stereo (at most 2)"),
        ("1-hour", "the limit is 600 s (10:00)"),
        ("unreadable-path", "does not exist; check the path"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, kind, message):
    path = bad_input(kind, tmp_path)
    result = runner.invoke(app, ["continue", str(path), "more rain", "-d", "2", "-o", str(tmp_path / "o"), *FAST])
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output and "model tiny-random on" not in result.stderr  # before loading
    assert not (tmp_path / "o").exists()


def test_no_instruction_needs_a_listening_model(tmp_path):
    source = write_input(tmp_path)
    result = runner.invoke(app, ["continue", str(source), "-d", "2", "-o", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 2
    assert "cannot hear what to continue: give an INSTRUCTION" in result.stderr
    assert "model tiny-random on" not in result.stderr


def test_duration_limit_names_the_room_left(tmp_path):
    source = write_input(tmp_path)
    result = runner.invoke(app, ["continue", str(source), "rain", "-d", "3599", "-o", str(tmp_path / "o"), *FAST])
    assert result.exit_code == 2 and "use at most 3597" in result.stderr


CHECK_LIGHT = """
import sys
from typer.testing import CliRunner
from audiostory_cli.cli import app
for args in (["continue", "--help"], ["describe", "--help"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
print(",".join(m for m in ("torch", "transformers", "diffusers", "torchaudio") if m in sys.modules))
"""


def test_help_is_light():
    done = subprocess.run([sys.executable, "-c", CHECK_LIGHT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
