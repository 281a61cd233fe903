"""Synthetic edit turns of the foley world: a story, an instruction and the edited plan, with the truth known.

AudioChat trains editing on simulated dialogues; this is the same idea at the foley world's scale. Each turn
applies one operation to a story's plan and says it in words:

* replace a class (``replace the barking dog with a siren``), remove an event, insert a new class before or
  after an event (with its length), change an event's duration, move an event before or after another;
* louder / quieter / closer / farther: the event's ``intensity`` or ``distance`` moves by 0.3 and its caption
  is drawn again from the class's vocabulary for the new parameters (class and duration unchanged).

Turns are chained into dialogues of 1 to ``max_turns`` turns: turn k edits the plan turn k-1 produced and
carries the earlier instructions as its history. ``train`` and ``val`` use one set of phrasings; ``test``
uses phrasings that neither of them ever uses (held-out wording), as the stories do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fsutil import write_text_atomic
from .bank import CLASS_NAMES, EventParams, caption_for, get_class, sample_params
from .corpus import _SPLIT_IDS, FoleyEvent, FoleyStory, StoryOptions, _check_split, make_story

OPERATIONS = ("replace", "remove", "insert", "duration", "move", "louder", "quieter", "closer", "farther")
PARAM_STEP = 0.3
MIN_EVENT = 1.0  # seconds: inserted and re-timed events are at least this long
MAX_EVENT = 12.0

# {ref}: "the barking dog"; {new}: "a siren"; {other}: another event; {s}: seconds
_TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # (train/val, test)
    "replace": (
        ("replace {ref} with {new}", "swap {ref} for {new}", "use {new} instead of {ref}"),
        ("exchange {ref} for {new}", "in place of {ref}, put {new}"),
    ),
    "remove": (("remove {ref}", "drop {ref}", "delete {ref}"), ("get rid of {ref}", "take out {ref}")),
    "insert_before": (
        ("add {new} before {ref}, {s} seconds long", "insert {new} for {s} s before {ref}"),
        ("right before {ref}, we need {new} lasting {s} seconds",),
    ),
    "insert_after": (
        ("add {new} after {ref}, {s} seconds long", "insert {new} for {s} s after {ref}"),
        ("follow {ref} with {new} lasting {s} seconds",),
    ),
    "duration": (("make {ref} {s} seconds long", "change {ref} to {s} s"), ("let {ref} run for {s} seconds",)),
    "move_before": (("move {ref} before {other}", "put {ref} before {other}"), ("have {ref} happen ahead of {other}",)),
    "move_after": (("move {ref} after {other}", "put {ref} after {other}"), ("let {ref} come once {other} is over",)),
    "louder": (("make {ref} louder", "turn {ref} up"), ("{ref} should be more intense",)),
    "quieter": (("make {ref} quieter", "turn {ref} down"), ("{ref} should be gentler",)),
    "closer": (("make {ref} closer", "bring {ref} nearer"), ("{ref} should sound right next to us",)),
    "farther": (("make {ref} farther away", "push {ref} into the distance"), ("{ref} should sound far off",)),
}


@dataclass(frozen=True)
class FoleyEditTurn:
    story: FoleyStory  # before this turn
    history: tuple[str, ...]  # earlier instructions of the dialogue, oldest first
    instruction: str
    operation: str
    edited: tuple[FoleyEvent, ...]
    split: str

    @property
    def edited_total(self) -> float:
        return round(sum(e.duration for e in self.edited), 1)


def _ref(name: str) -> str:
    title = get_class(name).title
    for article in ("a ", "an "):
        if title.startswith(article):
            return "the " + title[len(article) :]
    return "the " + title


def _new(name: str) -> str:
    return get_class(name).title


def _phrase(rng: np.random.Generator, key: str, held: int, **fields: str) -> str:
    pool = _TEMPLATES[key][held]
    return pool[int(rng.integers(len(pool)))].format(**fields)


def _seconds(rng: np.random.Generator, avoid: float | None = None) -> float:
    while True:
        value = round(float(rng.uniform(MIN_EVENT, MAX_EVENT)), 1)
        if avoid is None or abs(value - avoid) > 0.5:
            return value


def edit_turn(
    rng: np.random.Generator,
    story: FoleyStory,
    *,
    split: str,
    history: tuple[str, ...] = (),
    operation: str | None = None,
) -> FoleyEditTurn:
    """One edit of ``story``: the operation (drawn unless given), its instruction and the edited events."""
    held = _check_split(split)  # 1: test (held-out phrasings), 0: train and val
    events = list(story.events)
    ops = [
        op for op in OPERATIONS if not (op == "remove" and len(events) < 2) and not (op == "move" and len(events) < 2)
    ]
    op = operation or ops[int(rng.integers(len(ops)))]
    if op not in ops:
        raise InputError(f"operation {op!r} is not one of {', '.join(ops)} for a story of {len(events)} events")
    k = int(rng.integers(len(events)))
    target = events[k]
    ref = _ref(target.class_name)
    unused = [c for c in CLASS_NAMES if c not in {e.class_name for e in events}]
    if op == "replace":
        name = unused[int(rng.integers(len(unused)))]
        params = sample_params(rng, name)
        events[k] = FoleyEvent(
            name, params, caption_for(name, params, rng), "", target.duration, int(rng.integers(2**31))
        )
        text = _phrase(rng, "replace", held, ref=ref, new=_new(name))
    elif op == "remove":
        del events[k]
        text = _phrase(rng, "remove", held, ref=ref)
    elif op == "insert":
        name = unused[int(rng.integers(len(unused)))]
        params = sample_params(rng, name)
        seconds = _seconds(rng)
        after = bool(rng.integers(2))
        new = FoleyEvent(name, params, caption_for(name, params, rng), "", seconds, int(rng.integers(2**31)))
        events.insert(k + 1 if after else k, new)
        text = _phrase(
            rng, "insert_after" if after else "insert_before", held, ref=ref, new=_new(name), s=f"{seconds:g}"
        )
    elif op == "duration":
        seconds = _seconds(rng, avoid=target.duration)
        events[k] = replace(target, duration=seconds)
        text = _phrase(rng, "duration", held, ref=ref, s=f"{seconds:g}")
    elif op == "move":
        j = int(rng.integers(len(events) - 1))
        j = j + 1 if j >= k else j  # another event
        other = events[j]
        after = bool(rng.integers(2))
        rest = events[:k] + events[k + 1 :]
        anchor = rest.index(other)
        rest.insert(anchor + 1 if after else anchor, target)
        if rest == events:  # already there: move to the other side
            after = not after
            rest = events[:k] + events[k + 1 :]
            rest.insert(anchor + 1 if after else anchor, target)
        events = rest
        text = _phrase(rng, "move_after" if after else "move_before", held, ref=ref, other=_ref(other.class_name))
    else:
        name, sign = {
            "louder": ("intensity", 1),
            "quieter": ("intensity", -1),
            "closer": ("distance", -1),
            "farther": ("distance", 1),
        }[op]
        value = float(np.clip(getattr(target.params, name) + sign * PARAM_STEP, 0.0, 1.0))
        params = EventParams(**{**target.params.to_dict(), name: value})
        events[k] = replace(target, params=params, caption=caption_for(target.class_name, params, rng))
        text = _phrase(rng, op, held, ref=ref)
    return FoleyEditTurn(
        story=story, history=history, instruction=text, operation=op, edited=tuple(events), split=split
    )


def edited_story(turn: FoleyEditTurn) -> FoleyStory:
    """The story after ``turn`` (for the next turn of a dialogue)."""
    return replace(turn.story, events=turn.edited, total_duration=turn.edited_total)


def dialogue(
    rng: np.random.Generator,
    *,
    split: str,
    turns: int,
    options: StoryOptions = StoryOptions(),  # noqa: B008 - frozen
) -> list[FoleyEditTurn]:
    """A story and ``turns`` edits of it in a row, each turn seeing the instructions before it."""
    story = make_story(rng, split=split, options=options)
    result: list[FoleyEditTurn] = []
    for _ in range(turns):
        turn = edit_turn(rng, story, split=split, history=tuple(t.instruction for t in result))
        result.append(turn)
        story = edited_story(turn)
    return result


def _events(events: tuple[FoleyEvent, ...]) -> list[dict[str, Any]]:
    return [
        {
            "caption": e.caption,
            "story_detail": e.story_detail,
            "duration": e.duration,
            "class": e.class_name,
            "params": e.params.to_dict(),
        }
        for e in events
    ]


def edit_record(turn: FoleyEditTurn) -> dict[str, Any]:
    """An ``edits`` manifest line (see ``train.manifest``): the story, the instruction and the edited plan."""
    story = turn.story
    return {
        "story": {
            "prompt": story.instruction,
            "reasoning": story.storyline,
            "events": _events(story.events),
            "total_duration": story.total_duration,
        },
        "history": list(turn.history),
        "instruction": turn.instruction,
        "edited": {"events": _events(turn.edited), "total_duration": turn.edited_total},
        "operation": turn.operation,
        "split": turn.split,
    }


def write_edit_turns(
    path: Path,
    *,
    split: str,
    n_dialogues: int,
    max_turns: int = 3,
    seed: int = 0,
    options: StoryOptions = StoryOptions(),  # noqa: B008 - frozen dataclass, safe as a default
) -> Path:
    """``n_dialogues`` dialogues of 1..``max_turns`` turns as ``edits`` manifest lines, written atomically."""
    _check_split(split)
    if n_dialogues < 1 or max_turns < 1:
        raise InputError(f"n_dialogues={n_dialogues} and max_turns={max_turns} must be at least 1")
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], 4])
    rows = []
    for _ in range(n_dialogues):
        for turn in dialogue(rng, split=split, turns=int(rng.integers(1, max_turns + 1)), options=options):
            rows.append(json.dumps(edit_record(turn), ensure_ascii=False) + "\n")
    write_text_atomic(Path(path), "".join(rows))
    return Path(path)
