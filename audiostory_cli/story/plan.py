"""The typed plan: a story is a prompt, a total duration and timed events. Serialised as story.json.

Times are seconds on the story timeline. Events are ordered, never overlap, and end at or before the total.
Each event's raw render (``events/NN-slug.sSEED.wav``) is ``duration + tail`` long: the tail is the crossfade
into the next event, so crossfades never shift the timeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import CANVASES
from ..errors import PlanValidationError

SCHEMA_VERSION = 1
EventStatus = Literal["planned", "rendered", "source"]
STATUSES: tuple[str, ...] = ("planned", "rendered", "source")
MAX_CAPTION_CHARS = 2000
MAX_EVENTS = 200
MAX_TOTAL_SECONDS = 3600.0
MIN_EVENT_SECONDS = 0.5
TIME_EPS = 1e-6  # seconds; tolerance for float round-off in start/end comparisons
_STEM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
FADE_SHAPES: tuple[str, ...] = ("linear", "equal-power")


@dataclass
class RenderSettings:
    """Settings that change the rendered audio; part of every event's render hash."""

    steps: int = 50
    guidance: float = 4.0
    crossfade: float = 1.5  # seconds, default per boundary
    # The defaults of the two below are what stories written before they existed were rendered with; new plans
    # take them from the model (``pipeline.render_settings``): fixed + linear for the official checkpoint.
    canvas: str = "sized"  # DiT canvas: "fixed" (the whole window, trimmed; official) or "sized" (the event's)
    crossfade_shape: str = "equal-power"  # "linear" (the official join) or "equal-power"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class GeneratedPlan:
    """What the reasoner wrote when it planned the story, kept so that rendering conditions every unedited event on
    exactly those tokens (as the official inference does), not on a re-serialised plan.

    ``events`` are the planned events' (caption, story_detail, duration) as first stored: an event still equal to
    its entry, after an unchanged instruction, reasoning and unchanged earlier events, is "unedited".
    """

    token_ids: list[int]
    event_blocks: list[int]  # per planned event: its 0-based <|gen|> block in token_ids
    instruction: str
    reasoning: str
    events: list[dict[str, Any]]

    @staticmethod
    def fingerprint(event: Event) -> dict[str, Any]:
        return {"caption": event.caption, "story_detail": event.story_detail, "duration": round(event.duration, 6)}


