"""Training manifests: JSONL files, one example per line, validated line by line.

Three kinds of line (audio paths are relative to the manifest's folder, or absolute):

* clip (single-audio generation): ``{"audio": "clips/1.wav", "caption": "a dog barks twice"}``; optional
  ``"start"`` and ``"duration"`` (seconds) select a segment, else the whole file (at most one DiT window).
* understanding QA: ``{"audio": "clips/1.wav", "question": "What do you hear?", "answer": "A dog barks."}``.
* story (multi-event generation): ``{"instruction": "...", "reasoning": "...", "events": [{"caption": "...",
  "story_detail": "...", "duration": 3.2, "audio": "s1/01.wav"}, ...]}``. Each event has its own ``audio``, or
  the story has one long ``"audio"`` and each event a ``"start"`` in it (default: events back to back from 0).
  ``reasoning`` is the storyline text; any ``Event N: Timestamp: ...`` lines in it are dropped, because the
  per-event lines are regenerated from the events (as at inference).

* edit (editing a plan by instruction, text only): ``{"story": {"prompt": "...", "reasoning": "...", "events":
  [{"caption": "...", "story_detail": "...", "duration": 3.2}, ...]}, "history": ["earlier instruction", ...],
  "instruction": "make the dog quieter", "edited": {"events": [...]}}``. ``history`` (optional) holds the
  dialogue's earlier instructions, oldest first. The planner learns to write ``edited`` from the prompt
  ``audiostory edit`` gives the model (``planner.editing.build_edit_instruction``).

Other keys (``class``, ``params``, ``split`` ...) are allowed and ignored. ``check_manifest`` reports every problem
with its line; ``load_manifests`` raises one ``TrainingError`` that lists them. Torch-free.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import PlanValidationError, TrainingError, UsageError
from ..planner.layout import MIN_EVENT_SECONDS, PlannedEvent, check_serialisable, find_special_token

Kind = Literal["clips", "qa", "stories", "edits"]
KINDS: tuple[Kind, ...] = ("clips", "qa", "stories", "edits")
MAX_EDIT_INSTRUCTION_CHARS = 4000  # as `audiostory edit` accepts
DEFAULT_MAX_EVENT_SECONDS = 29.95  # one DiT window of the released model (645 latent frames)
LENGTH_TOLERANCE = 0.05  # seconds an audio file may fall short of the segment it should hold
_FIRST_EVENT_LINE = re.compile(r"\bEvent\s+1\s*:", re.IGNORECASE)
_MAX_LISTED = 20


@dataclass(frozen=True)
class Source:
    """Where an example came from: manifest file and 1-based line number."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file.name}:{self.line}"


@dataclass(frozen=True)
class Segment:
    """``duration`` seconds of ``path`` from ``start`` (always resolved and checked against the file)."""

    path: Path
    start: float
    duration: float


@dataclass(frozen=True)
class ClipRecord:
    source: Source
    caption: str
    audio: Segment


@dataclass(frozen=True)
class StoryEventRecord:
    caption: str
    story_detail: str
    duration: float
    audio: Segment

    def planned(self) -> PlannedEvent:
        return PlannedEvent(caption=self.caption, story_detail=self.story_detail, duration=self.duration)


@dataclass(frozen=True)
class StoryRecord:
    source: Source
    instruction: str
    storyline: str  # the reasoning without its per-event lines
    events: tuple[StoryEventRecord, ...]


@dataclass(frozen=True)
class StoryText:
    """A story without audio: what the planner alone learns from (``audiostory train planner``)."""

    source: Source
    instruction: str
    storyline: str
    events: tuple[PlannedEvent, ...]
    edit: bool = False  # made from an edit turn (``EditRecord.as_story_text``)


@dataclass(frozen=True)
class EditRecord:
    """An edit turn: the plan before, the dialogue's earlier instructions, the instruction, the plan after."""

    source: Source
    prompt: str
    total_duration: float
    storyline: str
    events: tuple[PlannedEvent, ...]
    history: tuple[str, ...]
    instruction: str
    edited: tuple[PlannedEvent, ...]

    def as_story_text(self) -> StoryText:
        """What the planner learns: the edit prompt ``audiostory edit`` builds, and the edited plan."""
        from ..planner.editing import build_edit_instruction

        prompt = build_edit_instruction(self.prompt, self.total_duration, self.events, self.history, self.instruction)
        return StoryText(
            source=self.source, instruction=prompt, storyline=self.storyline, events=self.edited, edit=True
        )


