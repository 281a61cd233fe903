"""Stories made of foley events, in the AudioStory layout: instruction, storyline reasoning, timed events.

An instruction is ``lead phrase + scene + ": " + narrative + " The total duration is X seconds."`` (built by
``planner.prompt.build_instruction`` with the official lead phrases), where the narrative names the events in
order, sometimes indirectly ("the sky rumbles" for thunder). The reasoning follows the official style and is
laid out by ``planner.layout.reasoning_text``: the storyline ("The storyline is mainly about: ... The whole
story can be divided into N sequential parts.") then one line per event, "Event 1: Timestamp: 0.0s - 5.2s.
Story detail: ... Sound effect: <caption>".

Splits (deterministic from the rng the caller passes):

- ``train``: lead phrases 1-16, the train scenes, connective patterns and per-class clauses, and class
  sequences made only of *seen* ordered class pairs; with ``StoryOptions.composed_phrasing`` (the default) half
  of the leads, scenes and patterns are instead composed from train-only parts (``COMPOSED_*_PARTS``), and with
  ``StoryOptions.caption_clauses`` a share of the events is narrated by a caption of its class instead of a clause.
- ``val``: the same distribution as train (in-distribution validation), from different random draws.
- ``test``: held out in both phrasing and order. Lead phrases 17-20, held-out scenes, connective patterns and
  clauses (none of which train ever uses), and every story contains at least one *held-out* ordered class pair
  (a bigram), so no test class sequence can occur in train. An ordered pair ``(a, b)`` is held out when
  ``crc32("a>b") % 5 == 0`` (about a fifth of the pairs; see ``is_held_out_pair``).

Every story records the phrasing it used in ``template_keys`` (e.g. ``"lead:3"``, ``"clause:rain:1"``) so the
split property can be checked.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.io import write_audio
from ..errors import InputError, OutputExistsError
from ..fsutil import write_text_atomic
from ..planner.layout import reasoning_text
from ..planner.prompt import LEAD_PHRASES, build_instruction
from ..progress import ProgressFn, no_progress
from .bank import CLASS_NAMES, EventParams, caption_for, get_class, render_event, sample_params
from .captions import tidy

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_IDS = {"train": 1, "val": 2, "test": 3}

HELD_OUT_LEADS: frozenset[int] = frozenset({16, 17, 18, 19})  # 0-based indices used only by the test split

# Scenes that open the narrative: (train, test).
SCENES: tuple[tuple[str, ...], tuple[str, ...]] = (
    (
        "a stormy night",
        "a quiet evening at home",
        "a busy afternoon in town",
        "a morning in the countryside",
        "an ordinary day",
        "a tense night",
        "a weekend at the cabin",
        "a day by the river",
        "a late shift at work",
        "a winter evening",
    ),
    (
        "a foggy dawn at the harbour",
        "a restless night in the city",
        "a strange afternoon",
        "a summer holiday by the lake",
    ),
)


@dataclass(frozen=True)
class Pattern:
    """How clauses are joined: ``first + c1 + sep + middle[i] + c2 + ... + sep + last + cN + "."``."""

    first: str
    middle: tuple[str, ...]
    last: str
    sep: str


# Train-only parts that compose further leads, scenes and connective patterns, so that a planner trained from
# scratch learns to skip wording it does not know instead of the few fixed templates (docs/demo-model.md).
# None of these parts, and no composition of them, is a held-out phrasing.
COMPOSED_LEAD_PARTS: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = (
    (
        "Create",
        "Make",
        "Compose",
        "Produce",
        "Render",
        "Build",
        "Write",
        "Put together",
        "Assemble",
        "Mix",
        "Please make",
        "Could you create",
    ),
    (
        "an audio story",
        "a soundscape",
        "a long recording",
        "an audio scene",
        "a sound story",
        "a long-form track",
        "an immersive mix",
        "a sequence of sounds",
        "a radio play without words",
        "a sound picture",
    ),
    ("of", "about", "that depicts", "that captures", "telling of", "set during", "that follows", "portraying"),
)
COMPOSED_SCENE_PARTS: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = (
    (
        "quiet",
        "busy",
        "rainy",
        "lonely",
        "cold",
        "bright",
        "long",
        "sleepy",
        "noisy",
        "calm",
        "grey",
        "windy",
        "dark",
        "warm",
        "early",
        "late",
        "gloomy",
        "peaceful",
        "hectic",
        "snowy",
        "ordinary",
        "tense",
    ),
    ("night", "evening", "morning", "afternoon", "day", "weekend", "shift", "walk", "journey", "visit"),
    (
        "",
        " at home",
        " in town",
        " in the countryside",
        " at the cabin",
        " by the river",
        " at work",
        " in the village",
        " on the farm",
        " at the station",
        " in the old house",
        " on the road",
    ),
)
COMPOSED_PATTERN_PARTS: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]] = (
    ("", "first ", "at first ", "to begin, ", "in the beginning "),
    (
        "then ",
        "next ",
        "soon ",
        "a moment later ",
        "after that, ",
        "afterwards ",
        "right after, ",
        "meanwhile ",
        "now ",
        "suddenly ",
        "at that point, ",
        "and then ",
    ),
    ("and finally ", "at last ", "in the end, ", "finally ", "to close, ", "last of all, "),
    (", ", "; ", ". "),
)


# Nonce filler: half of the composed leads, scenes and connectives are made-up words (consonant-vowel syllables)
# mixed with common function words, so that nothing but the clauses and their "(X s)" marks the events.
NONCE_CONSONANTS, NONCE_VOWELS = "bcdfghklmnprstvwz", "aeiou"
NONCE_FUNCTION_WORDS: tuple[str, ...] = (
    "the",
    "a",
    "when",
    "as",
    "of",
    "that",
    "and",
    "with",
    "while",
    "so",
    "it",
    "to",
    "in",
    "on",
    "by",
)


def _nonce_word(rng: np.random.Generator) -> str:
    if rng.random() < 0.3:
        return NONCE_FUNCTION_WORDS[_pick(rng, len(NONCE_FUNCTION_WORDS))]
    syllables = int(rng.integers(1, 4))
    return "".join(
        NONCE_CONSONANTS[_pick(rng, len(NONCE_CONSONANTS))] + NONCE_VOWELS[_pick(rng, len(NONCE_VOWELS))]
        for _ in range(syllables)
    )


def _nonce_words(rng: np.random.Generator, lo: int, hi: int) -> str:
    return " ".join(_nonce_word(rng) for _ in range(int(rng.integers(lo, hi + 1))))


def _nonce_connective(rng: np.random.Generator, *, may_be_empty: bool) -> str:
    if may_be_empty and rng.random() < 0.4:
        return ""
    return _nonce_words(rng, 1, 4) + (", " if rng.random() < 0.2 else " ")


def _composed_lead(rng: np.random.Generator) -> tuple[str, str]:
    """(lead phrase ending with a space, template key) from ``COMPOSED_LEAD_PARTS`` or, half of the time, nonce."""
    if rng.random() < 0.5:
        words = _nonce_words(rng, 3, 9)
        return words[:1].upper() + words[1:] + " ", "lead:n"
    ids = [_pick(rng, len(part)) for part in COMPOSED_LEAD_PARTS]
    verb, thing, link = (part[i] for part, i in zip(COMPOSED_LEAD_PARTS, ids, strict=True))
    return f"{verb} {thing} {link} ", "lead:c" + "-".join(map(str, ids))


def _composed_scene(rng: np.random.Generator) -> tuple[str, str]:
    if rng.random() < 0.5:
        return _nonce_words(rng, 2, 6), "scene:0:n"
    ids = [_pick(rng, len(part)) for part in COMPOSED_SCENE_PARTS]
    mood, time, place = (part[i] for part, i in zip(COMPOSED_SCENE_PARTS, ids, strict=True))
    article = "an" if mood[0] in "aeiou" else "a"
    return f"{article} {mood} {time}{place}", "scene:0:c" + "-".join(map(str, ids))


def _composed_pattern(rng: np.random.Generator) -> tuple[Pattern, str]:
    if rng.random() < 0.5:
        sep = COMPOSED_PATTERN_PARTS[3][_pick(rng, len(COMPOSED_PATTERN_PARTS[3]))]
        first = _nonce_connective(rng, may_be_empty=True)
        middle = tuple(dict.fromkeys(_nonce_connective(rng, may_be_empty=False) for _ in range(2)))
        return Pattern(first, middle, _nonce_connective(rng, may_be_empty=False), sep), "pattern:0:n"
    firsts, middles, lasts, seps = COMPOSED_PATTERN_PARTS
    ids = [
        _pick(rng, len(firsts)),
        _pick(rng, len(middles)),
        _pick(rng, len(middles)),
        _pick(rng, len(lasts)),
        _pick(rng, len(seps)),
    ]
    pattern = Pattern(
        firsts[ids[0]], tuple(dict.fromkeys((middles[ids[1]], middles[ids[2]]))), lasts[ids[3]], seps[ids[4]]
    )
    return pattern, "pattern:0:c" + "-".join(map(str, ids))


PATTERNS: tuple[tuple[Pattern, ...], tuple[Pattern, ...]] = (
    (
        Pattern("", ("then ",), "and finally ", ", "),
        Pattern("first ", ("next ", "then "), "at last ", "; "),
        Pattern("", ("after that, ", "then "), "in the end, ", ". "),
        Pattern("at first ", ("soon ", "a moment later "), "finally ", ", "),
    ),
    (
        Pattern("", ("moments later, ", "shortly after, "), "eventually, ", ". "),
        Pattern("it opens as ", ("before long ", "later "), "and it closes as ", "; "),
        Pattern("the scene begins when ", ("whereupon ", "after which "), "until ", ", "),
    ),
)

# Per class: (train clauses, test clauses); each clause is (text, names the sound only indirectly).
CLAUSES: dict[str, tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]]] = {
    "rain": (
        (
            ("rain starts to fall", False),
            ("it begins to rain", False),
            ("drops patter against the window", True),
            ("the roof starts to drum", True),
        ),
        (("a downpour sets in", False), ("the clouds finally open", True)),
    ),
    "thunder": (
        (
            ("thunder rolls", False),
            ("a thunderclap booms overhead", False),
            ("the sky rumbles", True),
            ("the storm growls overhead", True),
        ),
        (("thunder cracks across the valley", False), ("the heavens roar", True)),
    ),
    "footsteps": (
        (
            ("footsteps approach", False),
            ("steps echo along the corridor", False),
            ("someone walks down the hall", True),
            ("a person paces across the room", True),
        ),
        (("footfalls come closer", False), ("a stranger strolls past", True)),
    ),
    "door_slam": (
        (
            ("a door slams shut", False),
            ("the door bangs closed", False),
            ("someone storms out of the room", True),
            ("the front door is shut with a bang", False),
        ),
        (("a door crashes shut", False), ("someone leaves in a fury", True)),
    ),
    "knocking": (
        (
            ("someone knocks at the door", False),
            ("there is a knock on the door", False),
            ("a visitor raps on the wood", True),
            ("a neighbour comes calling", True),
        ),
        (("a knocking starts at the door", False), ("knuckles rap at the entrance", True)),
    ),
    "car_engine": (
        (
            ("a car engine starts", False),
            ("an engine idles outside", False),
            ("someone starts the car", True),
            ("the motor revs in the driveway", False),
        ),
        (("the engine turns over", False), ("an old truck rumbles to life", True)),
    ),
    "tyre_skid": (
        (
            ("tyres screech", False),
            ("a car skids on the road", False),
            ("brakes are slammed hard", True),
            ("a driver swerves suddenly", True),
        ),
        (("a car skids to a halt", False), ("wheels squeal around the corner", True)),
    ),
    "siren": (
        (
            ("a siren wails", False),
            ("a police car speeds by with its siren on", False),
            ("an ambulance races past", True),
            ("emergency services rush through the streets", True),
        ),
        (("a siren howls", False), ("a fire engine screams down the avenue", True)),
    ),
    "dog_bark": (
        (
            ("a dog barks", False),
            ("the dog starts barking", False),
            ("the neighbour's hound wakes up", True),
            ("a dog warns off a stranger", False),
        ),
        (("barking breaks out", False), ("a puppy yaps at the gate", True)),
    ),
    "birdsong": (
        (
            ("birds chirp", False),
            ("birds start singing", False),
            ("dawn breaks over the garden", True),
            ("a robin greets the morning", True),
        ),
        (("birdsong fills the air", False), ("sparrows chatter in the hedge", True)),
    ),
    "wind": (
        (
            ("the wind picks up", False),
            ("wind howls around the house", False),
            ("a gust rattles the shutters", True),
            ("a draught moans through the gaps", True),
        ),
        (("a breeze sweeps across the field", False), ("the trees begin to sway", True)),
    ),
    "glass_break": (
        (
            ("glass shatters", False),
            ("a window breaks", False),
            ("something fragile smashes to pieces", True),
            ("a vase falls to the floor", True),
        ),
        (("the glass pane cracks and breaks", False), ("a bottle explodes into shards", True)),
    ),
    "bell": (
        (
            ("a bell rings", False),
            ("church bells toll", False),
            ("the chapel marks the hour", True),
            ("the bell tower chimes", False),
        ),
        (("a bell peals", False), ("the old campanile calls the village", True)),
    ),
    "clock_ticks": (
        (
            ("a clock ticks", False),
            ("the clock ticks on", False),
            ("time crawls by on the mantelpiece", True),
            ("time slowly passes in the quiet room", True),
        ),
        (("the grandfather clock keeps time", False), ("the seconds slip away audibly", True)),
    ),
    "crowd_murmur": (
        (
            ("a crowd murmurs", False),
            ("people chat nearby", False),
            ("guests gather in the hall", True),
            ("the audience settles in", True),
        ),
        (("chatter rises from the crowd", False), ("a throng of visitors fills the square", True)),
    ),
    "heartbeat": (
        (
            ("a heart beats", False),
            ("a heartbeat pounds", False),
            ("someone's pulse races", True),
            ("fear grips the listener", True),
        ),
        (("the heartbeat quickens", False), ("the chest thumps with tension", True)),
    ),
    "water_stream": (
        (
            ("a stream flows", False),
            ("water runs over the rocks", False),
            ("a brook babbles nearby", False),
            ("the creek carries the meltwater away", True),
        ),
        (("running water trickles by", False), ("a spring gurgles in the woods", True)),
    ),
    "phone_ring": (
        (
            ("a phone rings", False),
            ("the telephone starts ringing", False),
            ("someone calls the house", True),
            ("a call comes in", True),
        ),
        (("a telephone rings out", False), ("the landline demands attention", True)),
    ),
    "fire_crackle": (
        (
            ("a fire crackles", False),
            ("the campfire pops and crackles", False),
            ("logs burn in the hearth", True),
            ("someone lights the stove", True),
        ),
        (("flames crackle", False), ("embers glow and snap", True)),
    ),
}

# Relative typical length of each class in a story: impulsive events are short, ambiences long.
TYPICAL_LENGTH: dict[str, float] = {
    "rain": 1.5,
    "thunder": 0.9,
    "footsteps": 1.0,
    "door_slam": 0.5,
    "knocking": 0.7,
    "car_engine": 1.1,
    "tyre_skid": 0.7,
    "siren": 1.0,
    "dog_bark": 0.8,
    "birdsong": 1.2,
    "wind": 1.4,
    "glass_break": 0.6,
    "bell": 0.9,
    "clock_ticks": 1.0,
    "crowd_murmur": 1.4,
    "heartbeat": 1.0,
    "water_stream": 1.4,
    "phone_ring": 0.9,
    "fire_crackle": 1.3,
}

QA_QUESTIONS: tuple[str, ...] = (
    "What sound is this?",
    "Describe the sound you hear.",
    "What can be heard in this audio?",
    "What is making this sound?",
)


def is_held_out_pair(first: str, second: str) -> bool:
    """Whether the ordered class pair ``first -> second`` is reserved for the test split."""
    return zlib.crc32(f"{first}>{second}".encode()) % 5 == 0


def held_out_pairs() -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a in CLASS_NAMES for b in CLASS_NAMES if a != b and is_held_out_pair(a, b))


@dataclass(frozen=True)
class StoryOptions:
    """Shape of generated stories. A story never uses a class twice, so at most 19 events."""

    min_events: int = 2
    max_events: int = 6
    min_total: float = 10.0  # seconds
    max_total: float = 60.0
    min_event: float = 1.5  # seconds, shortest event
    # Say each event's length in the narrative ("rain starts (8.2 s)"): event lengths carry random variation that
    # nothing else in the instruction reveals, so without hints no planner can learn them exactly.
    duration_hints: bool = False
    # Train and val only: half of the leads, scenes and connective patterns composed from train-only parts
    # (``COMPOSED_*_PARTS``), so that a planner learns to skip wording it does not know. The test split is the same
    # either way.
    composed_phrasing: bool = True
    # Train and val only: the share of events narrated by a caption-like description of the sound (its class
    # keywords dropped half of the time) instead of a clause, so that the planner learns to read caption words
    # ("campanile", "landline") in an instruction, not only after the class is decided (docs/demo-model.md).
    caption_clauses: float = 0.0

    def check(self) -> None:
        if not 2 <= self.min_events <= self.max_events <= len(CLASS_NAMES):
            raise InputError(
                f"event counts {self.min_events}..{self.max_events} are invalid; "
                f"need 2 <= min <= max <= {len(CLASS_NAMES)}"
            )
        if not 0.0 <= self.caption_clauses <= 1.0:
            raise InputError(f"caption_clauses={self.caption_clauses} must be between 0 and 1")
        if not 0.5 <= self.min_event:
            raise InputError(f"min_event={self.min_event} s is too short; use at least 0.5 s")
        if not self.min_events * self.min_event <= self.min_total <= self.max_total:
            raise InputError(
                f"total range {self.min_total}..{self.max_total} s is invalid for {self.min_events} events of at "
                f"least {self.min_event} s; need min_events * min_event <= min_total <= max_total"
            )


@dataclass(frozen=True)
class FoleyEvent:
    class_name: str
    params: EventParams
    caption: str
    story_detail: str
    duration: float  # seconds, a multiple of 0.1
    seed: int

    def render(self, sr: int) -> np.ndarray:
        return render_event(self.class_name, self.params, self.duration, sr, self.seed)


@dataclass(frozen=True)
class FoleyStory:
    instruction: str  # planner.prompt.build_instruction: lead + scene + narrative + "The total duration is X seconds."
    storyline: str  # "The storyline is mainly about: ... divided into N sequential parts."
    reasoning: str  # planner.layout.reasoning_text(storyline, events): storyline + one "Event i: ..." line each
    events: tuple[FoleyEvent, ...]
    total_duration: float
    split: str
    scene: str
    template_keys: tuple[str, ...]  # phrasing used: lead, scene, pattern and clause ids

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(e.class_name for e in self.events)

    def starts(self) -> list[float]:
        """Start time of each event in seconds (cumulative, exact to 0.1 s)."""
        ds = np.cumsum([0] + [_deciseconds(e.duration) for e in self.events[:-1]])
        return [float(v) / 10.0 for v in ds]


def _deciseconds(seconds: float) -> int:
    return int(round(seconds * 10.0))


def _pick(rng: np.random.Generator, n: int) -> int:
    return int(rng.integers(n))


def _check_split(split: str) -> int:
    if split not in _SPLIT_IDS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return 1 if split == "test" else 0


def _class_sequence(rng: np.random.Generator, n: int, held: int) -> list[str]:
    names = list(CLASS_NAMES)
    if not held:  # train/val: a walk over seen pairs only, no class twice; restart on a dead end
        for _ in range(100):
            seq = [names[_pick(rng, len(names))]]
            while len(seq) < n:
                options = [c for c in names if c not in seq and not is_held_out_pair(seq[-1], c)]
                if not options:
                    break
                seq.append(options[_pick(rng, len(options))])
            if len(seq) == n:
                return seq
        raise InputError(f"cannot build a sequence of {n} distinct classes from seen pairs; use fewer events")
    pairs = held_out_pairs()
    at = _pick(rng, n - 1)
    slots: list[str] = [""] * n  # a held-out pair at a random position, free choices around it
    slots[at], slots[at + 1] = pairs[_pick(rng, len(pairs))]
    for i in [*range(at - 1, -1, -1), *range(at + 2, n)]:
        options = [c for c in names if c not in slots]
        slots[i] = options[_pick(rng, len(options))]
    return slots


def _durations(rng: np.random.Generator, classes: list[str], total_ds: int, min_ds: int) -> list[int]:
    """Split ``total_ds`` deciseconds into parts of at least ``min_ds``, in proportion to typical lengths."""
    weights = np.array([TYPICAL_LENGTH[c] for c in classes]) * rng.lognormal(0.0, 0.3, len(classes))
    spare = total_ds - min_ds * len(classes)
    share = spare * weights / weights.sum()
    parts = np.floor(share).astype(int)
    for k in np.argsort(-(share - parts))[: spare - int(parts.sum())]:  # largest remainders get the leftovers
        parts[k] += 1
    return [int(min_ds + p) for p in parts]


def _caption_clause(rng: np.random.Generator, name: str, params: EventParams) -> tuple[str, str]:
    """(clause, template key): a fresh caption of the event (its own parameters, so the narration never contradicts
    its sound) in lower case, half of the time without the words that hold a class keyword, so that the other
    caption words ("campanile", "knuckles") must carry the class."""
    caption = caption_for(name, params, rng)
    words = caption[:1].lower() + caption[1:]
    if rng.random() < 0.5:
        keywords = get_class(name).keywords
        kept = [w for w in words.split(" ") if not any(k in w.lower() for k in keywords)]
        if len(kept) >= 2:
            masked = tidy(" ".join(kept))  # the captions' own clean-up: dangling "and", commas, "a"/"an"
            return masked[:1].lower() + masked[1:], f"clause:{name}:0:masked"
    return words, f"clause:{name}:0:caption"


def _narrative(pattern: Pattern, clauses: list[str], rng: np.random.Generator) -> str:
    pieces = [pattern.first + clauses[0]]
    for clause in clauses[1:-1]:
        pieces.append(pattern.middle[_pick(rng, len(pattern.middle))] + clause)
    pieces.append(pattern.last + clauses[-1])
    text = pattern.sep.join(pieces) + "."
    head, *rest = text.split(". ")  # the narrative follows "scene: ", so only later sentences get a capital
    return ". ".join([head] + [s[:1].upper() + s[1:] for s in rest])


def _join_titles(titles: list[str]) -> str:
    unique = list(dict.fromkeys(titles))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]


def make_story(
    rng: np.random.Generator, *, split: str, total: float | None = None, options: StoryOptions = StoryOptions()
) -> FoleyStory:
    """One story of ``options.min_events``..``max_events`` events whose durations sum exactly to the total.

    ``total`` (seconds, a multiple of 0.1) fixes the length; otherwise it is drawn from the options' range.
    """
    held = _check_split(split)
    options.check()
    min_ds = _deciseconds(options.min_event)
    if total is not None:
        total_ds = _deciseconds(total)
        if abs(total_ds / 10.0 - total) > 1e-6 or total_ds < options.min_events * min_ds:
            raise InputError(
                f"total={total!r} s must be a multiple of 0.1 s and at least "
                f"{options.min_events * options.min_event:g} s for {options.min_events}+ events"
            )
        max_events = min(options.max_events, total_ds // min_ds)
        n = int(rng.integers(options.min_events, max_events + 1))
    else:
        n = int(rng.integers(options.min_events, options.max_events + 1))
        lo = max(_deciseconds(options.min_total), n * min_ds)
        total_ds = int(rng.integers(lo, _deciseconds(options.max_total) + 1))

    classes = _class_sequence(rng, n, held)
    durations = _durations(rng, classes, total_ds, min_ds)
    lead_ids = [i for i in range(len(LEAD_PHRASES)) if (i in HELD_OUT_LEADS) == bool(held)]
    lead_id = lead_ids[_pick(rng, len(lead_ids))]
    scene_id = _pick(rng, len(SCENES[held]))
    pattern_id = _pick(rng, len(PATTERNS[held]))
    lead: int | str = lead_id
    scene, pattern = SCENES[held][scene_id], PATTERNS[held][pattern_id]
    keys = [f"lead:{lead_id}", f"scene:{held}:{scene_id}", f"pattern:{held}:{pattern_id}"]
    if not held and options.composed_phrasing:  # train and val: half of the stories in composed phrasing
        if rng.random() < 0.5:
            lead, keys[0] = _composed_lead(rng)
        if rng.random() < 0.5:
            scene, keys[1] = _composed_scene(rng)
        if rng.random() < 0.5:
            pattern, keys[2] = _composed_pattern(rng)

    events: list[FoleyEvent] = []
    clauses: list[str] = []
    for name, ds in zip(classes, durations, strict=True):
        params: EventParams | None = None
        if not held and options.caption_clauses > 0.0 and rng.random() < options.caption_clauses:
            params = sample_params(rng, name)
            clause, key = _caption_clause(rng, name, params)
        else:
            pool = CLAUSES[name][held]
            clause_id = _pick(rng, len(pool))
            clause, key = pool[clause_id][0], f"clause:{name}:{held}:{clause_id}"
        keys.append(key)
        clauses.append(f"{clause} ({ds / 10:.1f} s)" if options.duration_hints else clause)
        if params is None:  # drawn after the clause, as always, so clause-only stories keep their random stream
            params = sample_params(rng, name)
        events.append(
            FoleyEvent(
                class_name=name,
                params=params,
                caption=caption_for(name, params, rng),
                story_detail=clause[:1].upper() + clause[1:] + ".",
                duration=ds / 10.0,
                seed=int(rng.integers(2**31)),
            )
        )

    total_s = total_ds / 10.0
    narrative = _narrative(pattern, clauses, rng)
    instruction = build_instruction(f"{scene}: {narrative}", total_s, lead=lead)
    summary = f"{scene}, with {_join_titles([get_class(c).title for c in classes])}"
    storyline = f"The storyline is mainly about: {summary}. The whole story can be divided into {n} sequential parts."
    return FoleyStory(
        instruction=instruction,
        storyline=storyline,
        reasoning=reasoning_text(storyline, events),
        events=tuple(events),
        total_duration=total_s,
        split=split,
        scene=scene,
        template_keys=tuple(keys),
    )


# ---------------------------------------------------------------------------------------------------------------
# manifests


@dataclass(frozen=True)
class ManifestPaths:
    root: Path
    clips: Path  # {"audio", "caption", "class", "params"}
    qa: Path  # {"audio", "question", "answer"}
    stories: Path  # {"instruction", "reasoning", "storyline", "events": [...], "total_duration", "audio"}


MANIFEST_NAMES = {"clips": "clips.jsonl", "qa": "qa.jsonl", "stories": "stories.jsonl"}


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def story_record(story: FoleyStory, event_audio: list[str] | None, story_audio: str | None) -> dict[str, Any]:
    """A story manifest line; audio paths are relative to the manifest's folder. Without audio (``None``) the
    line holds only the text, which is what ``audiostory train planner`` reads."""
    events = []
    for k, e in enumerate(story.events):
        event = {"caption": e.caption, "story_detail": e.story_detail, "duration": e.duration}
        if event_audio is not None:
            event["audio"] = event_audio[k]
        events.append({**event, "class": e.class_name, "params": e.params.to_dict(), "seed": e.seed})
    record = {
        "instruction": story.instruction,
        "reasoning": story.reasoning,
        "storyline": story.storyline,
        "events": events,
        "total_duration": story.total_duration,
    }
    if story_audio is not None:
        record["audio"] = story_audio
    return {**record, "split": story.split}


def write_story_texts(
    path: Path,
    *,
    split: str,
    n_stories: int,
    seed: int = 0,
    options: StoryOptions = StoryOptions(),
) -> Path:
    """``n_stories`` stories of ``split`` as text only (no audio rendered), one JSONL line each, written atomically.

    Deterministic in all arguments; the stream differs from ``write_manifests``' stories of the same seed.
    """
    _check_split(split)
    if n_stories < 1:
        raise InputError(f"n_stories={n_stories} must be at least 1")
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], 3])
    rows = [story_record(make_story(rng, split=split, options=options), None, None) for _ in range(n_stories)]
    write_text_atomic(Path(path), _jsonl(rows))
    return Path(path)


def write_manifests(
    out_dir: Path,
    *,
    split: str,
    n_stories: int,
    n_clips: int,
    sr: int = 16_000,
    seed: int = 0,
    options: StoryOptions = StoryOptions(),
    clip_seconds: tuple[float, float] = (2.0, 8.0),
    overwrite: bool = False,
    progress: ProgressFn = no_progress,
) -> ManifestPaths:
    """Render a split of the foley world to WAV files and write its JSONL manifests under ``out_dir``.

    ``clips.jsonl`` holds ``n_clips`` single events (classes balanced), ``qa.jsonl`` one understanding question
    per clip, ``stories.jsonl`` ``n_stories`` stories whose events are rendered one file each plus the whole
    story (``stories/000001/full.wav``, the events back to back). Deterministic in all arguments.
    """
    _check_split(split)
    if n_stories < 0 or n_clips < 0:
        raise InputError(f"n_stories={n_stories} and n_clips={n_clips} must not be negative")
    if not 0.5 <= clip_seconds[0] <= clip_seconds[1]:
        raise InputError(f"clip_seconds={clip_seconds} is invalid; need 0.5 <= min <= max")
    out_dir = Path(out_dir)
    paths = ManifestPaths(out_dir, *(out_dir / MANIFEST_NAMES[k] for k in ("clips", "qa", "stories")))
    existing = [p for p in (paths.clips, paths.qa, paths.stories) if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} already exists; choose another folder or pass overwrite=True")
    out_dir.mkdir(parents=True, exist_ok=True)
    split_id = _SPLIT_IDS[split]

    clip_rng = np.random.default_rng([seed, split_id, 1])
    order = np.concatenate([clip_rng.permutation(len(CLASS_NAMES)) for _ in range(n_clips // len(CLASS_NAMES) + 1)])
    clips, qa = [], []
    for i in range(n_clips):
        name = CLASS_NAMES[int(order[i])]
        params = sample_params(clip_rng, name)
        seconds = round(float(clip_rng.uniform(*clip_seconds)), 1)
        rel = f"clips/{i + 1:06d}.wav"
        audio = render_event(name, params, seconds, sr, int(clip_rng.integers(2**31)))
        write_audio(out_dir / rel, audio, sr, "PCM_16")
        caption = caption_for(name, params, clip_rng)
        clips.append({"audio": rel, "caption": caption, "class": name, "params": params.to_dict(), "duration": seconds})
        qa.append({"audio": rel, "question": QA_QUESTIONS[_pick(clip_rng, len(QA_QUESTIONS))], "answer": caption})
        progress("foley-clips", i + 1, n_clips)

    story_rng = np.random.default_rng([seed, split_id, 2])
    stories = []
    for i in range(n_stories):
        story = make_story(story_rng, split=split, options=options)
        folder = f"stories/{i + 1:06d}"
        rels, renders = [], []
        for k, event in enumerate(story.events, start=1):
            rel = f"{folder}/{k:02d}.wav"
            audio = event.render(sr)
            write_audio(out_dir / rel, audio, sr, "PCM_16")
            rels.append(rel)
            renders.append(audio)
        write_audio(out_dir / f"{folder}/full.wav", np.concatenate(renders, axis=1), sr, "PCM_16")
        stories.append(story_record(story, rels, f"{folder}/full.wav"))
        progress("foley-stories", i + 1, n_stories)

    write_text_atomic(paths.clips, _jsonl(clips))
    write_text_atomic(paths.qa, _jsonl(qa))
    write_text_atomic(paths.stories, _jsonl(stories))
    write_text_atomic(
        out_dir / "foley.json",
        json.dumps(
            {
                "split": split,
                "seed": seed,
                "sr": sr,
                "n_clips": n_clips,
                "n_stories": n_stories,
                "options": dataclasses.asdict(options),
                "classes": list(CLASS_NAMES),
            },
            indent=2,
        )
        + "\n",
    )
    return paths