@dataclass
class Event:
    index: int  # 1-based, contiguous
    start: float
    duration: float
    caption: str
    story_detail: str = ""
    seed: int = 0
    stem: str = "fx"
    crossfade: float | None = None  # override of RenderSettings.crossfade for the boundary after this event
    status: EventStatus = "planned"
    render_hash: str | None = None
    file: str | None = None  # relative to the story folder, under events/
    takes: list[str] = field(default_factory=list)  # earlier renders kept by regen, oldest first

    @property
    def end(self) -> float:
        return self.start + self.duration

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Story:
    prompt: str
    total_duration: float
    events: list[Event]
    model: str = "tiny-random"
    model_revision: str | None = None
    preset: str = "broadcast"
    style: str | None = None
    instruction: str = ""  # the exact instruction given to the reasoner
    reasoning: str = ""  # the reasoner's storyline text
    settings: RenderSettings = field(default_factory=RenderSettings)
    sample_rate: int = 44_100  # rate of the raw event renders
    source: str | None = None  # for `continue`: the input audio copied into the folder
    generated: GeneratedPlan | None = None  # the reasoner's own tokens (None: older or hand-made stories)
    schema_version: int = SCHEMA_VERSION

    # -- serialisation -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["settings"] = self.settings.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Story:
        """Build and validate; every error names the field (``events[3].duration``)."""
        if not isinstance(data, dict):
            raise PlanValidationError("story.json must hold a JSON object", field="")
        missing = [key for key in ("schema_version", "prompt", "events") if key not in data]
        if {"prompt", "events"} & set(missing):  # not another version's story: a damaged file (``{}``, ...)
            raise PlanValidationError(
                f"story.json is damaged: it lacks {', '.join(repr(k) for k in missing)}; restore it from "
                "plan.previous.json if there is one, or re-plan with `audiostory tell --plan-only`",
                field=missing[0],
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PlanValidationError(
                f"story.json schema_version is {version!r}, this audiostory reads version {SCHEMA_VERSION}; "
                "re-plan with `audiostory tell --plan-only` or upgrade audiostory",
                field="schema_version",
            )
        known = {f.name for f in dataclasses.fields(cls)}
        _reject_unknown(data, known, "")
        events_raw = data.get("events")
        if not isinstance(events_raw, list):
            raise PlanValidationError("'events' must be a list of events", field="events")
        events = [_event_from_dict(raw, i) for i, raw in enumerate(events_raw, start=1)]
        settings_raw = data.get("settings", {})
        if not isinstance(settings_raw, dict):
            raise PlanValidationError("'settings' must be a table", field="settings")
        _reject_unknown(settings_raw, {f.name for f in dataclasses.fields(RenderSettings)}, "settings.")
        settings = RenderSettings(
            steps=_int(settings_raw.get("steps", 50), "settings.steps"),
            guidance=_float(settings_raw.get("guidance", 4.0), "settings.guidance"),
            crossfade=_float(settings_raw.get("crossfade", 1.5), "settings.crossfade"),
            canvas=_str(settings_raw.get("canvas", "sized"), "settings.canvas"),
            crossfade_shape=_str(settings_raw.get("crossfade_shape", "equal-power"), "settings.crossfade_shape"),
        )
        story = cls(
            prompt=_str(data.get("prompt"), "prompt"),
            total_duration=_float(data.get("total_duration"), "total_duration"),
            events=events,
            model=_str(data.get("model", "tiny-random"), "model"),
            model_revision=_opt_str(data.get("model_revision"), "model_revision"),
            preset=_str(data.get("preset", "broadcast"), "preset"),
            style=_opt_str(data.get("style"), "style"),
            instruction=_str(data.get("instruction", ""), "instruction"),
            reasoning=_str(data.get("reasoning", ""), "reasoning"),
            settings=settings,
            sample_rate=_int(data.get("sample_rate", 44_100), "sample_rate"),
            source=_opt_str(data.get("source"), "source"),
            generated=_generated_from_dict(data.get("generated")),
        )
        story.validate()
        return story

    @classmethod
    def from_json(cls, text: str) -> Story:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanValidationError(
                f"story.json is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                line=exc.lineno,
            ) from exc
        return cls.from_dict(data)

    # -- validation ----------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``PlanValidationError`` naming the first bad field; never corrects anything silently."""
        if not self.prompt.strip():
            raise PlanValidationError("prompt is empty", field="prompt")
        if not (math.isfinite(self.total_duration) and 0 < self.total_duration <= MAX_TOTAL_SECONDS):
            raise PlanValidationError(
                f"total_duration {self.total_duration} must be in (0, {MAX_TOTAL_SECONDS:g}] seconds",
                field="total_duration",
            )
        if not self.events:
            raise PlanValidationError("the plan has no events; add at least one [[event]]", field="events")
        if len(self.events) > MAX_EVENTS:
            raise PlanValidationError(f"the plan has {len(self.events)} events; at most {MAX_EVENTS}", field="events")
        s = self.settings
        if not 1 <= s.steps <= 1000:
            raise PlanValidationError(f"settings.steps {s.steps} must be in 1..1000", field="settings.steps")
        if not (math.isfinite(s.guidance) and 0.0 <= s.guidance <= 50.0):
            raise PlanValidationError(f"settings.guidance {s.guidance} must be in 0..50", field="settings.guidance")
        if not (math.isfinite(s.crossfade) and 0.0 <= s.crossfade <= 10.0):
            raise PlanValidationError(
                f"settings.crossfade {s.crossfade} must be in 0..10 seconds", field="settings.crossfade"
            )
        if s.canvas not in CANVASES:
            raise PlanValidationError(
                f"settings.canvas {s.canvas!r} must be one of {', '.join(CANVASES)}", field="settings.canvas"
            )
        if s.crossfade_shape not in FADE_SHAPES:
            raise PlanValidationError(
                f"settings.crossfade_shape {s.crossfade_shape!r} must be one of {', '.join(FADE_SHAPES)}",
                field="settings.crossfade_shape",
            )
        if self.sample_rate <= 0:
            raise PlanValidationError("sample_rate must be positive", field="sample_rate")
        previous_end = 0.0
        first = self.first_index
        for position, event in enumerate(self.events, start=1):
            where = f"event {event.index}"
            expected = first + position - 1
            if event.index != expected:
                raise PlanValidationError(
                    f"event {position} in the list has index {event.index}, expected {expected} "
                    "(events are numbered in order without gaps)",
                    field=f"events[{position}].index",
                )
            if event.status == "source" and position != 1:
                raise PlanValidationError(
                    f"{where}: only the first event can be the source audio of a continuation",
                    field=f"events[{position}].status",
                )
            _validate_event(event, where, position)
            if event.start < previous_end - TIME_EPS:
                raise PlanValidationError(
                    f"{where} starts at {event.start:.3f} s, before the previous event ends at "
                    f"{previous_end:.3f} s; events must not overlap",
                    field=f"events[{position}].start",
                )
            previous_end = event.end
        if previous_end > self.total_duration + TIME_EPS:
            raise PlanValidationError(
                f"the last event ends at {previous_end:.3f} s, after total_duration {self.total_duration:.3f} s; "
                "shorten an event or raise total_duration",
                field=f"events[{len(self.events)}].duration",
            )

    # -- helpers -------------------------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        """0 when the story continues an input (event 0 is the source audio), else 1."""
        return 0 if self.events and self.events[0].status == "source" else 1

    def event(self, index: int) -> Event:
        for event in self.events:
            if event.index == index:
                return event
        last = self.first_index + len(self.events) - 1
        raise PlanValidationError(
            f"event {index} does not exist; this story has events {self.first_index}..{last}", field="events"
        )

    def position(self, event: Event) -> int:
        """0-based position of ``event`` in ``events`` (by identity)."""
        for position, candidate in enumerate(self.events):
            if candidate is event:
                return position
        raise ValueError(f"event {event.index} is not part of this story")

    def crossfade_after(self, event: Event) -> float:
        """Crossfade length at the boundary after ``event`` (0 for the last event or before a gap)."""
        position = self.position(event)
        if position + 1 >= len(self.events):
            return 0.0
        nxt = self.events[position + 1]
        if nxt.start > event.end + TIME_EPS:
            return 0.0
        wanted = self.settings.crossfade if event.crossfade is None else event.crossfade
        return max(0.0, min(wanted, event.duration, nxt.duration))

    def planned_events(self) -> list[Event]:
        """The events the reasoner planned (a continuation's source event 0 is not one of them)."""
        return [e for e in self.events if e.status != "source"]

    def unedited_events(self) -> int:
        """How many leading planned events still match what the reasoner wrote (``generated``): their bridge
        states come from its own tokens; the rest come from the re-serialised, edited plan."""
        generated = self.generated
        if generated is None or generated.instruction != self.instruction or generated.reasoning != self.reasoning:
            return 0
        if len(generated.event_blocks) != len(generated.events):
            return 0
        count = 0
        for event, recorded in zip(self.planned_events(), generated.events, strict=False):
            if GeneratedPlan.fingerprint(event) != recorded:
                break
            count += 1
        return count

    def render_length(self, event: Event) -> float:
        """Seconds to render for ``event``: its duration plus the crossfade tail into the next event."""
        return event.duration + self.crossfade_after(event)

    def render_hash(self, event: Event) -> str:
        """Hash over everything that changes this event's audio; decides what render/regen redo."""
        payload = {
            "caption": event.caption,
            "story_detail": event.story_detail,
            "duration": round(event.duration, 6),
            "render_length": round(self.render_length(event), 6),
            "seed": event.seed,
            "model": self.model,
            "model_revision": self.model_revision,
            "steps": self.settings.steps,
            "guidance": self.settings.guidance,
            "sample_rate": self.sample_rate,
            "style": self.style,
        }
        if self.settings.canvas != "sized":  # absent from older stories' hashes, which were all rendered sized
            payload["canvas"] = self.settings.canvas
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def is_stale(self, event: Event) -> bool:
        if event.status == "source":
            return False
        return event.status != "rendered" or event.render_hash != self.render_hash(event) or not event.file

    def reflow(self) -> None:
        """Make events contiguous from their first start, keeping each duration; total follows the end."""
        cursor = self.events[0].start if self.events else 0.0
        first = self.first_index
        for position, event in enumerate(self.events):
            event.index = first + position
            event.start = round(cursor, 6)
            cursor = event.end
        self.total_duration = round(max(cursor, 0.0), 6)


_LIGATURES = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "þ": "th"})