@dataclass(frozen=True)
class QARecord:
    source: Source
    audio: Path
    question: str
    answer: str


Record = ClipRecord | StoryRecord | QARecord | EditRecord


@dataclass(frozen=True)
class Issue:
    """One problem: ``error`` stops training, ``warning`` is reported and the line is used."""

    source: Source
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.source}: {self.severity}: {self.message}"


@dataclass
class ManifestReport:
    path: Path
    records: list[Record] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    lines: int = 0

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def count(self, kind: Kind) -> int:
        types = {"clips": ClipRecord, "qa": QARecord, "stories": StoryRecord, "edits": EditRecord}
        return sum(isinstance(r, types[kind]) for r in self.records)


class _LineError(Exception):
    """Collects the problems of one line (raised to stop reading it)."""


@dataclass(frozen=True)
class AudioInfo:
    seconds: float
    channels: int
    sample_rate: int


class _AudioProbe:
    """``soundfile.info`` once per file; unreadable files raise ``ValueError`` with a one-line reason."""

    def __init__(self) -> None:
        self._seen: dict[Path, AudioInfo | str] = {}

    def __call__(self, path: Path) -> AudioInfo:
        if path not in self._seen:
            self._seen[path] = self._probe(path)
        found = self._seen[path]
        if isinstance(found, str):
            raise ValueError(found)
        return found

    @staticmethod
    def _probe(path: Path) -> AudioInfo | str:
        import soundfile as sf

        if not path.is_file():
            return f"audio file {path} not found"
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            return f"audio file {path} is unreadable ({' '.join(str(exc).split())})"
        if info.frames <= 0 or info.samplerate <= 0:
            return f"audio file {path} is empty"
        if info.channels > 2:
            return f"audio file {path} has {info.channels} channels; use mono or stereo"
        return AudioInfo(seconds=info.frames / info.samplerate, channels=info.channels, sample_rate=info.samplerate)


def detect_kind(obj: Mapping[str, Any]) -> Kind:
    """``edits`` if the line has ``story``/``edited``, ``stories`` if it has ``events``, ``qa`` if it has
    ``question``/``answer``, else ``clips``."""
    if "edited" in obj or "story" in obj:
        return "edits"
    if "events" in obj or "instruction" in obj:
        return "stories"
    if "question" in obj or "answer" in obj:
        return "qa"
    return "clips"


def storyline_of(reasoning: str) -> str:
    """The reasoning up to its first ``Event 1:`` line (those lines are regenerated from the events)."""
    match = _FIRST_EVENT_LINE.search(reasoning)
    return (reasoning[: match.start()] if match else reasoning).strip()


def parse_kind(text: str | None) -> Kind | None:
    """``--kind``: one of ``KINDS``, or None to detect the kind per line."""
    if text is None:
        return None
    for kind in KINDS:
        if text == kind:
            return kind
    raise UsageError(f"--kind {text!r} is not one of {', '.join(KINDS)}")


