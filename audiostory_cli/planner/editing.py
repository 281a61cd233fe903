"""Editing a plan by instruction: the prompt the reasoner rewrites a plan from, and a rule-based demo rewrite.

The reasoner rewrites a plan with the same constrained decoding as planning (``Reasoner.rewrite``), so every
output has the plan layout. Its user turn is ``build_edit_instruction``: the story, the current plan as the
layout's ``Event i: Timestamp: …`` lines, the earlier edits of the conversation, and the new instruction.

``demo_edit`` understands a small, fixed set of phrasings ("remove event 2", "replace the dog with a cat",
"add a siren after the skid", "make event 3 4 seconds", "move the thunder before event 1", "make the door
louder") and is used to script the ``tiny-random`` model (random weights would write garbage), like
``script.demo_plan`` does for planning. It is a demo and a test fixture, not a language model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from .layout import MIN_EVENT_SECONDS, EventLike, PlannedEvent, reasoning_text
from .prompt import format_total_duration

EDIT_LEAD = "Edit the plan of this long-form audio story."
EDIT_RULE = (
    "Rewrite the whole plan with the edit applied. Keep every event the edit does not mention exactly as it is: "
    "same sound effect, same story detail, same duration, same order."
)
ADJECTIVES = {
    "louder": "loud",
    "quieter": "quiet",
    "softer": "quiet",
    "closer": "close",
    "farther": "distant",
    "further": "distant",
    "heavier": "heavy",
    "lighter": "light",
}
"""Comparatives the demo rewrite understands, and the word it writes into the caption."""
_OPPOSITES = {
    "loud": "quiet",
    "quiet": "loud",
    "close": "distant",
    "distant": "close",
    "heavy": "light",
    "light": "heavy",
}
_STOP = {"the", "a", "an", "event", "sound", "of", "some"}


def build_edit_instruction(
    prompt: str, total_duration: float, events: Sequence[EventLike], history: Sequence[str], instruction: str
) -> str:
    """The user turn for a rewrite: story, current plan, earlier edits (oldest first), the edit and the rule."""
    lines = [
        EDIT_LEAD,
        f"Story: {' '.join(prompt.split())} The total duration is {format_total_duration(total_duration)} seconds.",
        "Current plan:",
        reasoning_text("", events),
    ]
    if history:
        lines.append("Earlier edits, oldest first:")
        lines += [f"{turn}. {' '.join(text.split())}" for turn, text in enumerate(history, start=1)]
    lines += [f"Edit: {' '.join(instruction.split())}", EDIT_RULE]
    return "\n".join(lines)


# -- the demo rewrite ---------------------------------------------------------------------------------------

_VERBS = r"remove|drop|delete|cut|replace|swap|add|insert|put|make|move|shorten|lengthen|change"
_CLAUSE_RE = re.compile(
    r"\s*(?:[,;]|\.(?!\d)|\band then\b|\bthen\b|\band\b(?=\s+(?:" + _VERBS + r")\b))\s*", re.IGNORECASE
)
_FOR_SECONDS = r"(?:(?:,?\s+(?:for|lasting)\s+|,\s*)(?P<s>\d+(?:\.\d+)?)\s*(?:s|secs?|seconds?)(?:\s+long)?)?"
_LENGTH_RE = re.compile(r"\d+(?:\.\d+)?\s*(?:s|secs?|seconds?)(?:\s+long)?", re.IGNORECASE)
_REF = r"(?P<{name}>event\s+\d+|the\s+(?:first|last)(?:\s+event)?|(?:the\s+)?[\w' -]+?)"


def demo_edit(events: Sequence[PlannedEvent], instruction: str) -> list[PlannedEvent]:
    """Apply the edits ``demo_edit`` understands, clause by clause; clauses it does not understand change nothing."""
    clauses: list[str] = []
    for clause in _CLAUSE_RE.split(instruction):
        clause = clause.strip().rstrip(".!").strip()
        if clauses and _LENGTH_RE.fullmatch(clause):  # "add a siren after the skid, 3 seconds long"
            clauses[-1] += f", {clause}"
        elif clause:
            clauses.append(clause)
    result = list(events)
    for clause in clauses:
        result = _apply_clause(result, clause)
    return result


def _find(events: Sequence[PlannedEvent], ref: str) -> int | None:
    """Position of the event ``ref`` names: ``event 3``, ``the first``, ``the last``, or words of its caption."""
    text = ref.strip().lower()
    if match := re.fullmatch(r"event\s+(\d+)", text):
        position = int(match.group(1)) - 1
        return position if 0 <= position < len(events) else None
    if re.fullmatch(r"the\s+first(\s+event)?", text):
        return 0 if events else None
    if re.fullmatch(r"the\s+last(\s+event)?", text):
        return len(events) - 1 if events else None
    words = [w for w in re.findall(r"[a-z0-9']+", text) if w not in _STOP]
    if not words:
        return None
    for position, event in enumerate(events):
        caption_words = re.findall(r"[a-z0-9']+", event.caption.lower())
        if all(any(_same_word(w, c) for c in caption_words) for w in words):
            return position
    return None


def _same_word(word: str, other: str) -> bool:
    """Prefix-equal ("dog"/"dogs"), or the same four-letter stem ("barking"/"barks")."""
    if other.startswith(word) or (len(other) > 2 and word.startswith(other)):
        return True
    return len(word) >= 4 and len(other) >= 4 and word[:4] == other[:4]


def _article_free(text: str) -> str:
    return re.sub(r"^(?:a|an|the|some)\s+", "", text.strip(), flags=re.IGNORECASE).strip()


def _new_duration(events: Sequence[PlannedEvent], position: int | None) -> float:
    if position is not None and 0 <= position < len(events):
        return events[position].duration
    return round(sum(e.duration for e in events) / max(1, len(events)), 1)


def _apply_clause(events: list[PlannedEvent], clause: str) -> list[PlannedEvent]:  # noqa: C901 - one rule per branch
    flags = re.IGNORECASE
    if match := re.fullmatch(r"(?:remove|drop|delete|cut)\s+" + _REF.format(name="ref"), clause, flags):
        position = _find(events, match.group("ref"))
        if position is not None and len(events) > 1:
            return events[:position] + events[position + 1 :]
        return events
    if match := re.fullmatch(
        r"(?:replace|swap)\s+" + _REF.format(name="ref") + r"\s+(?:with|for)\s+(?P<new>.+)", clause, flags
    ):
        position = _find(events, match.group("ref"))
        if position is None:
            return events
        old = events[position]
        ref_words = _article_free(match.group("ref"))
        new_words = _article_free(match.group("new"))
        caption = re.sub(re.escape(ref_words), new_words, old.caption, count=1, flags=re.IGNORECASE)
        if caption == old.caption:  # an event number, or words not in the caption: the whole caption
            caption = new_words
        result = list(events)
        result[position] = replace(old, caption=caption, story_detail=caption)
        return result
    if match := re.fullmatch(
        r"(?:add|insert|put)\s+(?P<new>.+?)"
        + _FOR_SECONDS
        + r"\s+(?P<where>before|after)\s+"
        + _REF.format(name="ref")
        + _FOR_SECONDS.replace("?P<s>", "?P<s2>"),
        clause,
        flags,
    ):
        position = _find(events, match.group("ref"))
        if position is None:
            return events
        new = _article_free(match.group("new"))
        at = position if match.group("where").lower() == "before" else position + 1
        given = match.group("s") or match.group("s2")
        seconds = float(given) if given else _new_duration(events, position)
        if seconds < MIN_EVENT_SECONDS:
            return events
        event = PlannedEvent(caption=new, story_detail=new, duration=round(seconds, 1))
        return [*events[:at], event, *events[at:]]
    if match := re.fullmatch(
        r"(?:add|insert|put)\s+(?P<new>.+?)\s+at\s+the\s+(?P<where>start|beginning|end)", clause, flags
    ):
        new = _article_free(match.group("new"))
        event = PlannedEvent(caption=new, story_detail=new, duration=_new_duration(events, None))
        return [event, *events] if match.group("where").lower() != "end" else [*events, event]
    if match := re.fullmatch(
        r"move\s+" + _REF.format(name="ref") + r"\s+(?P<where>before|after)\s+" + _REF.format(name="other"),
        clause,
        flags,
    ):
        position, other = _find(events, match.group("ref")), _find(events, match.group("other"))
        if position is None or other is None or position == other:
            return events
        moving = events[position]
        rest = events[:position] + events[position + 1 :]
        anchor = rest.index(events[other])
        at = anchor if match.group("where").lower() == "before" else anchor + 1
        return [*rest[:at], moving, *rest[at:]]
    if match := re.fullmatch(
        r"move\s+" + _REF.format(name="ref") + r"\s+(?P<where>earlier|later|to the start|"
        r"to the end)",
        clause,
        flags,
    ):
        position = _find(events, match.group("ref"))
        if position is None:
            return events
        moving = events[position]
        rest = events[:position] + events[position + 1 :]
        where = match.group("where").lower()
        at = {
            "earlier": max(0, position - 1),
            "later": min(len(rest), position + 1),
            "to the start": 0,
            "to the end": len(rest),
        }[where]
        return [*rest[:at], moving, *rest[at:]]
    if match := re.fullmatch(
        r"(?:make|change|set)\s+" + _REF.format(name="ref") + r"\s+(?:last\s+|to\s+)?(?P<s>\d+(?:\.\d+)?)\s*"
        r"(?:s|sec|secs|seconds?)(?:\s+long)?",
        clause,
        flags,
    ):
        position = _find(events, match.group("ref"))
        seconds = float(match.group("s"))
        if position is None or seconds < MIN_EVENT_SECONDS:
            return events
        result = list(events)
        result[position] = replace(events[position], duration=round(seconds, 1))
        return result
    if match := re.fullmatch(r"(?:make\s+)?" + _REF.format(name="ref") + r"\s+(?P<how>longer|shorter)", clause, flags):
        position = _find(events, match.group("ref"))
        if position is None:
            return events
        factor = 1.5 if match.group("how").lower() == "longer" else 1 / 1.5
        seconds = max(MIN_EVENT_SECONDS, round(events[position].duration * factor, 1))
        result = list(events)
        result[position] = replace(events[position], duration=seconds)
        return result
    if match := re.fullmatch(
        r"make\s+" + _REF.format(name="ref") + r"\s+(?:sound\s+)?(?P<how>" + "|".join(ADJECTIVES) + r")", clause, flags
    ):
        position = _find(events, match.group("ref"))
        if position is None:
            return events
        result = list(events)
        caption = with_quality(events[position].caption, ADJECTIVES[match.group("how").lower()])
        result[position] = replace(events[position], caption=caption, story_detail=caption)
        return result
    return events


def with_quality(caption: str, word: str) -> str:
    """``caption`` with ``word`` (loud, quiet, close, distant…) in front, replacing its opposite if present."""
    opposite = _OPPOSITES.get(word)
    words = caption.split()
    kept = [w for w in words if w.lower().strip(",") not in {word, opposite}]
    return " ".join([word + ",", *kept]) if kept else word
