"""`audiostory export` on the command line, and hostile input: one-line error, exit ≠ 0, nothing overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story.folder import StoryFolder
from tests.story_factory import make_rendered_story

runner = CliRunner()


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported_template(tmp_path_factory) -> Path:
    folder = make_rendered_story(tmp_path_factory.mktemp("template"), [1.5, 1.0, 1.2], kind="noise")
    result = runner.invoke(app, ["export", str(folder.root), "--stems", "--cues", "story,edl"])
    assert result.exit_code == 0, result.output
    return folder.root


@pytest.fixture
def exported(tmp_path, exported_template) -> StoryFolder:
    """A rendered, already exported story (a fresh copy): every hostile run must leave its files untouched."""
    root = tmp_path / "story"
    shutil.copytree(exported_template, root)
    return StoryFolder(root)


def fails(folder: StoryFolder, *args: str, match: str, code: int = 1) -> None:
    before = snapshot(folder.root)
    result = runner.invoke(app, ["export", str(folder.root), "--force", *args])
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert match in lines[0], lines[0]
    assert result.stdout == ""
    assert snapshot(folder.root) == before


def edit_plan(folder: StoryFolder, change) -> None:
    data = json.loads(folder.story_path.read_text())
    change(data)
    folder.story_path.write_text(json.dumps(data))


def event_path(folder: StoryFolder, index: int) -> Path:
    return folder.resolve(folder.load().event(index).file)


def test_export_prints_the_written_paths_on_stdout(tmp_path):
    folder = make_rendered_story(tmp_path, [1.5, 1.0], kind="tones")
    result = runner.invoke(app, ["export", str(folder.root), "--loudness", "podcast", "--cues", "reaper,audacity"])
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    assert printed == [
        str(folder.mix_path),
        str(folder.cues_dir / "reaper.csv"),
        str(folder.cues_dir / "audacity.txt"),
        str(folder.cues_dir / "qc.json"),
    ]
    assert all(Path(p).is_file() for p in printed)


def test_export_json_summary_and_overrides(tmp_path):
    folder = make_rendered_story(tmp_path, [1.5, 1.0], kind="noise")
    args = ["export", str(folder.root), "--lufs", "-18", "--true-peak", "-3", "--bit-depth", "16", "--json"]
    result = runner.invoke(app, [*args, "--sample-rate", "44100", "--stem-groups", "--fps", "29.97"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["integrated_lufs"] == pytest.approx(-18.0, abs=0.5)
    assert summary["true_peak_dbtp"] <= -3.0 and summary["met"] is True
    assert summary["stems"] == [str(folder.stem_groups_dir / "fx.wav")]
    assert sf.info(summary["mix"]).subtype == "PCM_16"


def test_existing_outputs_need_force(exported):
    before = snapshot(exported.root)
    result = runner.invoke(app, ["export", str(exported.root)])
    assert result.exit_code == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert snapshot(exported.root) == before


def test_missing_story_json(exported):
    exported.story_path.unlink()
    fails(exported, match="has no story.json")


def test_corrupt_story_json(exported):
    exported.story_path.write_text('{"schema_version": 1, "events": [')
    fails(exported, match="not valid JSON")


def test_missing_event_wav(exported):
    event_path(exported, 2).unlink()
    fails(exported, match="event 2: its render events/02-")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_samples(exported, value):
    path = event_path(exported, 1)
    audio, rate = sf.read(str(path), dtype="float32")
    audio[100, 0] = value
    sf.write(str(path), audio, rate, subtype="FLOAT")
    fails(exported, match="NaN or infinite samples")


def test_silence_cannot_be_normalised_but_exports_without_a_target(tmp_path):
    folder = make_rendered_story(tmp_path, [1.0, 1.0], kind="silence")
    runner.invoke(app, ["export", str(folder.root), "--loudness", "none"])
    fails(folder, match="the mix is silent")
    ok = runner.invoke(app, ["export", str(folder.root), "--force", "--loudness", "none"])
    assert ok.exit_code == 0, ok.output


def test_eight_channel_event(exported):
    path = event_path(exported, 3)
    frames = sf.info(str(path)).frames
    sf.write(str(path), np.zeros((frames, 8), dtype=np.float32), 44_100, subtype="FLOAT")
    fails(exported, match="has 8 channels")


def test_eight_khz_event(exported):
    path = event_path(exported, 1)
    sf.write(str(path), np.zeros((8000, 2), dtype=np.float32), 8000, subtype="FLOAT")
    fails(exported, match="is 8000 Hz but the story's renders are 44100 Hz")


def test_short_event_file(exported):
    path = event_path(exported, 2)
    audio, rate = sf.read(str(path), dtype="float32")
    sf.write(str(path), audio[: len(audio) // 2], rate, subtype="FLOAT")
    fails(exported, match="but the plan needs")


def test_overlapping_events(exported):
    edit_plan(exported, lambda d: d["events"][1].update(start=1.0))
    fails(exported, match="events must not overlap")


def test_events_beyond_the_total(exported):
    edit_plan(exported, lambda d: d.update(total_duration=3.0))
    fails(exported, match="after total_duration")


def test_unrendered_event(exported):
    edit_plan(exported, lambda d: d["events"][2].update(status="planned", file=None, render_hash=None))
    fails(exported, match="event 3 is not rendered yet; run `audiostory render")


def test_event_edited_after_rendering(exported):
    edit_plan(exported, lambda d: d["events"][0].update(caption="something else entirely"))
    fails(exported, match="event 1 was changed after it was rendered")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--loudness", "loud"], "unknown loudness preset 'loud'"),
        (["--fps", "26"], "--fps 26 is not supported"),
        (["--cues", "story,pdf"], "unknown cue format 'pdf'"),
        (["--sample-rate", "12345"], "--sample-rate 12345 is not supported"),
        (["--lufs", "+3"], "--lufs 3.0 must be between"),
    ],
)
def test_bad_flags_are_usage_errors(exported, args, match):
    fails(exported, *args, match=match, code=2)


def test_an_unreachable_target_is_delivered_with_a_warning(tmp_path):
    folder = make_rendered_story(tmp_path, [1.0], kind="tones")
    result = runner.invoke(app, ["export", str(folder.root), "--lufs", "-5", "--true-peak", "-20", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["met"] is False
    assert "warning: target not met" in result.stderr
    qc = json.loads((folder.cues_dir / "qc.json").read_text())
    assert qc["checks"] == {"integrated": False, "true_peak": True}
