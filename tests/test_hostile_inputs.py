"""Hostile input through the real CLI.

Every case in ``CASES`` must exit non-zero with exactly one ``error:`` line on stderr (no traceback, nothing on
stdout) and leave the workspace (the story folder, and any would-be ``--out`` folder) byte-for-byte unchanged.
Audio inputs go through the command that reads audio files (``export`` reads every event render).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story.folder import StoryFolder
from tests.story_factory import make_rendered_story

runner = CliRunner()
PROMPT = "rain on a tin roof, then thunder rolls"
RATE = 44_100
BIG_FILE = 64 * 1024 * 1024


# -- the workspace and its snapshot ----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` (not following links): names, kinds, bytes, link targets, permissions."""
    entries: dict[str, object] = {}
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = Path(directory) / name
            key = str(path.relative_to(root))
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entries[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[key] = ("dir", stat.S_IMODE(info.st_mode))
            elif stat.S_ISREG(info.st_mode) and info.st_size > BIG_FILE:  # the sparse 10-hour file
                entries[key] = ("big file", stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns)
            elif stat.S_ISREG(info.st_mode) and os.access(path, os.R_OK):
                entries[key] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
            else:
                entries[key] = ("other", stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size)
    return entries


@pytest.fixture(scope="module")
def story_template(tmp_path_factory) -> Path:
    """A rendered and exported three-event story (tiny-random, 44.1 kHz float event renders)."""
    folder = make_rendered_story(tmp_path_factory.mktemp("template"), [1.5, 1.0, 1.2], kind="noise")
    result = runner.invoke(app, ["export", str(folder.root), "--cues", "story,edl"])
    assert result.exit_code == 0, result.output
    return folder.root


@dataclass(frozen=True)
class Workspace:
    root: Path  # snapshotted before and after every case

    @property
    def story(self) -> StoryFolder:
        return StoryFolder(self.root / "story")

    def event_path(self, index: int) -> Path:
        story = self.story.load()
        return self.story.resolve(story.event(index).file)

    def edit_plan(self, change: Callable[[dict], None]) -> None:
        data = json.loads(self.story.story_path.read_text())
        change(data)
        self.story.story_path.write_text(json.dumps(data))


@pytest.fixture
def workspace(tmp_path, story_template) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    shutil.copytree(story_template, root / "story", symlinks=True)
    (root / "afile.txt").write_text("a file the user made\n")
    return Workspace(root)


# -- hostile files --------------------------------------------------------------------------------------------


def replace_bytes(index: int, make: Callable[[bytes], bytes]) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        path = ws.event_path(index)
        path.write_bytes(make(path.read_bytes()))

    return setup


def replace_audio(
    index: int, channels: int, rate: int, *, value: float | None = None, frames: int | None = None
) -> Callable[[Workspace], None]:
    """Event ``index`` becomes a float WAV of the planned length in seconds (or ``frames``) at ``rate``."""

    def setup(ws: Workspace) -> None:
        path = ws.event_path(index)
        seconds = sf.info(str(path)).frames / RATE
        n = round(seconds * rate) if frames is None else frames
        audio = np.full((n, channels), 0.01, dtype=np.float32)
        if value is not None:
            audio[n // 2, 0] = value
        sf.write(str(path), audio, rate, subtype="FLOAT")

    return setup


def ten_hour_wav(ws: Workspace) -> None:
    write_ten_hours(ws.event_path(1))


def write_ten_hours(path: Path) -> None:
    """A real 10-hour WAV header over a sparse file (3.2 GB that takes no disk): it must be refused unread."""
    sf.write(str(path), np.zeros(1, dtype=np.float32), RATE, subtype="PCM_16")
    header = path.read_bytes()
    data_at = header.index(b"data")
    size = 10 * 3600 * RATE * 2
    with open(path, "r+b") as fh:
        fh.seek(4)
        fh.write(struct.pack("<I", data_at + size))
        fh.seek(data_at + 4)
        fh.write(struct.pack("<I", size))
        fh.truncate(data_at + 8 + size)


def event_is_directory(ws: Workspace) -> None:
    path = ws.event_path(2)
    path.unlink()
    path.mkdir()


def event_is_fifo(ws: Workspace) -> None:
    path = ws.event_path(2)
    path.unlink()
    os.mkfifo(path)


def event_unreadable(ws: Workspace) -> None:
    ws.event_path(1).chmod(0)


def event_links_outside(ws: Workspace) -> None:
    path = ws.event_path(1)
    outside = ws.root / "outside.wav"
    shutil.copyfile(path, outside)
    path.unlink()
    path.symlink_to(outside)


# -- hostile inputs for `continue` (written to ws/in.wav) ----------------------------------------------------------


def input_audio(channels: int, value: float | None = None) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        audio = np.full((2 * RATE, channels), 0.01, dtype=np.float32)
        if value is not None:
            audio[RATE, -1] = value
        sf.write(str(ws.root / "in.wav"), audio, RATE, subtype="FLOAT")

    return setup


def input_bytes(make: Callable[[bytes], bytes]) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        input_audio(2)(ws)
        path = ws.root / "in.wav"
        path.write_bytes(make(path.read_bytes()))

    return setup


def input_special(kind: str) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        path = ws.root / "in.wav"
        if kind == "ten-hours":
            write_ten_hours(path)
        elif kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "unreadable":
            input_audio(2)(ws)
            path.chmod(0)

    return setup


# -- hostile plans --------------------------------------------------------------------------------------------


def plan_text(make: Callable[[str], str]) -> Callable[[Workspace], None]:
    def setup(ws: Workspace) -> None:
        path = ws.story.story_path
        path.write_text(make(path.read_text()))

    return setup


def plan_edit(change: Callable[[dict], None]) -> Callable[[Workspace], None]:
    return lambda ws: ws.edit_plan(change)


def swap_first_two(data: dict) -> None:
    data["events"][0], data["events"][1] = data["events"][1], data["events"][0]


def nothing(ws: Workspace) -> None:
    return None


def remove_story_json(ws: Workspace) -> None:
    ws.story.story_path.unlink()


# -- the cases ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # "{story}" and "{ws}" are filled in
    match: str
    setup: Callable[[Workspace], None] = nothing
    code: int = 1
    marks: tuple = ()


def tell(*extra: str, prompt: str = PROMPT, duration: str = "5") -> tuple[str, ...]:
    return ("tell", prompt, "--duration", duration, "--out", "{ws}/out", "--model", "tiny-random", *extra)


def cont(*extra: str, duration: str = "4") -> tuple[str, ...]:
    return (
        "continue",
        "{ws}/in.wav",
        "birds return",
        "--duration",
        duration,
        "--out",
        "{ws}/out",
        "--model",
        "tiny-random",
        *extra,
    )


EXPORT = ("export", "{story}", "--force")
RENDER = ("render", "{story}")
not_root = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")

CASES = [
    # audio files (event renders, read by export)
    Case(
        "wav-corrupt", EXPORT, "cannot read event 1 render", replace_bytes(1, lambda b: b[:12] + bytes(range(256)) * 40)
    ),
    Case("wav-truncated-header", EXPORT, "cannot read event 1 render", replace_bytes(1, lambda b: b[:30])),
    Case("wav-truncated-data", EXPORT, "but the plan needs", replace_bytes(2, lambda b: b[: len(b) // 2])),
    Case("wav-zero-length", EXPORT, "cannot read event 3 render", replace_bytes(3, lambda b: b"")),
    Case("wav-no-samples", EXPORT, "holds no audio (0 samples)", replace_audio(1, 2, RATE, frames=0)),
    Case("wav-not-audio", EXPORT, "cannot read event 2 render", replace_bytes(2, lambda b: b"just some text\n")),
    Case("wav-8-channels", EXPORT, "has 8 channels", replace_audio(3, 8, RATE)),
    Case("wav-192khz", EXPORT, "is 192000 Hz but the story's renders are 44100 Hz", replace_audio(1, 2, 192_000)),
    Case("wav-nan", EXPORT, "NaN or infinite samples", replace_audio(2, 2, RATE, value=float("nan"))),
    Case("wav-inf", EXPORT, "NaN or infinite samples", replace_audio(2, 2, RATE, value=float("-inf"))),
    Case("wav-10-hours", EXPORT, "is 36000.0 s long", ten_hour_wav),
    Case("wav-directory", EXPORT, "its render events/02-", event_is_directory),
    Case("wav-fifo", EXPORT, "its render events/02-", event_is_fifo),
    Case("wav-unreadable", EXPORT, "cannot read event 1 render", event_unreadable, marks=(not_root,)),
    Case("wav-symlink-outside", EXPORT, "points outside", event_links_outside),
    # audio files given to `continue`
    Case("continue-corrupt", cont(), "is not a valid WAV file", input_bytes(lambda b: b[:12] + bytes(200))),
    Case("continue-truncated-header", cont(), "is not a valid WAV file", input_bytes(lambda b: b[:30])),
    Case("continue-zero-length", cont(), "is not a valid WAV file", input_bytes(lambda b: b"")),
    Case("continue-8-channels", cont(), "has 8 channels", input_audio(8)),
    Case("continue-nan", cont(), "NaN or infinite samples", input_audio(2, float("nan"))),
    Case("continue-inf", cont(), "NaN or infinite samples", input_audio(1, float("inf"))),
    Case("continue-10-hours", cont(), "is 10:00:00 long", input_special("ten-hours")),
    Case("continue-directory", cont(), "is a folder", input_special("directory")),
    Case("continue-fifo", cont(), "is not a regular file", input_special("fifo")),
    Case("continue-unreadable", cont(), "cannot open input audio", input_special("unreadable"), marks=(not_root,)),
    Case("continue-missing", cont(), "does not exist"),
    Case("continue-duration-0", cont(duration="0"), "--duration 0 is out of range", input_audio(2), code=2),
    Case("continue-duration-abc", cont(duration="abc"), "Invalid value for '--duration'", input_audio(2), code=2),
    Case("continue-unknown-model", cont()[:-1] + ("nope",), "unknown model 'nope'", input_audio(2), code=2),
    # prompts
    Case("prompt-empty", tell(prompt=""), "the prompt is empty", code=2),
    Case("prompt-whitespace", tell(prompt=" \t\n  "), "the prompt is empty", code=2),
    Case("prompt-control-only", tell(prompt="\x07\x1b\r\x00\x7f"), "the prompt is empty", code=2),
    Case("prompt-20000-chars", tell(prompt="rain " * 4000), "the prompt is 19999 characters; at most 4000", code=2),
    # durations and other flags of tell
    Case("duration-0", tell(duration="0"), "--duration 0 is out of range", code=2),
    Case("duration-negative", tell(duration="-5"), "--duration -5 is out of range", code=2),
    Case("duration-1e9", tell(duration="1e9"), "--duration 1e+09 is out of range", code=2),
    Case("duration-abc", tell(duration="abc"), "Invalid value for '--duration'", code=2),
    Case("duration-nan", tell(duration="nan"), "--duration nan is out of range", code=2),
    Case("duration-inf", tell(duration="inf"), "--duration inf is out of range", code=2),
    Case("duration-10-hours", tell(duration="36000"), "--duration 36000 is out of range", code=2),
    Case("steps-0", tell("--steps", "0"), "--steps 0 is out of range", code=2),
    Case("seed-negative", tell("--seed", "-1"), "--seed -1 is out of range", code=2),
    Case("unknown-model", tell(prompt=PROMPT)[:-1] + ("nope",), "unknown model 'nope'", code=2),
    Case(
        "model-is-a-story-folder", tell(prompt=PROMPT)[:-1] + ("{story}",), "is a folder but not a model folder", code=2
    ),
    Case("unknown-preset", tell("--preset", "loud"), "unknown loudness preset 'loud'", code=2),
    Case("unknown-style", tell("--style", "polka"), "unknown --style 'polka'", code=2),
    Case("unknown-cue-format", tell("--cues", "story,pdf"), "unknown cue format 'pdf'", code=2),
    Case(
        "out-is-a-file",
        tell("--yes")[:5] + ("{ws}/afile.txt", "--model", "tiny-random"),
        "is a file; choose a folder path",
    ),
    Case("out-holds-a-story", tell()[:5] + ("{story}", "--model", "tiny-random"), "already holds a story"),
    # story.json
    Case("story-truncated", RENDER, "is not valid JSON", plan_text(lambda t: t[: len(t) // 2])),
    Case("story-empty", RENDER, "is not valid JSON", plan_text(lambda t: "")),
    Case("story-not-an-object", EXPORT, "must hold a JSON object", plan_text(lambda t: "[]")),
    Case("story-schema-99", RENDER, "schema_version is 99", plan_edit(lambda d: d.update(schema_version=99))),
    Case("story-schema-missing", RENDER, "schema_version is None", plan_edit(lambda d: d.pop("schema_version"))),
    Case("story-unknown-field", RENDER, "unknown field 'extra'", plan_edit(lambda d: d.update(extra=1))),
    Case("events-overlap", RENDER, "events must not overlap", plan_edit(lambda d: d["events"][1].update(start=1.0))),
    Case("events-out-of-order", RENDER, "has index 2, expected 1", plan_edit(swap_first_two)),
    Case(
        "event-nan-duration",
        EXPORT,
        "events[2].duration must be finite",
        plan_edit(lambda d: d["events"][1].update(duration=float("nan"))),
    ),
    Case(
        "event-file-traversal",
        RENDER,
        "must be a plain name inside events/",
        plan_edit(lambda d: d["events"][0].update(file="../outside.wav")),
    ),
    Case(
        "event-file-nested-traversal",
        EXPORT,
        "must be a plain name inside events/",
        plan_edit(lambda d: d["events"][0].update(file="events/../../outside.wav")),
    ),
    Case(
        "event-file-absolute",
        EXPORT,
        "must be a plain name inside events/",
        plan_edit(lambda d: d["events"][2].update(file="/etc/passwd")),
    ),
    Case(
        "event-take-traversal",
        ("regen", "{story}", "1"),
        "must be a plain name inside events/",
        plan_edit(lambda d: d["events"][0].update(takes=["events/../../../x.wav"])),
    ),
    Case("plan-zero-events", RENDER, "the plan has no events", plan_edit(lambda d: d.update(events=[]))),
    Case("story-json-missing", RENDER, "has no story.json", remove_story_json),
    Case("story-dir-missing", ("render", "{ws}/nope"), "does not exist"),
    Case("story-dir-is-a-file", ("export", "{ws}/afile.txt"), "is a file, not a story folder"),
    Case("story-dir-with-escapes", ("render", "{ws}/no\x1b[2J\x07pe"), "no [2J pe does not exist"),
    # commands on a valid story
    Case("regen-missing-event", ("regen", "{story}", "9"), "event 9 does not exist; this story has events 1..3"),
    Case("regen-event-0", ("regen", "{story}", "0"), "event 0 does not exist"),
    Case(
        "plan-set-negative-duration",
        ("plan", "set", "{story}", "2", "--duration=-5"),
        "--duration -5 is out of range; an event lasts",
    ),
    Case("render-unknown-model", ("render", "{story}", "--model", "nope"), "unknown model 'nope'", code=2),
    Case(
        "export-unknown-preset",
        ("export", "{story}", "--force", "--loudness", "loud"),
        "unknown loudness preset 'loud'",
        code=2,
    ),
]


@pytest.fixture
def no_huge_reads(monkeypatch):
    """Reading a 10-hour file into memory would take ~13 GB: fail loudly instead of exhausting the machine."""
    real_read = sf.SoundFile.read

    def guarded(self, frames=-1, *args, **kwargs):
        if self.frames > 10 * 60 * RATE:
            raise AssertionError(f"read {self.frames} frames into memory")
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", guarded)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_hostile_input_is_one_line_and_changes_nothing(case: Case, workspace: Workspace, no_huge_reads):
    case.setup(workspace)
    before = snapshot(workspace.root)
    args = [a.format(story=workspace.story.root, ws=workspace.root) for a in case.args]
    result = runner.invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == case.code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.match in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not [c for c in result.stderr if unicodedata.category(c) == "Cc" and c != "\n"]  # terminal-safe
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    assert snapshot(workspace.root) == before


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


# -- inputs that must work --------------------------------------------------------------------------------------

ODD_PROMPT = "rain\x07 on a \x1b[31mtin roof 🌧️\x00, then thunder ⚡\r rolls, a dog 🐕 barks"


def test_control_characters_and_emoji_in_the_prompt_work(tmp_path):
    out = tmp_path / "odd"
    result = runner.invoke(
        app,
        [
            "tell",
            ODD_PROMPT,
            "--duration",
            "4",
            "--out",
            str(out),
            "--model",
            "tiny-random",
            "--steps",
            "1",
            "--seed",
            "5",
            "--yes",
            "--cues",
            "story,reaper,audacity,edl",
        ],
    )
    assert result.exit_code == 0, result.output
    raw = (out / "story.json").read_text(encoding="utf-8")
    story = StoryFolder(out).load()
    # emoji are kept as they are (not escaped) in story.json; control characters are gone from every text
    assert "🌧️" in story.prompt and "⚡" in story.prompt and "🐕" in story.prompt and "🐕" in raw
    assert story.prompt.startswith("rain  on a  [31mtin roof 🌧️")
    texts = [story.prompt] + [t for e in story.events for t in (e.caption, e.story_detail)]
    assert not [t for t in texts if any(unicodedata.category(ch) == "Cc" for ch in t)]
    assert any("🐕" in e.caption for e in story.events)
    cues = {
        name: (out / "cues" / name).read_text(encoding="utf-8")
        for name in ("story.csv", "reaper.csv", "audacity.txt", "story.edl")
    }
    for name, text in cues.items():
        assert not [ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\t"], name
    assert "🐕" in cues["story.csv"] and "🐕" in cues["reaper.csv"] and "🐕" in cues["audacity.txt"]
    assert cues["story.edl"].isascii()
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr  # the plan table is safe to print


def test_control_characters_in_a_hand_edited_caption_never_reach_cues_or_the_terminal(tmp_path):
    folder = make_rendered_story(tmp_path, [1.0, 1.0], kind="noise")
    story = folder.load()
    story.events[0].caption = "door\x1b]0;pwned\x07 slams\x00 shut 🚪"
    story.events[0].render_hash = story.render_hash(story.events[0])
    folder.save(story)
    result = runner.invoke(app, ["export", str(folder.root), "--cues", "story,reaper,audacity,edl"])
    assert result.exit_code == 0, result.output
    csv_text = (folder.cues_dir / "story.csv").read_text(encoding="utf-8")
    assert "door ]0;pwned slams shut 🚪" in csv_text
    for path in folder.cues_dir.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not [ch for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\n\t"], path.name
    shown = runner.invoke(app, ["plan", "show", str(folder.root)])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "🚪" in shown.stdout
