"""`export_story` delivery contract on synthetic renders: loudness per preset, true peak, stems null, cues, length."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import soundfile as sf

from audiostory_cli.app.export import ExportOptions, export_story, last_export_options
from audiostory_cli.errors import AudioInputError, OutputExistsError
from audiostory_cli.story.folder import StoryFolder
from audiostory_cli.story.timecode import frame_rate, timecode_to_frames
from tests.story_factory import make_rendered_story

ALL_CUES = ("story", "reaper", "audacity", "edl")
TARGETS = {
    "broadcast": (-23.0, -1.0),
    "atsc": (-24.0, -2.0),
    "podcast": (-16.0, -1.0),
    "streaming": (-14.0, -1.0),
    "none": (None, -0.1),
}


def read(path):
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return data.T, rate


def fft_true_peak_db(audio: np.ndarray, factor: int = 4) -> float:
    """Independent 4× true-peak measurement (FFT interpolation); the mix starts and ends de-clicked."""
    up = scipy.signal.resample(audio, audio.shape[-1] * factor, axis=-1)
    return 20 * math.log10(float(np.max(np.abs(up))))


def null_db(stems: list[np.ndarray], mix: np.ndarray) -> float:
    residual = float(np.max(np.abs(np.sum(stems, axis=0) - mix)))
    return 20 * math.log10(residual) if residual > 0 else -math.inf


def rich_story(tmp_path, name="story"):
    """Four events: a crossfade, a short event (shorter fade), a gap, a mono render, two stem groups."""
    folder = make_rendered_story(
        tmp_path,
        [2.0, 1.5, 0.8, 2.0],
        gaps=[0.0, 0.0, 0.0, 0.4],
        tail=0.3,
        kind=["noise", "tones", "tones", "noise"],
        stems=["amb", "fx", "fx", "amb"],
        name=name,
    )
    return folder


def check_cues_parse_back(folder: StoryFolder, fps: float) -> None:
    story = folder.load()
    rate = frame_rate(fps)
    rows = list(csv.DictReader((folder.cues_dir / "story.csv").open(encoding="utf-8")))
    reaper = list(csv.reader((folder.cues_dir / "reaper.csv").open(encoding="utf-8")))[1:]
    labels = (folder.cues_dir / "audacity.txt").read_text(encoding="utf-8").splitlines()
    edl = [line.split() for line in (folder.cues_dir / "story.edl").read_text().splitlines() if line[:3].isdigit()]
    assert len(rows) == len(reaper) == len(labels) == len(edl) == len(story.events)
    for event, row, region, label, cut in zip(story.events, rows, reaper, labels, edl, strict=True):
        assert (float(row["start"]), float(row["end"])) == pytest.approx((event.start, event.end), abs=1e-6)
        assert row["caption"] == event.caption
        minutes, seconds = region[2].split(":")
        assert 60 * int(minutes) + float(seconds) == pytest.approx(event.start, abs=5e-4)
        start, end, text = label.split("\t")
        assert (float(start), float(end), text) == (pytest.approx(event.start), pytest.approx(event.end), event.caption)
        rec_in, rec_out = timecode_to_frames(cut[-2], rate), timecode_to_frames(cut[-1], rate)
        assert rec_in / rate.fps == pytest.approx(event.start, abs=0.5 / rate.fps + 1e-9)
        assert rec_out / rate.fps == pytest.approx(event.end, abs=0.5 / rate.fps + 1e-9)


@pytest.mark.parametrize("preset", list(TARGETS))
def test_export_meets_each_preset(tmp_path, preset):
    folder = rich_story(tmp_path)
    story = folder.load()
    # event 3 renders in mono: it must be centred, not dropped
    event3 = folder.resolve(story.events[2].file)
    mono, rate = sf.read(str(event3), dtype="float32")
    sf.write(str(event3), mono[:, 0], rate, subtype="FLOAT")
    options = ExportOptions(loudness=preset, stems=True, stem_groups=True, cues=ALL_CUES, fps=25)
    result = export_story(folder, options)
    lufs_target, ceiling = TARGETS[preset]

    mix, rate = read(folder.mix_path)
    assert rate == 48_000 and sf.info(str(folder.mix_path)).subtype == "PCM_24"
    assert mix.shape == (2, round(story.total_duration * 48_000))  # the planned total, to the sample
    measured = pyloudnorm.Meter(rate).integrated_loudness(mix.T)
    if lufs_target is not None:
        assert measured == pytest.approx(lufs_target, abs=0.5)
    assert fft_true_peak_db(mix) <= ceiling
    assert result.qc["true_peak_dbtp"] <= ceiling and result.qc["met"] is True

    event_stems = [read(p)[0] for p in result.stems if p.stem[:2].isdigit()]
    group_stems = [read(p)[0] for p in result.stems if not p.stem[:2].isdigit()]
    assert len(event_stems) == 4 and len(group_stems) == 2
    assert all(s.shape == mix.shape for s in event_stems + group_stems)
    assert null_db(event_stems, mix) <= -60 and null_db(group_stems, mix) <= -60
    assert result.qc["stems_residual_dbfs"]["events"] <= -60

    check_cues_parse_back(folder, 25)
    qc = json.loads((folder.cues_dir / "qc.json").read_text())
    assert qc == result.qc
    assert qc["integrated_lufs"] == pytest.approx(measured, abs=0.01)
    for key in ("loudness_range_lu", "true_peak_dbtp", "sample_peak_dbfs"):
        assert isinstance(qc[key], float)
    assert qc["sample_peak_dbfs"] <= qc["true_peak_dbtp"] + 1e-6
    assert qc["target"] == {
        "preset": preset,
        "integrated_lufs": lufs_target,
        "true_peak_dbtp": ceiling,
        "tolerance_lu": 0.5,
    }
    assert [e["index"] for e in qc["events"]] == [1, 2, 3, 4]
    assert all(isinstance(e["integrated_lufs"], float) for e in qc["events"])


@pytest.mark.parametrize(
    ("rate", "bits", "subtype"), [(44_100, 16, "PCM_16"), (96_000, 32, "FLOAT"), (32_000, 24, "PCM_24")]
)
def test_formats_and_exact_length(tmp_path, rate, bits, subtype):
    folder = make_rendered_story(tmp_path, [1.234567, 0.987654], tail=0.111111, kind="tones")
    total = folder.load().total_duration
    result = export_story(folder, ExportOptions(sample_rate=rate, bit_depth=bits, stems=True, lufs=-20.0))
    info = sf.info(str(result.mix))
    assert (info.samplerate, info.subtype, info.channels) == (rate, subtype, 2)
    assert info.frames == round(total * rate)
    mix, _ = read(result.mix)
    assert null_db([read(p)[0] for p in result.stems], mix) <= -60
    assert pyloudnorm.Meter(rate).integrated_loudness(mix.T) == pytest.approx(-20.0, abs=0.5)
    assert result.qc["target"]["true_peak_dbtp"] == -1.0  # --lufs alone keeps the story preset's ceiling


def test_overwrite_needs_force_and_force_replaces_the_previous_set(tmp_path):
    folder = make_rendered_story(tmp_path, [1.5, 1.5], kind="noise")
    first = export_story(folder, ExportOptions(stems=True, cues=("story", "edl")))
    before = {p: p.read_bytes() for p in first.written}
    with pytest.raises(OutputExistsError, match=r"mix.wav|stems/01|story.csv"):
        export_story(folder, ExportOptions(stems=True, cues=("story", "edl")))
    assert {p: p.read_bytes() for p in first.written} == before
    # a stale stem from the previous export (listed in its qc.json) goes; a file the user put there stays
    (folder.stems_dir / "my-notes.wav").write_bytes(b"mine")
    second = export_story(folder, ExportOptions(loudness="podcast", cues=("story",), force=True))
    assert not any(p.exists() for p in first.stems)
    assert set(second.removed) == {*first.stems, folder.cues_dir / "story.edl"}
    assert (folder.stems_dir / "my-notes.wav").read_bytes() == b"mine"
    assert second.qc["target"]["preset"] == "podcast"


def test_last_export_options_replay_the_previous_export(tmp_path):
    folder = make_rendered_story(tmp_path, [1.5, 1.0], kind="noise")
    assert last_export_options(folder) is None
    options = ExportOptions(loudness="streaming", stems=True, cues=("reaper", "audacity"), fps=29.97)
    export_story(folder, options)
    replay = last_export_options(folder)
    assert replay == ExportOptions(loudness="streaming", stems=True, cues=("reaper", "audacity"), fps=29.97, force=True)
    assert export_story(folder, replay).qc["fps"] == "29.97"


def test_silent_story_exports_with_no_loudness_target(tmp_path):
    folder = make_rendered_story(tmp_path, [1.0, 1.0], kind="silence")
    result = export_story(folder, ExportOptions(loudness="none"))
    mix, _ = read(result.mix)
    assert not mix.any()
    assert result.qc["silent"] is True and result.qc["integrated_lufs"] is None
    assert result.qc["events"][0]["silent"] is True


def test_render_length_tolerance_and_source_events(tmp_path):
    folder = make_rendered_story(tmp_path, [1.0, 1.0], kind="noise")
    story = folder.load()
    first, second = (folder.resolve(e.file) for e in story.events)
    audio, rate = sf.read(str(first), dtype="float32")
    sf.write(str(first), audio[:-2], rate, subtype="FLOAT")  # two samples short: padded with silence
    extra = np.concatenate([*[sf.read(str(second), dtype="float32")[0]], np.zeros((4410, 2), np.float32)])
    sf.write(str(second), extra, rate, subtype="FLOAT")  # 0.1 s long: trimmed
    # a continuation input ("source") exports like a rendered event, whatever its render hash
    story.events[0].status = "source"
    story.events[0].render_hash = None
    story.reflow()  # a continuation numbers its source event 0
    folder.save(story)
    result = export_story(folder, ExportOptions())
    assert result.qc["frames"] == round(story.total_duration * 48_000)
    sf.write(str(first), audio[:-3], rate, subtype="FLOAT")
    with pytest.raises(AudioInputError, match=r"event 0 render events/01-.* but the plan needs"):
        export_story(folder, ExportOptions(force=True))
