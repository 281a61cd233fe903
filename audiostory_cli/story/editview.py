"""A human-friendly TOML view of the plan, and parsing it back with errors that point at the line.

Only what a person should change is in the view: per event caption, story detail, duration, seed, stem,
crossfade and an optional gap before it. Starts are shown as comments and re-flowed from the durations, so
changing one duration moves the later events and the total follows.

A continuation's source event (event 0, the input audio) is shown as a read-only comment and kept as it is: the
[[event]] blocks are the new events 1..N, which follow it.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import PlanValidationError
from .plan import Event, Story
from .timecode import smpte

EVENT_FIELDS = ("caption", "story_detail", "duration", "seed", "stem", "crossfade", "gap_before")
SETTINGS_FIELDS = ("steps", "guidance", "crossfade")
_KEY_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=")
_TOML_LINE_RE = re.compile(r"at line (\d+)")


def _q(text: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(text, ensure_ascii=False)


def render_view(story: Story) -> str:
    lines = [
        "# audiostory plan: edit, save and close the editor. Lines starting with # are ignored.",
        "# Times are seconds. Events play in order; change a duration and later events move.",
        "# Delete an [[event]] block to drop it, copy one to add an event. gap_before adds silence.",
        "# Rendered events whose caption, duration or seed you change are re-rendered by `audiostory render`.",
        "",
        f"prompt = {_q(story.prompt)}",
        f"# total duration now: {story.total_duration:.3f} s (recomputed from the events)",
        "",
        "[settings]",
        f"steps = {story.settings.steps}",
        f"guidance = {story.settings.guidance!r}",
        f"crossfade = {story.settings.crossfade!r}  # seconds at each event boundary",
    ]
    sources = story.events[: _source_count(story)]
    for event in sources:
        caption = " ".join(event.caption.split())
        span = f"{event.start:.3f}-{event.end:.3f} s"
        lines += ["", f"# event {event.index} (read-only, not rendered): {span}, {caption}"]
    previous_end = story.events[0].end if sources else story.events[0].start if story.events else 0.0
    for event in story.events[len(sources) :]:
        lines += [
            "",
            "[[event]]",
            f"# event {event.index}: {event.start:.3f}-{event.end:.3f} s ({smpte(event.start)}), {event.status}",
            f"caption = {_q(event.caption)}",
            f"story_detail = {_q(event.story_detail)}",
            f"duration = {event.duration!r}",
            f"seed = {event.seed}",
            f"stem = {_q(event.stem)}",
        ]
        gap = round(event.start - previous_end, 6)
        if gap > 0:
            lines.append(f"gap_before = {gap!r}")
        if event.crossfade is not None:
            lines.append(f"crossfade = {event.crossfade!r}")
        previous_end = event.end
    return "\n".join(lines) + "\n"


@dataclass
class _LineIndex:
    """Which line each key of the view sits on, to point errors at it."""

    top: dict[str, int] = field(default_factory=dict)
    settings: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, int]] = field(default_factory=list)

    def line_for(self, field_path: str | None) -> int | None:
        if not field_path:
            return None
        match = re.match(r"events\[(\d+)\](?:\.(\w+))?", field_path)
        if match:
            position = int(match.group(1))
            if not 1 <= position <= len(self.events):
                return None
            keys = self.events[position - 1]
            key = {"start": "gap_before", "index": "[[event]]"}.get(match.group(2) or "", match.group(2) or "")
            return keys.get(key) or keys.get("duration") or keys.get("[[event]]")
        if field_path.startswith("settings."):
            return self.settings.get(field_path.split(".", 1)[1])
        return self.top.get(field_path)


def _index_lines(text: str) -> _LineIndex:
    index = _LineIndex()
    section = "top"
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("[[event]]"):
            index.events.append({"[[event]]": number})
            section = "event"
            continue
        if stripped.startswith("[settings]"):
            section = "settings"
            continue
        match = _KEY_RE.match(raw)
        if not match:
            continue
        key = match.group(1)
        if section == "event":
            index.events[-1].setdefault(key, number)
        elif section == "settings":
            index.settings.setdefault(key, number)
        else:
            index.top.setdefault(key, number)
    return index


def parse_view(text: str, base: Story) -> Story:
    """Apply an edited view to ``base`` and return the new, validated story (``base`` is unchanged).

    Errors are ``PlanValidationError`` with ``.line`` set where the problem is.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE_RE.search(str(exc))
        line = int(match.group(1)) if match else None
        raise PlanValidationError(f"line {line}: not valid TOML: {exc}", line=line) from exc
    lines = _index_lines(text)
    try:
        return _apply(data, base, lines)
    except PlanValidationError as exc:
        line = exc.line or lines.line_for(_view_field(exc.field, _source_count(base)))
        prefix = f"line {line}: " if line else ""
        raise PlanValidationError(f"{prefix}{exc}", field=exc.field, line=line) from exc