def event_slug(caption: str, max_words: int = 4) -> str:
    """Short file-name-safe name from a caption: 'A car skids on wet road' -> 'a-car-skids-on'.

    Accented letters keep their base letter ('café' -> 'cafe', not 'caf'); other scripts are dropped.
    """
    folded = unicodedata.normalize("NFKD", caption.lower().translate(_LIGATURES))
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    words = re.findall(r"[a-z0-9]+", plain)
    slug = "-".join(words[:max_words])[:40].strip("-")
    return slug or "event"


# -- field helpers ----------------------------------------------------------------------------------------


def _reject_unknown(data: dict[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise PlanValidationError(
            f"unknown field {prefix}{unknown[0]!r}; known fields: {', '.join(sorted(known))}",
            field=f"{prefix}{unknown[0]}",
        )


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise PlanValidationError(f"{name} must be text, got {type(value).__name__}", field=name)
    return value


def _opt_str(value: Any, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanValidationError(f"{name} must be a number, got {value!r}", field=name)
    if not math.isfinite(float(value)):
        raise PlanValidationError(f"{name} must be finite, got {value!r}", field=name)
    return float(value)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanValidationError(f"{name} must be a whole number, got {value!r}", field=name)
    return value


def _index_list(value: Any, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise PlanValidationError(f"{name} must be a list of whole numbers >= 0", field=name)
    return [int(v) for v in value]


def _generated_from_dict(raw: Any) -> GeneratedPlan | None:
    if raw is None:
        return None
    where = "generated"
    if not isinstance(raw, dict):
        raise PlanValidationError(f"{where} must be a table", field=where)
    _reject_unknown(raw, {f.name for f in dataclasses.fields(GeneratedPlan)}, f"{where}.")
    ids, blocks = (
        _index_list(raw.get("token_ids"), f"{where}.token_ids"),
        _index_list(raw.get("event_blocks"), f"{where}.event_blocks"),
    )
    events = raw.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise PlanValidationError(f"{where}.events must be a list of tables", field=f"{where}.events")
    return GeneratedPlan(
        token_ids=ids,
        event_blocks=blocks,
        instruction=_str(raw.get("instruction", ""), where),
        reasoning=_str(raw.get("reasoning", ""), where),
        events=[dict(e) for e in events],
    )


def _event_from_dict(raw: Any, position: int) -> Event:
    where = f"events[{position}]"
    if not isinstance(raw, dict):
        raise PlanValidationError(f"{where} must be a table of fields", field=where)
    _reject_unknown(raw, {f.name for f in dataclasses.fields(Event)}, f"{where}.")
    for required in ("start", "duration", "caption"):
        if required not in raw:
            raise PlanValidationError(f"event {position} has no {required}", field=f"{where}.{required}")
    crossfade = raw.get("crossfade")
    takes = raw.get("takes", [])
    if not isinstance(takes, list) or not all(isinstance(t, str) for t in takes):
        raise PlanValidationError(f"{where}.takes must be a list of file names", field=f"{where}.takes")
    status = raw.get("status", "planned")
    if status not in STATUSES:
        raise PlanValidationError(
            f"event {position} status {status!r} must be one of {', '.join(STATUSES)}", field=f"{where}.status"
        )
    return Event(
        index=_int(raw.get("index", position), f"{where}.index"),
        start=_float(raw["start"], f"{where}.start"),
        duration=_float(raw["duration"], f"{where}.duration"),
        caption=_str(raw["caption"], f"{where}.caption"),
        story_detail=_str(raw.get("story_detail", ""), f"{where}.story_detail"),
        seed=_int(raw.get("seed", 0), f"{where}.seed"),
        stem=_str(raw.get("stem", "fx"), f"{where}.stem"),
        crossfade=None if crossfade is None else _float(crossfade, f"{where}.crossfade"),
        status=status,
        render_hash=_opt_str(raw.get("render_hash"), f"{where}.render_hash"),
        file=_opt_str(raw.get("file"), f"{where}.file"),
        takes=list(takes),
    )


def _validate_event(event: Event, where: str, position: int) -> None:
    field_prefix = f"events[{position}]"
    if not event.caption.strip():
        raise PlanValidationError(f"{where}: caption is empty", field=f"{field_prefix}.caption")
    if len(event.caption) > MAX_CAPTION_CHARS:
        raise PlanValidationError(
            f"{where}: caption is {len(event.caption)} characters; at most {MAX_CAPTION_CHARS}",
            field=f"{field_prefix}.caption",
        )
    if event.start < 0:
        raise PlanValidationError(f"{where}: start {event.start} is negative", field=f"{field_prefix}.start")
    if not MIN_EVENT_SECONDS <= event.duration <= MAX_TOTAL_SECONDS:
        raise PlanValidationError(
            f"{where}: duration {event.duration} s must be in {MIN_EVENT_SECONDS}..{MAX_TOTAL_SECONDS:g} s",
            field=f"{field_prefix}.duration",
        )
    if not 0 <= event.seed < 2**63:
        raise PlanValidationError(f"{where}: seed {event.seed} must be in 0..2^63-1", field=f"{field_prefix}.seed")
    if not _STEM_RE.match(event.stem):
        raise PlanValidationError(
            f"{where}: stem {event.stem!r} must be lowercase letters, digits, '-' or '_' (e.g. fx, amb, mx)",
            field=f"{field_prefix}.stem",
        )
    if event.crossfade is not None and not 0.0 <= event.crossfade <= 10.0:
        raise PlanValidationError(
            f"{where}: crossfade {event.crossfade} must be in 0..10 seconds", field=f"{field_prefix}.crossfade"
        )
    for name in ([event.file] if event.file else []) + event.takes:
        if "/" in name.removeprefix("events/") or "\\" in name or ".." in name or not name.startswith("events/"):
            raise PlanValidationError(
                f"{where}: file {name!r} must be a plain name inside events/ (no '..' or subfolders)",
                field=f"{field_prefix}.file",
            )
