"""Cue sheets a DAW or NLE imports: story CSV, REAPER region CSV, Audacity labels, CMX3600 EDL; SMPTE timecode.

Every writer is a pure function from cues to text. Times are the plan's (seconds on the story timeline);
timecode is display only and starts at 00:00:00:00 (drop-frame shown ``HH:MM:SS;FF``). Layouts: REAPER's
Region/Marker Manager CSV (``#,Name,Start,End,Length``), Audacity labels
(https://manual.audacityteam.org/man/importing_and_exporting_labels.html), CMX3600 EDL; tests/test_audio_cues.py
holds an example of each.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..story.timecode import FrameRate, frames_to_timecode, seconds_to_frames
from ..text import one_line

CUE_FILES: dict[str, str] = {
    "story": "story.csv",
    "reaper": "reaper.csv",
    "audacity": "audacity.txt",
    "edl": "story.edl",
}


@dataclass(frozen=True)
class Cue:
    index: int
    start: float  # seconds
    end: float
    caption: str
    clip: str = ""  # the audio file the cue refers to (EDL clip name)

    @property
    def duration(self) -> float:
        return self.end - self.start


def split_cue_list(text: str) -> tuple[str, ...]:
    """``"story, reaper,,edl"`` → ``("story", "reaper", "edl")``: how ``--cues`` and a batch job's ``cues`` are
    written; ``check_cue_names`` validates the names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def check_cue_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validate ``--cues`` names (``story,reaper,audacity,edl``); returns them de-duplicated, in order."""
    unknown = [n for n in names if n not in CUE_FILES]
    if unknown:
        raise UsageError(f"unknown cue format {unknown[0]!r}; choose from {', '.join(CUE_FILES)}")
    return tuple(dict.fromkeys(names))


# -- writers ----------------------------------------------------------------------------------------------


def story_csv(cues: Sequence[Cue], rate: FrameRate) -> str:
    """``index,start,end,duration`` in seconds, the same in SMPTE at ``rate``, then the caption."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "start", "end", "duration", "start_tc", "end_tc", "duration_tc", "caption"])
    for cue in cues:
        first, last = seconds_to_frames(cue.start, rate), seconds_to_frames(cue.end, rate)
        writer.writerow(
            [
                cue.index,
                f"{cue.start:.6f}",
                f"{cue.end:.6f}",
                f"{cue.duration:.6f}",
                frames_to_timecode(first, rate),
                frames_to_timecode(last, rate),
                frames_to_timecode(last - first, rate),
                _one_line(cue.caption),
            ]
        )
    return buffer.getvalue()


def reaper_csv(cues: Sequence[Cue]) -> str:
    """REAPER Region/Marker Manager import: ``#,Name,Start,End,Length`` with ``R<n>`` regions, m:ss.fff times
    (set REAPER's ruler to Minutes:Seconds before importing)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["#", "Name", "Start", "End", "Length"])
    for cue in cues:
        start_ms, end_ms = round(cue.start * 1000), round(cue.end * 1000)
        writer.writerow(
            [f"R{cue.index}", _one_line(cue.caption), _clock(start_ms), _clock(end_ms), _clock(end_ms - start_ms)]
        )
    return buffer.getvalue()


def audacity_labels(cues: Sequence[Cue]) -> str:
    """Audacity label track: ``start<TAB>end<TAB>label``, seconds with 6 decimals."""
    return "".join(f"{c.start:.6f}\t{c.end:.6f}\t{_one_line(c.caption)}\n" for c in cues)


def cmx3600_edl(cues: Sequence[Cue], rate: FrameRate, title: str) -> str:
    """CMX3600 EDL: one stereo audio (``AA``) cut per event from an aux reel, clip name and caption as comments."""
    fcm = "DROP FRAME" if rate.drop_frame else "NON-DROP FRAME"
    lines = [f"TITLE: {_ascii(title)[:70] or 'audiostory'}", f"FCM: {fcm}", ""]
    for number, cue in enumerate(cues, start=1):
        first, last = seconds_to_frames(cue.start, rate), seconds_to_frames(cue.end, rate)
        src_in, src_out = frames_to_timecode(0, rate), frames_to_timecode(last - first, rate)
        rec_in, rec_out = frames_to_timecode(first, rate), frames_to_timecode(last, rate)
        lines.append(f"{number:03d}  {'AX':<8} {'AA':<5} {'C':<8} {src_in} {src_out} {rec_in} {rec_out}")
        if cue.clip:
            lines.append(f"* FROM CLIP NAME: {_ascii(cue.clip)}")
        lines.append(f"* COMMENT: {_ascii(cue.caption)}")
    return "\n".join(lines) + "\n"


def _clock(milliseconds: int) -> str:
    """REAPER Minutes:Seconds: ``m:ss.fff``, or ``h:mm:ss.fff`` from one hour."""
    seconds, ms = divmod(milliseconds, 1000)
    minutes, ss = divmod(seconds, 60)
    hours, mm = divmod(minutes, 60)
    if hours:
        return f"{hours}:{mm:02d}:{ss:02d}.{ms:03d}"
    return f"{minutes}:{ss:02d}.{ms:03d}"


def _one_line(text: str) -> str:
    return one_line(text)


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", _one_line(text)).encode("ascii", "ignore").decode("ascii")
    return folded.strip()
