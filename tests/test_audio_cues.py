"""SMPTE timecode (NDF and drop-frame) and the cue-sheet writers, parsed back with independent readers."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiostory_cli.audio.cues import (
    Cue,
    audacity_labels,
    check_cue_names,
    cmx3600_edl,
    reaper_csv,
    story_csv,
)
from audiostory_cli.errors import UsageError
from audiostory_cli.story.timecode import (
    FRAME_RATES,
    frame_rate,
    frames_to_timecode,
    seconds_to_frames,
    timecode_to_frames,
)

CUES = [
    Cue(1, 0.0, 12.5, "rain on a tin roof, heavy", "01-rain.wav"),
    Cue(2, 12.5, 14.04, 'a door "slams", hard', "02-door.wav"),
    Cue(3, 15.0, 3725.25, "café crowd\tmurmur\nand clinks", "03-cafe.wav"),
]


def test_non_drop_timecode():
    rate = frame_rate(25)
    assert frames_to_timecode(0, rate) == "00:00:00:00"
    assert seconds_to_frames(3.5, rate) == 88 and seconds_to_frames(3.46, rate) == 87  # half a frame goes up
    assert frames_to_timecode(seconds_to_frames(3725.24, rate), rate) == "01:02:05:06"
    assert frame_rate(23.976).label == "23.976" and not frame_rate(23.976).drop_frame


def test_drop_frame_labels_skip_two_frames_a_minute_except_every_tenth():
    rate = frame_rate(29.97)
    assert rate.drop_frame
    assert frames_to_timecode(1799, rate) == "00:00:59;29"
    assert frames_to_timecode(1800, rate) == "00:01:00;02"
    assert frames_to_timecode(17_982, rate) == "00:10:00;00"  # the tenth minute keeps its 00 and 01
    before = timecode_to_frames("01:04:59;29", rate)
    assert frames_to_timecode(before + 1, rate) == "01:05:00;02"
    assert frames_to_timecode(107_892, rate) == "01:00:00;00"  # 108 labels dropped per hour
    sixty = frame_rate(59.94)
    assert frames_to_timecode(3599, sixty) == "00:00:59;59"
    assert frames_to_timecode(3600, sixty) == "00:01:00;04"


@given(frames=st.integers(0, 24 * 3600 * 30 - 3000), rate=st.sampled_from(FRAME_RATES))
def test_timecode_round_trips(frames, rate):
    assert timecode_to_frames(frames_to_timecode(frames, rate), rate) == frames


def test_unknown_rates_and_cue_names_are_usage_errors():
    with pytest.raises(UsageError, match=r"--fps 26 is not supported; use one of 23.976, 24, 25"):
        frame_rate(26)
    with pytest.raises(UsageError, match="unknown cue format 'pdf'"):
        check_cue_names(["story", "pdf"])
    assert check_cue_names(["edl", "story", "edl"]) == ("edl", "story")


def test_story_csv_parses_back_to_the_plan():
    rate = frame_rate(25)
    rows = list(csv.DictReader(io.StringIO(story_csv(CUES, rate))))
    assert list(rows[0]) == ["index", "start", "end", "duration", "start_tc", "end_tc", "duration_tc", "caption"]
    for row, cue in zip(rows, CUES, strict=True):
        assert int(row["index"]) == cue.index
        assert float(row["start"]) == pytest.approx(cue.start, abs=1e-6)
        assert float(row["end"]) == pytest.approx(cue.end, abs=1e-6)
        assert float(row["duration"]) == pytest.approx(cue.duration, abs=1e-6)
        assert timecode_to_frames(row["start_tc"], rate) == seconds_to_frames(cue.start, rate)
        assert "\n" not in row["caption"] and "\t" not in row["caption"]
    assert rows[1]["caption"] == 'a door "slams", hard'
    assert rows[2]["end_tc"] == "01:02:05:06"


def _reaper_seconds(text: str) -> float:
    parts = text.split(":")
    seconds = float(parts[-1])
    for unit, value in zip((60, 3600), reversed(parts[:-1]), strict=False):
        seconds += unit * int(value)
    return seconds


def test_reaper_regions_parse_back():
    rows = list(csv.reader(io.StringIO(reaper_csv(CUES))))
    assert rows[0] == ["#", "Name", "Start", "End", "Length"]
    for row, cue in zip(rows[1:], CUES, strict=True):
        assert row[0] == f"R{cue.index}"
        assert _reaper_seconds(row[2]) == pytest.approx(cue.start, abs=5e-4)
        assert _reaper_seconds(row[3]) == pytest.approx(cue.end, abs=5e-4)
        assert _reaper_seconds(row[4]) == pytest.approx(cue.duration, abs=1e-3)
    assert rows[1][2:] == ["0:00.000", "0:12.500", "0:12.500"]
    assert rows[3][3] == "1:02:05.250"


def test_audacity_labels_parse_back():
    lines = audacity_labels(CUES).splitlines()
    assert len(lines) == len(CUES)
    for line, cue in zip(lines, CUES, strict=True):
        start, end, label = line.split("\t")
        assert float(start) == pytest.approx(cue.start, abs=1e-6)
        assert float(end) == pytest.approx(cue.end, abs=1e-6)
        assert label == " ".join(cue.caption.split())


EDL_EVENT = re.compile(
    r"^(\d{3})  (\S+)\s+(\S+)\s+(\S+)\s+(\d\d:\d\d:\d\d[:;]\d\d) (\d\d:\d\d:\d\d[:;]\d\d) "
    r"(\d\d:\d\d:\d\d[:;]\d\d) (\d\d:\d\d:\d\d[:;]\d\d)$"
)


@pytest.mark.parametrize("fps", [25.0, 29.97, 23.976])
def test_cmx3600_edl_parses_back(fps):
    rate = frame_rate(fps)
    text = cmx3600_edl(CUES, rate, "my story ✓")
    lines = text.splitlines()
    assert lines[0] == "TITLE: my story"
    assert lines[1] == ("FCM: DROP FRAME" if rate.drop_frame else "FCM: NON-DROP FRAME")
    events = [EDL_EVENT.match(line) for line in lines if EDL_EVENT.match(line)]
    assert len(events) == len(CUES)
    for match, cue in zip(events, CUES, strict=True):
        number, reel, track, transition, src_in, src_out, rec_in, rec_out = match.groups()
        assert (reel, track, transition) == ("AX", "AA", "C")
        start = timecode_to_frames(rec_in, rate) / rate.fps
        end = timecode_to_frames(rec_out, rate) / rate.fps
        assert start == pytest.approx(cue.start, abs=0.5 / rate.fps + 1e-9)
        assert end == pytest.approx(cue.end, abs=0.5 / rate.fps + 1e-9)
        assert timecode_to_frames(src_out, rate) - timecode_to_frames(src_in, rate) == timecode_to_frames(
            rec_out, rate
        ) - timecode_to_frames(rec_in, rate)
    assert "* FROM CLIP NAME: 02-door.wav" in lines
    assert all(line.isascii() for line in lines)
