"""The reasoner's output layout: serialise a plan into it, and parse (and repair) it back.

What the model writes after the prompt's ``<|think|>``::

    {storyline}
    Event 1: Timestamp: 0.0s - 5.2s. Story detail: {detail} Sound effect: {caption}
    ...<|/think|>
    <|gen|>{caption}<timestamp>{seconds}</timestamp><t5><t5_00000>…<t5_{S-1}></t5><aud><aud_00000>…<aud_{R-1}></aud><|/gen|>
    ... one <|gen|> block per event ...
    <|im_end|>

``serialise`` writes exactly this; ``parse`` reads it and any free text the real model writes (story details
are "" when the reasoning has no ``Event N: … Story detail: …`` line). The per-event reasoning lines are
regenerated from the events on every serialisation, so an edited caption or duration keeps the reasoning in
step. Parse repairs what is safe to repair and records a warning for each repair: an unfinished last event is
dropped, a missing or invalid duration is taken from the reasoning or shares the remaining time, a wrong
placeholder count is re-serialised. Zero complete events raise ``PlanParseError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InputError, ModelError, PlanValidationError
from .tokens import (
    AUD_CLOSE,
    AUD_OPEN,
    AUDIOSTORY_TOKENS,
    ENDOFTEXT,
    GEN_CLOSE,
    GEN_OPEN,
    IM_END,
    NUM_AUD_PLACEHOLDERS,
    NUM_T5_PLACEHOLDERS,
    QWEN_CHAT_SPECIALS,
    T5_CLOSE,
    T5_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    TIMESTAMP_CLOSE,
    TIMESTAMP_OPEN,
    aud_placeholder,
    decode_ids,
    encode_text,
    t5_placeholder,
)

EVENT_SEPARATOR = "\n"
"""Written after ``<|/think|>`` and after each ``<|/gen|>`` (the official layout's line breaks)."""
DURATION_DECIMALS = 1
"""Seconds are written with one decimal, like the official examples (``0.0s - 1.1s``)."""
MIN_EVENT_SECONDS = 0.5
_TIME_EPS = 1e-6

_KNOWN_SPECIALS = frozenset(AUDIOSTORY_TOKENS) | frozenset(QWEN_CHAT_SPECIALS)
_SPECIAL_CANDIDATE_RE = re.compile(r"(<\|[^<>|\s]{1,24}\|>|<[a-z_/0-9]{1,16}>)")
_EVENT_MARK_RE = re.compile(r"\bEvent\s+(\d+)\s*:", re.IGNORECASE)
_LINE_TIMESTAMP_RE = re.compile(r"Timestamp:\s*(\d+(?:\.\d*)?)\s*s?\s*-\s*(\d+(?:\.\d*)?)\s*s?", re.IGNORECASE)
_DETAIL_RE = re.compile(r"Story detail:\s*(.*?)\s*(?=Sound effect:|$)", re.IGNORECASE | re.DOTALL)
_SOUND_EFFECT_RE = re.compile(r"Sound effect:", re.IGNORECASE)
_SECONDS_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s?\s*$")
_T5_INDEX_RE = re.compile(r"^<t5_(\d{5})>$")
_AUD_INDEX_RE = re.compile(r"^<aud_(\d{5})>$")


class PlanParseError(ModelError):
    """The reasoner's output has no usable event, or cannot be repaired safely."""


class EventLike(Protocol):
    """Anything with a caption, a story detail and a duration (``PlannedEvent``, ``story.plan.Event``)."""

    @property
    def caption(self) -> str: ...

    @property
    def story_detail(self) -> str: ...

    @property
    def duration(self) -> float: ...


@dataclass(frozen=True)
class PlannedEvent:
    caption: str
    story_detail: str
    duration: float  # seconds


@dataclass(frozen=True)
class ParsedPlan:
    reasoning: str  # the storyline text: the reasoning without the per-event lines
    events: list[PlannedEvent]
    warnings: list[str] = field(default_factory=list)  # one line per repair, empty for a clean output


# -- serialise ----------------------------------------------------------------------------------------------


def format_seconds(seconds: float) -> str:
    return f"{seconds:.{DURATION_DECIMALS}f}"


def reasoning_text(reasoning: str, events: Sequence[EventLike]) -> str:
    """The storyline followed by one ``Event i: Timestamp: a - b. Story detail: … Sound effect: …`` line each."""
    lines = []
    start = 0.0
    for i, event in enumerate(events, start=1):
        end = start + event.duration
        line = f"Event {i}: Timestamp: {format_seconds(start)}s - {format_seconds(end)}s."
        if event.story_detail:
            line += f" Story detail: {event.story_detail}"
        line += f" Sound effect: {event.caption}"
        lines.append(line)
        start = end
    body = "\n".join(lines)
    return f"{reasoning}\n{body}" if reasoning else body


def serialise(reasoning: str, events: Sequence[EventLike], num_semantic: int, num_residual: int) -> str:
    """The text the reasoner emits for this plan, from the reasoning to ``<|im_end|>`` (no prompt)."""
    check_serialisable(reasoning, events, num_semantic, num_residual)
    semantic = T5_OPEN + "".join(t5_placeholder(k) for k in range(num_semantic)) + T5_CLOSE
    residual = AUD_OPEN + "".join(aud_placeholder(k) for k in range(num_residual)) + AUD_CLOSE
    parts = [reasoning_text(reasoning, events), THINK_CLOSE, EVENT_SEPARATOR]
    for event in events:
        parts += [
            GEN_OPEN,
            event.caption,
            TIMESTAMP_OPEN,
            format_seconds(event.duration),
            TIMESTAMP_CLOSE,
            semantic,
            residual,
            GEN_CLOSE,
            EVENT_SEPARATOR,
        ]
    parts.append(IM_END)
    return "".join(parts)


def serialise_ids(
    tokenizer: Any, reasoning: str, events: Sequence[EventLike], num_semantic: int, num_residual: int
) -> list[int]:
    """Token ids of ``serialise(...)`` (special tokens are split out first, so each is one id)."""
    return encode_text(tokenizer, serialise(reasoning, events, num_semantic, num_residual))


def check_serialisable(reasoning: str, events: Sequence[EventLike], num_semantic: int, num_residual: int) -> None:
    """Raise ``PlanValidationError`` for text that would break the layout (names the event and field)."""
    if not 1 <= num_semantic <= NUM_T5_PLACEHOLDERS:
        raise ValueError(f"num_semantic {num_semantic} must be in 1..{NUM_T5_PLACEHOLDERS}")
    if not 1 <= num_residual <= NUM_AUD_PLACEHOLDERS:
        raise ValueError(f"num_residual {num_residual} must be in 1..{NUM_AUD_PLACEHOLDERS}")
    if not events:
        raise PlanValidationError("the plan has no events; add at least one", field="events")
    _check_text(reasoning, "reasoning", markers=True)
    for i, event in enumerate(events, start=1):
        where = f"events[{i}]"
        if not event.caption.strip():
            raise PlanValidationError(f"event {i}: caption is empty", field=f"{where}.caption")
        _check_text(event.caption, f"{where}.caption", markers=True)
        _check_text(event.story_detail, f"{where}.story_detail", markers=True)
        if _SOUND_EFFECT_RE.search(event.story_detail):
            raise PlanValidationError(
                f"event {i}: story_detail contains 'Sound effect:', which marks the caption in the reasoning; "
                "reword it",
                field=f"{where}.story_detail",
            )
        if not (math.isfinite(event.duration) and event.duration > 0):
            raise PlanValidationError(
                f"event {i}: duration {event.duration} must be a positive number of seconds",
                field=f"{where}.duration",
            )


def find_special_token(text: str) -> str | None:
    """The first layout special token written inside ``text`` (which the tokenizer would not read as text)."""
    for candidate in _SPECIAL_CANDIDATE_RE.findall(text):
        if candidate in _KNOWN_SPECIALS:
            return str(candidate)
    return None


def _check_text(text: str, name: str, *, markers: bool) -> None:
    if (token := find_special_token(text)) is not None:
        raise PlanValidationError(
            f"{name} contains the special token {token}, which would break the plan layout; remove it",
            field=name,
        )
    if markers and (mark := _EVENT_MARK_RE.search(text)):
        raise PlanValidationError(
            f"{name} contains {mark.group(0)!r}, which marks an event in the reasoning; reword it", field=name
        )


# -- segments -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seg:
    special: bool
    text: str


def segments_from_text(text: str) -> list[_Seg]:
    """Split on the layout's special tokens exactly as the tokenizer does (added tokens are matched first)."""
    segs: list[_Seg] = []
    buffer = ""
    for piece in _SPECIAL_CANDIDATE_RE.split(text):
        if piece in _KNOWN_SPECIALS:
            if buffer:
                segs.append(_Seg(False, buffer))
                buffer = ""
            segs.append(_Seg(True, piece))
        else:
            buffer += piece
    if buffer:
        segs.append(_Seg(False, buffer))
    return segs


def segments_from_ids(ids: Sequence[int], tokenizer: Any, num_text_tokens: int) -> list[_Seg]:
    """Group ids below ``num_text_tokens`` into decoded text; every other id is one special segment."""
    segs: list[_Seg] = []
    run: list[int] = []
    for token_id in ids:
        if token_id < num_text_tokens:
            run.append(int(token_id))
            continue
        if run:
            segs.append(_Seg(False, decode_ids(tokenizer, run)))
            run = []
        name = str(tokenizer.convert_ids_to_tokens(int(token_id)))
        segs.append(_Seg(name in _KNOWN_SPECIALS, name))
    if run:
        segs.append(_Seg(False, decode_ids(tokenizer, run)))
    return _merge_text(segs)


def _merge_text(segs: list[_Seg]) -> list[_Seg]:
    merged: list[_Seg] = []
    for seg in segs:
        if not seg.special and merged and not merged[-1].special:
            merged[-1] = _Seg(False, merged[-1].text + seg.text)
        else:
            merged.append(seg)
    return merged


# -- parse --------------------------------------------------------------------------------------------------


@dataclass
class _RawEvent:
    ordinal: int  # 0-based position among the <|gen|> blocks of the output
    caption: str = ""
    timestamp: str | None = None
    semantic: list[int] | None = None  # placeholder indices seen inside <t5> … </t5>
    semantic_closed: bool = False
    residual: list[int] | None = None
    residual_closed: bool = False
    closed: bool = False  # saw <|/gen|>
    ended_by_next: bool = False  # a <|gen|> or <|im_end|> followed without <|/gen|>
    stray: list[str] = field(default_factory=list)


@dataclass
class _RawParse:
    reasoning: str
    events: list[_RawEvent]
    ended: bool  # saw <|im_end|> / <|endoftext|>
    warnings: list[str]


def _scan(segs: list[_Seg]) -> _RawParse:
    warnings: list[str] = []
    reasoning_parts: list[str] = []
    i = 0
    while i < len(segs) and not (segs[i].special and segs[i].text in (THINK_CLOSE, GEN_OPEN, IM_END, ENDOFTEXT)):
        seg = segs[i]
        if seg.special:
            if seg.text != THINK_OPEN:
                warnings.append(f"ignored the stray token {seg.text} inside the reasoning")
        else:
            reasoning_parts.append(seg.text)
        i += 1
    reasoning = "".join(reasoning_parts)
    if i < len(segs) and segs[i].text == THINK_CLOSE:
        i += 1
    elif i < len(segs) and segs[i].text == GEN_OPEN:
        warnings.append("the reasoning was not closed by <|/think|> before the first event")

    events: list[_RawEvent] = []
    current: _RawEvent | None = None
    phase = "between"
    ended = False
    for seg in segs[i:]:
        if ended:
            if seg.special or seg.text.strip():
                warnings.append("ignored text after <|im_end|>")
                break
            continue
        if seg.special and seg.text in (IM_END, ENDOFTEXT):
            if current is not None and not current.closed:
                current.ended_by_next = True
            current, phase, ended = None, "between", True
            continue
        if seg.special and seg.text == GEN_OPEN:
            if current is not None and not current.closed:
                current.ended_by_next = True
            current = _RawEvent(ordinal=len(events))
            events.append(current)
            phase = "caption"
            continue
        if current is None or current.closed:
            if seg.special or seg.text.strip():
                shown = seg.text if seg.special else repr(seg.text.strip()[:40])
                warnings.append(f"ignored {shown} between events")
            current = None
            continue
        phase = _event_step(current, phase, seg)
    return _RawParse(reasoning=reasoning, events=events, ended=ended, warnings=warnings)


def _event_step(event: _RawEvent, phase: str, seg: _Seg) -> str:
    """Feed one segment into an open event; returns the next phase."""
    if not seg.special:
        if phase == "caption":
            event.caption += seg.text
        elif phase == "timestamp":
            event.timestamp = (event.timestamp or "") + seg.text
        elif seg.text.strip():
            event.stray.append(repr(seg.text.strip()[:40]))
        return phase
    token = seg.text
    if token == TIMESTAMP_OPEN and event.timestamp is None and phase == "caption":
        event.timestamp = ""
        return "timestamp"
    if token == TIMESTAMP_CLOSE and phase == "timestamp":
        return "after_timestamp"
    if token == T5_OPEN and event.semantic is None:
        event.semantic = []
        return "semantic"
    if token == T5_CLOSE and phase == "semantic":
        event.semantic_closed = True
        return "after_semantic"
    if token == AUD_OPEN and event.residual is None:
        event.residual = []
        return "residual"
    if token == AUD_CLOSE and phase == "residual":
        event.residual_closed = True
        return "after_residual"
    if token == GEN_CLOSE:
        event.closed = True
        return "between"
    if phase == "semantic" and (m := _T5_INDEX_RE.match(token)) and event.semantic is not None:
        event.semantic.append(int(m.group(1)))
        return phase
    if phase == "residual" and (m := _AUD_INDEX_RE.match(token)) and event.residual is not None:
        event.residual.append(int(m.group(1)))
        return phase
    event.stray.append(token)
    return phase


def _reasoning_lines(reasoning: str) -> tuple[str, dict[int, tuple[str, float | None]]]:
    """Split the reasoning into the storyline and ``{event number: (story detail, seconds from the line)}``.

    Only markers numbered 1, 2, 3, … in order start a line; any other ``Event N:`` is ordinary text.
    """
    marks: list[re.Match[str]] = []
    for mark in _EVENT_MARK_RE.finditer(reasoning):
        if int(mark.group(1)) == len(marks) + 1:
            marks.append(mark)
    if not marks:
        return reasoning.strip(), {}
    storyline = reasoning[: marks[0].start()].strip()
    lines: dict[int, tuple[str, float | None]] = {}
    for number, (mark, nxt) in enumerate(zip(marks, [*marks[1:], None], strict=True), start=1):
        body = reasoning[mark.end() : nxt.start() if nxt else len(reasoning)]
        detail_match = _DETAIL_RE.search(body)
        detail = detail_match.group(1).strip() if detail_match else ""
        seconds = None
        if ts := _LINE_TIMESTAMP_RE.search(body):
            span = float(ts.group(2)) - float(ts.group(1))
            seconds = span if math.isfinite(span) and span > 0 else None
        lines[number] = (detail, seconds)
    return storyline, lines


def _defuse_markers(text: str, what: str, warnings: list[str]) -> str:
    """``Event 3:`` inside a caption, detail or storyline would be read as a reasoning line: write ``Event 3 -``."""
    fixed = _EVENT_MARK_RE.sub(lambda m: f"Event {m.group(1)} -", text)
    if fixed != text:
        warnings.append(f"{what} contained 'Event N:', which marks reasoning lines; wrote it as 'Event N -'")
    return fixed


def _parse_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    m = _SECONDS_RE.match(text)
    if not m:
        return None
    value = float(m.group(1))
    return value if math.isfinite(value) and value > 0 else None


def _check_block(
    event: _RawEvent, number: int, num_semantic: int | None, num_residual: int | None, warnings: list[str]
) -> None:
    for name, seen, expected in (
        ("semantic", event.semantic, num_semantic),
        ("residual", event.residual, num_residual),
    ):
        if seen is None:
            warnings.append(f"event {number} has no {name} block; it is re-serialised with one")
        elif expected is not None and seen != list(range(expected)):
            warnings.append(
                f"event {number}'s {name} block has {len(seen)} placeholders (expected {expected} in order); "
                "it is re-serialised"
            )
    if event.stray:
        warnings.append(f"event {number}: ignored {', '.join(event.stray[:3])} outside the caption")


def parse_with_sources(
    source: str | Sequence[int],
    *,
    tokenizer: Any = None,
    num_text_tokens: int | None = None,
    num_semantic: int | None = None,
    num_residual: int | None = None,
    total_duration: float | None = None,
) -> tuple[ParsedPlan, list[int]]:
    """``parse`` plus, for each kept event, its 0-based position among the output's ``<|gen|>`` blocks."""
    if isinstance(source, str):
        segs = segments_from_text(source)
    else:
        if tokenizer is None:
            raise TypeError("parse(ids) needs the tokenizer that produced them")
        if num_text_tokens is None:
            num_text_tokens = int(tokenizer.convert_tokens_to_ids(ENDOFTEXT))
        segs = segments_from_ids(source, tokenizer, num_text_tokens)
    if total_duration is not None and not (math.isfinite(total_duration) and total_duration >= MIN_EVENT_SECONDS):
        raise InputError(f"total duration {total_duration} must be at least {MIN_EVENT_SECONDS} s")

    raw = _scan(segs)
    warnings = list(raw.warnings)
    storyline, lines = _reasoning_lines(raw.reasoning)
    storyline = _defuse_markers(storyline, "the storyline", warnings)
    kept: list[tuple[_RawEvent, str, str, float | None]] = []
    for event in raw.events:
        number = event.ordinal + 1
        caption = event.caption.strip()
        finished = event.closed or event.ended_by_next
        blocks_done = event.semantic_closed and event.residual_closed
        if not finished and not blocks_done:
            warnings.append(f"the output ended inside event {number} (truncated); dropped it")
            continue
        if not caption:
            warnings.append(f"event {number} has an empty caption; dropped it")
            continue
        if not event.closed:
            warnings.append(f"event {number} was not closed by <|/gen|>; closed it")
        _check_block(event, number, num_semantic, num_residual, warnings)
        detail, line_seconds = lines.get(number, ("", None))
        detail = _defuse_markers(detail, f"event {number}'s story detail", warnings)
        caption = _defuse_markers(caption, f"event {number}'s caption", warnings)
        seconds = _parse_seconds(event.timestamp)
        if seconds is None:
            shown = "no <timestamp>" if event.timestamp is None else f"timestamp {event.timestamp.strip()!r}"
            if line_seconds is not None:
                warnings.append(f"event {number} has {shown}; took {line_seconds:g} s from the reasoning")
                seconds = line_seconds
            else:
                warnings.append(f"event {number} has {shown}; it shares the remaining time")
        kept.append((event, caption, detail, seconds))
    if not kept:
        where = "inside the reasoning" if not raw.events else "before any event was complete"
        raise PlanParseError(
            f"the reasoner's output has no complete event (it ended {where}); raise max_new_tokens, "
            "or check that the model is an AudioStory reasoner"
        )
    if not raw.ended:
        warnings.append("the output did not end with <|im_end|>")
    durations = _fill_missing([seconds for *_, seconds in kept], total_duration)
    if total_duration is not None:
        fitted, dropped = fit_durations(durations, total_duration)
        if dropped:
            warnings.append(
                f"{total_duration:g} s cannot hold {len(kept)} events of at least {MIN_EVENT_SECONDS} s; "
                f"dropped the last {dropped}"
            )
            kept = kept[: len(fitted)]
        if any(abs(a - b) > _TIME_EPS for a, b in zip(fitted, durations, strict=False)):
            warnings.append(f"rescaled the event durations to sum to {total_duration:g} s")
        durations = fitted
    events = [
        PlannedEvent(caption=caption, story_detail=detail, duration=duration)
        for (_, caption, detail, _), duration in zip(kept, durations, strict=True)
    ]
    plan = ParsedPlan(reasoning=storyline, events=events, warnings=warnings)
    return plan, [event.ordinal for event, *_ in kept]


def parse(
    source: str | Sequence[int],
    *,
    tokenizer: Any = None,
    num_text_tokens: int | None = None,
    num_semantic: int | None = None,
    num_residual: int | None = None,
    total_duration: float | None = None,
) -> ParsedPlan:
    """Parse the reasoner's output (text, or token ids with their ``tokenizer``) into a plan.

    ``num_semantic``/``num_residual`` enable the placeholder-count check; ``total_duration`` enables the repair
    of missing durations and the rescaling to that total (each event ≥ 0.5 s, one decimal, the last event
    absorbs the rounding). Without it durations are returned as written.
    """
    plan, _ = parse_with_sources(
        source,
        tokenizer=tokenizer,
        num_text_tokens=num_text_tokens,
        num_semantic=num_semantic,
        num_residual=num_residual,
        total_duration=total_duration,
    )
    return plan


# -- durations ----------------------------------------------------------------------------------------------


def _fill_missing(durations: list[float | None], total: float | None) -> list[float]:
    missing = [i for i, d in enumerate(durations) if d is None]
    if not missing:
        return [float(d) for d in durations if d is not None]
    known = [d for d in durations if d is not None]
    if total is None:
        raise PlanParseError(
            f"event {missing[0] + 1} has no valid duration and no total duration was given to share; "
            "pass total_duration"
        )
    remaining = total - math.fsum(known)
    if remaining >= MIN_EVENT_SECONDS * len(missing):
        share = remaining / len(missing)
    elif known:
        share = math.fsum(known) / len(known)
    else:
        share = total / len(durations)
    return [share if d is None else d for d in durations]


def fit_durations(durations: Sequence[float], total: float) -> tuple[list[float], int]:
    """Rescale ``durations`` to sum to ``total``: each ≥ 0.5 s, rounded to 0.1 s, the last takes the rest.

    Returns the new durations and how many trailing events had to be dropped because ``total`` cannot hold
    them all at 0.5 s. Durations that already sum to ``total`` (and are all ≥ 0.5 s) are returned unchanged.
    """
    if not (math.isfinite(total) and total >= MIN_EVENT_SECONDS):
        raise InputError(f"total duration {total} must be at least {MIN_EVENT_SECONDS} s")
    if not durations or any(not (math.isfinite(d) and d > 0) for d in durations):
        raise ValueError(f"durations must be positive and finite, got {list(durations)}")
    fits = int(math.floor(total / MIN_EVENT_SECONDS + 1e-9))
    dropped = max(0, len(durations) - fits)
    values = [float(d) for d in durations[: len(durations) - dropped]]
    if abs(math.fsum(values) - total) <= _TIME_EPS and min(values) >= MIN_EVENT_SECONDS:
        return values, dropped
    floored = [False] * len(values)
    while True:
        free_total = total - MIN_EVENT_SECONDS * sum(floored)
        free_sum = math.fsum(v for v, f in zip(values, floored, strict=True) if not f)
        scaled = [MIN_EVENT_SECONDS if f else v * free_total / free_sum for v, f in zip(values, floored, strict=True)]
        below = [i for i, (s, f) in enumerate(zip(scaled, floored, strict=True)) if not f and s < MIN_EVENT_SECONDS]
        if not below:
            break
        for i in below:
            floored[i] = True
    head = [max(MIN_EVENT_SECONDS, round(s, DURATION_DECIMALS)) for s in scaled[:-1]]
    step = 10.0**-DURATION_DECIMALS
    last = round(total - math.fsum(head), 6)
    while last < MIN_EVENT_SECONDS - _TIME_EPS:
        j = max(range(len(head)), key=lambda k: head[k])
        head[j] = round(head[j] - step, DURATION_DECIMALS)
        last = round(total - math.fsum(head), 6)
    return [*head, last], dropped