def _apply(data: dict[str, Any], base: Story, lines: _LineIndex) -> Story:
    allowed_top = {"prompt", "settings", "event"}
    for key in data:
        if key not in allowed_top:
            raise PlanValidationError(
                f"unknown setting {key!r}; the view has prompt, [settings] and [[event]] blocks", field=key
            )
    settings_raw = data.get("settings", {})
    if not isinstance(settings_raw, dict):
        raise PlanValidationError("[settings] must be a table", field="settings")
    for key in settings_raw:
        if key not in SETTINGS_FIELDS:
            raise PlanValidationError(
                f"unknown setting {key!r} in [settings]; allowed: {', '.join(SETTINGS_FIELDS)}",
                field=f"settings.{key}",
                line=lines.settings.get(key),
            )
    raw_events = data.get("event", [])
    if not isinstance(raw_events, list) or not raw_events:
        raise PlanValidationError("the plan has no [[event]] blocks; keep at least one event", field="events")

    settings = replace(base.settings)
    for key in SETTINGS_FIELDS:
        if key in settings_raw:
            value = settings_raw[key]
            expect_int = key == "steps"
            _check_number(value, f"settings.{key}", whole=expect_int)
            setattr(settings, key, int(value) if expect_int else float(value))

    sources = [replace(e, takes=list(e.takes)) for e in base.events[: _source_count(base)]]
    planned = base.events[len(sources) :]
    events: list[Event] = []
    cursor = sources[-1].end if sources else base.events[0].start if base.events else 0.0
    for position, raw in enumerate(raw_events, start=1):
        where = f"events[{position}]"
        for key in raw:
            if key not in EVENT_FIELDS:
                raise PlanValidationError(
                    f"event {position}: unknown field {key!r}; allowed: {', '.join(EVENT_FIELDS)}",
                    field=f"{where}.{key}",
                    line=lines.events[position - 1].get(key),
                )
        for required in ("caption", "duration"):
            if required not in raw:
                raise PlanValidationError(f"event {position} has no {required}", field=f"{where}.{required}")
        if not isinstance(raw["caption"], str):
            raise PlanValidationError(f"event {position}: caption must be text in quotes", field=f"{where}.caption")
        _check_number(raw["duration"], f"{where}.duration")
        gap = raw.get("gap_before", 0.0)
        _check_number(gap, f"{where}.gap_before")
        if gap < 0:
            raise PlanValidationError(f"event {position}: gap_before must be ≥ 0", field=f"{where}.gap_before")
        old = planned[position - 1] if position <= len(planned) else None
        seed = raw.get("seed", old.seed if old else 0)
        _check_number(seed, f"{where}.seed", whole=True)
        crossfade = raw.get("crossfade")
        if crossfade is not None:
            _check_number(crossfade, f"{where}.crossfade")
        detail = raw.get("story_detail", "")
        stem = raw.get("stem", old.stem if old else "fx")
        if not isinstance(detail, str) or not isinstance(stem, str):
            raise PlanValidationError(f"event {position}: story_detail and stem must be text", field=f"{where}.stem")
        start = cursor + float(gap)
        event = Event(
            index=position,
            start=round(start, 6),
            duration=float(raw["duration"]),
            caption=raw["caption"],
            story_detail=detail,
            seed=int(seed),
            stem=stem,
            crossfade=None if crossfade is None else float(crossfade),
        )
        if old is not None:
            event.status, event.render_hash, event.file, event.takes = (
                old.status,
                old.render_hash,
                old.file,
                list(old.takes),
            )
        events.append(event)
        cursor = event.end

    prompt = data.get("prompt", base.prompt)
    if not isinstance(prompt, str):
        raise PlanValidationError("prompt must be text in quotes", field="prompt")
    story = replace(base, prompt=prompt, events=[*sources, *events], settings=settings, total_duration=round(cursor, 6))
    story.validate()
    return story


def _source_count(story: Story) -> int:
    """How many leading source events (a continuation's input) the story has: 0 or 1."""
    return 1 if story.events and story.events[0].status == "source" else 0


def _view_field(field_path: str | None, sources: int) -> str | None:
    """A story field path (``events[k]`` counts source events) as the view's (``[[event]]`` blocks only)."""
    match = re.match(r"events\[(\d+)\](.*)", field_path or "")
    if not sources or not match:
        return field_path
    return f"events[{int(match.group(1)) - sources}]{match.group(2)}"


def _check_number(value: Any, field_path: str, *, whole: bool = False) -> None:
    ok = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        kind = "a whole number" if whole else "a number"
        raise PlanValidationError(f"{field_path} must be {kind}, got {value!r}", field=field_path)