def check_manifest(
    path: Path,
    *,
    kind: str | None = None,
    max_event_seconds: float = DEFAULT_MAX_EVENT_SECONDS,
) -> ManifestReport:
    """Read and validate every line of ``path``; problems are collected, never raised (except a missing file).

    ``kind`` forces every line to be of that kind; ``None`` detects it per line (``detect_kind``).
    """
    path = Path(path)
    kind = parse_kind(kind)
    if not path.is_file():
        raise TrainingError(f"manifest {path} not found; pass a JSONL file (see `audiostory train --help`)")
    report = ManifestReport(path=path)
    probe = _AudioProbe()
    root = path.resolve().parent
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingError(f"manifest {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        report.lines += 1
        source = Source(path, number)
        issues: list[Issue] = []
        try:
            record = _read_line(line, source, kind, root, probe, max_event_seconds, issues)
        except _LineError:
            record = None
        report.issues += issues
        if record is not None:
            report.records.append(record)
    if report.lines == 0:
        report.issues.append(Issue(Source(path, 0), "the manifest has no examples"))
    return report


def _read_line(
    line: str,
    source: Source,
    kind: Kind | None,
    root: Path,
    probe: _AudioProbe,
    max_seconds: float,
    issues: list[Issue],
) -> Record | None:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        issues.append(Issue(source, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        raise _LineError from None
    if not isinstance(obj, dict):
        issues.append(Issue(source, f"must be a JSON object, got {type(obj).__name__}"))
        raise _LineError
    found = detect_kind(obj)
    if kind is not None and found != kind:
        wanted = {
            "clips": "audio + caption",
            "qa": "audio + question + answer",
            "stories": "instruction + events",
            "edits": "story + instruction + edited",
        }
        issues.append(Issue(source, f"expected a {kind} line ({wanted[kind]}), found a {found} line"))
        raise _LineError
    readers: dict[Kind, Callable[..., Record | None]] = {
        "clips": _read_clip,
        "qa": _read_qa,
        "stories": _read_story,
        "edits": _read_edit,
    }
    record = readers[found](obj, source, root, probe, max_seconds, issues)
    if any(i.severity == "error" for i in issues):
        return None
    return record


def _fail(issues: list[Issue], source: Source, message: str) -> _LineError:
    issues.append(Issue(source, message))
    return _LineError()


def _has_errors(issues: list[Issue]) -> bool:
    return any(i.severity == "error" for i in issues)


# The field readers below record a problem and return None, so one pass reports every problem of a line.


def _text(
    obj: Mapping[str, Any], key: str, source: Source, issues: list[Issue], *, where: str = "", required: bool = True
) -> str | None:
    name = f"{where}{key}"
    if key not in obj or obj[key] is None:
        if required:
            issues.append(Issue(source, f"missing {name!r}"))
            return None
        return ""
    value = obj[key]
    if not isinstance(value, str):
        issues.append(Issue(source, f"{name} must be a string, got {type(value).__name__}"))
        return None
    if required and not value.strip():
        issues.append(Issue(source, f"{name} is empty"))
        return None
    if (token := find_special_token(value)) is not None:
        issues.append(Issue(source, f"{name} contains the special token {token}; remove it"))
        return None
    return value.strip()


def _number(
    obj: Mapping[str, Any], key: str, source: Source, issues: list[Issue], *, where: str = "", positive: bool = True
) -> float | None:
    """The value in seconds; None when absent or invalid (an invalid value is recorded)."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    name = f"{where}{key}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        issues.append(Issue(source, f"{name} must be a number of seconds, got {value!r}"))
        return None
    if positive and value <= 0:
        issues.append(Issue(source, f"{name} must be positive, got {value!r}"))
        return None
    if not positive and value < 0:
        issues.append(Issue(source, f"{name} must not be negative, got {value!r}"))
        return None
    return float(value)


def _check_duration(duration: float, source: Source, issues: list[Issue], where: str, max_seconds: float) -> bool:
    """The bounds training needs: at least the planner's shortest event, at most one DiT window."""
    if duration < MIN_EVENT_SECONDS:
        issues.append(
            Issue(
                source,
                f"{where}duration {duration:g} s is shorter than {MIN_EVENT_SECONDS:g} s, the "
                "shortest event a plan can hold; use a longer segment or drop the line",
            )
        )
        return False
    if duration > max_seconds:
        issues.append(
            Issue(
                source,
                f"{where}duration {duration:g} s is longer than one DiT window ({max_seconds:g} s); split the event",
            )
        )
        return False
    return True


def _audio_path(
    obj: Mapping[str, Any], source: Source, root: Path, issues: list[Issue], *, where: str = ""
) -> Path | None:
    rel = _text(obj, "audio", source, issues, where=where)
    if rel is None:
        return None
    path = Path(rel).expanduser()
    return path if path.is_absolute() else root / path


def _probe(probe: _AudioProbe, path: Path | None, source: Source, issues: list[Issue], where: str) -> AudioInfo | None:
    if path is None:
        return None
    try:
        return probe(path)
    except ValueError as exc:
        issues.append(Issue(source, f"{where}{exc}"))
        return None


def _segment(
    path: Path, info: AudioInfo, start: float, duration: float, source: Source, issues: list[Issue], where: str
) -> Segment | None:
    if start + duration > info.seconds + LENGTH_TOLERANCE:
        issues.append(
            Issue(
                source,
                f"{where}audio {path.name} is {info.seconds:.2f} s but the segment {start:g}-{start + duration:g} s "
                "goes past its end; fix the duration/start or the file",
            )
        )
        return None
    return Segment(path=path, start=start, duration=duration)


def _read_clip(
    obj: Mapping[str, Any], source: Source, root: Path, probe: _AudioProbe, max_seconds: float, issues: list[Issue]
) -> ClipRecord | None:
    caption = _text(obj, "caption", source, issues)
    if caption is not None:
        _check_layout("", [PlannedEvent(caption=caption, story_detail="", duration=1.0)], source, issues)
    path = _audio_path(obj, source, root, issues)
    start = _number(obj, "start", source, issues, positive=False) or 0.0
    duration = _number(obj, "duration", source, issues)
    if duration is not None:
        _check_duration(duration, source, issues, "", max_seconds)
    info = _probe(probe, path, source, issues, "")
    if info is None or path is None or _has_errors(issues):
        return None
    if duration is None:
        duration = info.seconds - start
        if duration <= 0:
            issues.append(Issue(source, f"start {start:g} s is past the end of {path.name} ({info.seconds:.2f} s)"))
            return None
        if duration > max_seconds:
            issues.append(
                Issue(
                    source,
                    f"audio {path.name} is {duration:.1f} s; only the first {max_seconds:g} s (one DiT window) "
                    "are used",
                    "warning",
                )
            )
            duration = max_seconds
        if not _check_duration(duration, source, issues, f"audio {path.name}: ", max_seconds):
            return None
    segment = _segment(path, info, start, duration, source, issues, "")
    return None if caption is None or segment is None else ClipRecord(source=source, caption=caption, audio=segment)


def _read_qa(
    obj: Mapping[str, Any], source: Source, root: Path, probe: _AudioProbe, max_seconds: float, issues: list[Issue]
) -> QARecord | None:
    question = _text(obj, "question", source, issues)
    answer = _text(obj, "answer", source, issues)
    path = _audio_path(obj, source, root, issues)
    info = _probe(probe, path, source, issues, "")
    if question is None or answer is None or path is None or info is None:
        return None
    return QARecord(source=source, audio=path, question=question, answer=answer)


def _read_story_text(obj: Mapping[str, Any], source: Source, max_seconds: float, issues: list[Issue]) -> StoryText:
    """The text of a story line: instruction, storyline and each event's caption, detail and duration.

    Every problem of the line is recorded; ``_LineError`` is raised at the end if there was any.
    """
    instruction = _text(obj, "instruction", source, issues)
    reasoning = _text(obj, "reasoning", source, issues, required=False)
    storyline = storyline_of(reasoning or "")
    events = _read_events(obj, source, max_seconds, issues, "")
    if _has_errors(issues) or instruction is None:
        raise _LineError
    _check_layout(storyline, events, source, issues)
    if _has_errors(issues):
        raise _LineError
    return StoryText(source=source, instruction=instruction, storyline=storyline, events=tuple(events))


def _read_events(
    obj: Mapping[str, Any], source: Source, max_seconds: float, issues: list[Issue], prefix: str
) -> list[PlannedEvent]:
    """The events of a plan object; every problem is recorded, the valid events are returned."""
    events_raw = obj.get("events")
    if not isinstance(events_raw, list) or not events_raw:
        raise _fail(issues, source, f"{prefix}events must be a non-empty list of {{caption, duration, ...}} objects")
    events: list[PlannedEvent] = []
    for number, raw in enumerate(events_raw, start=1):
        where = f"{prefix}events[{number}]."
        if not isinstance(raw, dict):
            issues.append(Issue(source, f"{where.rstrip('.')} must be an object, got {type(raw).__name__}"))
            continue
        caption = _text(raw, "caption", source, issues, where=where)
        detail = _text(raw, "story_detail", source, issues, where=where, required=False)
        duration = _number(raw, "duration", source, issues, where=where)
        if duration is None and raw.get("duration") is None:
            issues.append(Issue(source, f"missing {where}duration"))
        ok = duration is not None and _check_duration(duration, source, issues, where, max_seconds)
        if caption is not None and detail is not None and ok and duration is not None:
            events.append(PlannedEvent(caption=caption, story_detail=detail, duration=duration))
    return events


def _read_edit_text(obj: Mapping[str, Any], source: Source, max_seconds: float, issues: list[Issue]) -> EditRecord:
    """An edit line: the story before (prompt, storyline, events), history, instruction, the edited events.

    Every problem of the line is recorded; ``_LineError`` is raised at the end if there was any.
    """
    story = obj.get("story")
    if not isinstance(story, dict):
        raise _fail(issues, source, "story must be an object {prompt, reasoning, events}")
    prompt = _text(story, "prompt", source, issues, where="story.", required=False) or _text(
        story, "instruction", source, issues, where="story."
    )
    storyline = storyline_of(_text(story, "reasoning", source, issues, where="story.", required=False) or "")
    events = _read_events(story, source, max_seconds, issues, "story.")
    instruction = _text(obj, "instruction", source, issues)
    if instruction is not None and len(instruction) > MAX_EDIT_INSTRUCTION_CHARS:
        issues.append(
            Issue(
                source,
                f"instruction is {len(instruction)} characters; at most "
                f"{MAX_EDIT_INSTRUCTION_CHARS} (as `audiostory edit` accepts)",
            )
        )
    history_raw = obj.get("history", [])
    if not isinstance(history_raw, list) or not all(isinstance(h, str) and h.strip() for h in history_raw):
        issues.append(Issue(source, "history must be a list of the earlier instructions (non-empty strings)"))
        history_raw = []
    for turn in history_raw:
        if (token := find_special_token(turn)) is not None:
            issues.append(Issue(source, f"history contains the special token {token}; remove it"))
    edited = obj.get("edited")
    edited_events: list[PlannedEvent] = []
    if not isinstance(edited, dict):
        issues.append(Issue(source, "edited must be an object {events: [...]}, the plan after the edit"))
    else:
        edited_events = _read_events(edited, source, max_seconds, issues, "edited.")
    total = _number(story, "total_duration", source, issues, where="story.")
    if _has_errors(issues) or instruction is None or not prompt:
        raise _LineError
    _check_layout(storyline, events, source, issues)
    _check_layout(storyline, edited_events, source, issues)
    if _has_errors(issues):
        raise _LineError
    return EditRecord(
        source=source,
        prompt=prompt,
        total_duration=total or round(sum(e.duration for e in events), 6),
        storyline=storyline,
        events=tuple(events),
        history=tuple(h.strip() for h in history_raw),
        instruction=instruction,
        edited=tuple(edited_events),
    )


def _read_edit(
    obj: Mapping[str, Any], source: Source, root: Path, probe: _AudioProbe, max_seconds: float, issues: list[Issue]
) -> EditRecord:
    return _read_edit_text(obj, source, max_seconds, issues)


def _read_story(
    obj: Mapping[str, Any], source: Source, root: Path, probe: _AudioProbe, max_seconds: float, issues: list[Issue]
) -> StoryRecord | None:
    try:
        text: StoryText | None = _read_story_text(obj, source, max_seconds, issues)
    except _LineError:
        if not isinstance(obj.get("events"), list):
            raise
        text = None  # keep going: the audio problems of the line are reported too
    story_audio: tuple[Path, AudioInfo] | None = None
    if obj.get("audio") is not None:
        story_path = _audio_path(obj, source, root, issues)
        story_info = _probe(probe, story_path, source, issues, "")
        if story_path is not None and story_info is not None:
            story_audio = (story_path, story_info)
    events: list[StoryEventRecord] = []
    cursor = 0.0
    for number, raw in enumerate(obj["events"], start=1):
        where = f"events[{number}]."
        if not isinstance(raw, dict):
            continue
        duration = _quiet_number(raw.get("duration"))
        start = _number(raw, "start", source, issues, where=where, positive=False)
        segment: Segment | None = None
        if raw.get("audio") is not None:
            path = _audio_path(raw, source, root, issues, where=where)
            info = _probe(probe, path, source, issues, where)
            if path is not None and info is not None and duration is not None:
                segment = _segment(path, info, start or 0.0, duration, source, issues, where)
                if segment is not None and start is None and info.seconds > duration + LENGTH_TOLERANCE:
                    issues.append(
                        Issue(
                            source,
                            f"{where}audio {path.name} is {info.seconds:.2f} s; the first "
                            f"{duration:g} s (its duration) are used",
                            "warning",
                        )
                    )
        elif story_audio is not None:
            if duration is not None:
                begin = cursor if start is None else start
                segment = _segment(story_audio[0], story_audio[1], begin, duration, source, issues, where)
        elif obj.get("audio") is None:
            issues.append(Issue(source, f"{where}audio is missing and the story has no long 'audio' with event times"))
        if segment is not None and duration is not None:
            events.append(StoryEventRecord(caption="", story_detail="", duration=duration, audio=segment))
            cursor = segment.start + duration
        elif duration is not None:
            cursor = (cursor if start is None else start) + duration
    if text is None or _has_errors(issues) or len(events) != len(text.events):
        return None
    events = [
        StoryEventRecord(caption=e.caption, story_detail=e.story_detail, duration=e.duration, audio=r.audio)
        for e, r in zip(text.events, events, strict=True)
    ]
    return StoryRecord(source=source, instruction=text.instruction, storyline=text.storyline, events=tuple(events))


def _quiet_number(value: Any) -> float | None:
    """A duration already checked (and reported) by ``_read_story_text``: the number, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def _check_layout(reasoning: str, events: Sequence[PlannedEvent], source: Source, issues: list[Issue]) -> None:
    """The texts must survive serialisation into the plan layout (no special tokens or event markers)."""
    try:
        check_serialisable(reasoning, events, 1, 1)
    except PlanValidationError as exc:
        issues.append(Issue(source, str(exc)))


# -- loading for training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestSpec:
    """A manifest to train on, and the kind its lines must have (``None``: detected per line)."""

    path: Path
    kind: Kind | None = None


@dataclass
class TrainingData:
    clips: list[ClipRecord] = field(default_factory=list)
    stories: list[StoryRecord] = field(default_factory=list)
    qa: list[QARecord] = field(default_factory=list)
    edits: list[EditRecord] = field(default_factory=list)  # text only: `train planner` learns them
    warnings: list[Issue] = field(default_factory=list)
    manifests: list[Path] = field(default_factory=list)

    @property
    def generation(self) -> list[ClipRecord | StoryRecord]:
        return [*self.clips, *self.stories]


def summarise_issues(errors: Sequence[Issue], where: str) -> str:
    """One line: how many problems ``where`` has, the first few of them and how many more."""
    shown = "; ".join(str(e) for e in errors[:_MAX_LISTED])
    more = f"; and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
    return f"{len(errors)} problem(s) in {where}: {shown}{more}"


def load_manifests(
    specs: Sequence[ManifestSpec], *, max_event_seconds: float = DEFAULT_MAX_EVENT_SECONDS
) -> TrainingData:
    """Validate every manifest; any error raises one ``TrainingError`` naming each bad line."""
    if not specs:
        raise UsageError("no training data: pass --data FILE.jsonl (or --clips/--qa/--stories)")
    data = TrainingData()
    errors: list[Issue] = []
    for spec in specs:
        report = check_manifest(spec.path, kind=spec.kind, max_event_seconds=max_event_seconds)
        errors += report.errors
        data.warnings += report.warnings
        data.manifests.append(spec.path)
        for record in report.records:
            if isinstance(record, ClipRecord):
                data.clips.append(record)
            elif isinstance(record, StoryRecord):
                data.stories.append(record)
            elif isinstance(record, EditRecord):
                data.edits.append(record)
            else:
                data.qa.append(record)
    if errors:
        raise TrainingError(
            f"{summarise_issues(errors, 'the training data')} "
            "(run `audiostory train check-data FILE` for the full report)"
        )
    return data


def load_story_texts(path: Path, *, max_event_seconds: float = DEFAULT_MAX_EVENT_SECONDS) -> list[StoryText]:
    """The text of every story line of ``path`` (any ``audio`` keys are ignored and not checked); edit lines
    become their edit prompt and edited plan (``EditRecord.as_story_text``); any bad line raises one
    ``TrainingError`` naming each problem."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"stories file {path} not found; pass a JSONL file of stories")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingError(f"stories file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    stories: list[StoryText] = []
    errors: list[Issue] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        source = Source(path, number)
        issues: list[Issue] = []
        try:
            obj = json.loads(line)
            kind = detect_kind(obj) if isinstance(obj, dict) else None
            if kind == "edits":
                stories.append(_read_edit_text(obj, source, max_event_seconds, issues).as_story_text())
            elif kind == "stories":
                stories.append(_read_story_text(obj, source, max_event_seconds, issues))
            else:
                raise _fail(
                    issues,
                    source,
                    "expected a story line (instruction + events) or an edit line (story + instruction + edited)",
                )
        except json.JSONDecodeError as exc:
            issues.append(Issue(source, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        except _LineError:
            pass
        errors += issues
    if errors:
        raise TrainingError(summarise_issues(errors, str(path)))
    if not stories:
        raise TrainingError(f"{path} holds no stories")
    return stories
