"""Caption vocabulary of the foley bank: per class, the nouns that name it, words for each parameter range, and
templates that combine them.

A parameter value in [0, 1] falls in one of three bins (low < 1/3 <= mid < 2/3 <= high). Each bin has a few
synonyms; an empty string means "say nothing about it" (used for unremarkable middle values). A template names
its slots in braces: ``{noun}``, ``{intensity}``, ``{tempo}``, ``{pitch}``, ``{texture}``, ``{distance}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Bins = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def words(low: str, mid: str, high: str) -> Bins:
    """Three bins from ``|``-separated synonym lists (``"|steady"`` means: nothing, or "steady")."""
    return (tuple(low.split("|")), tuple(mid.split("|")), tuple(high.split("|")))


DISTANCE = words(
    "close by|up close|right next to the microphone|nearby|in the foreground",
    "|a little way off|at a moderate distance|",
    "in the distance|far away|heard from afar|faint and distant|from far off",
)


@dataclass(frozen=True)
class CaptionVocab:
    keywords: tuple[str, ...]  # every caption of the class contains at least one of these (lower case)
    nouns: tuple[str, ...]  # ways to name the class in a template's {noun} slot
    slots: Mapping[str, Bins]  # parameter name -> words per bin
    templates: tuple[str, ...]

    def bin_words(self, slot: str) -> Bins:
        return DISTANCE if slot == "distance" and "distance" not in self.slots else self.slots[slot]


def param_bin(value: float) -> int:
    return 0 if value < 1.0 / 3.0 else (1 if value < 2.0 / 3.0 else 2)


_SLOT_RE = re.compile(r"\{(\w+)\}")


def fill(vocab: CaptionVocab, values: Mapping[str, float], rng: np.random.Generator) -> str:
    """One caption: a random template with each slot filled by a random synonym from its value's bin."""
    template = vocab.templates[int(rng.integers(len(vocab.templates)))]

    def slot(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "noun":
            return vocab.nouns[int(rng.integers(len(vocab.nouns)))]
        options = vocab.bin_words(name)[param_bin(values[name])]
        return options[int(rng.integers(len(options)))]

    return tidy(_SLOT_RE.sub(slot, template))


def tidy(text: str) -> str:
    """Collapse the gaps left by empty slots and capitalise the first letter."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,;])", r"\1", text)
    text = re.sub(r"\band(?=[,;]|$)", "", text)  # "x and, far away": the slot after "and" was empty
    text = re.sub(r"([,;]) and\b", r"\1", text)  # "x, and y": the slot before "and" was empty
    text = re.sub(r"\s+([,;])", r"\1", text)
    text = re.sub(r"([,;])(\s*[,;])+", r"\1", text)
    text = re.sub(r"^[\s,;]+|[\s,;]+$", "", text)
    text = re.sub(r"\b(a|an) (?=[aeiou])", lambda m: "an " if m.group(1) == "a" else m.group(0), text)
    text = re.sub(r"\ban (?=[^aeiou\s])", "a ", text)
    return text[:1].upper() + text[1:]


def template_slots(template: str) -> set[str]:
    return set(_SLOT_RE.findall(template))


# ---------------------------------------------------------------------------------------------------------------
# per-class vocabulary

VOCAB: dict[str, CaptionVocab] = {
    "rain": CaptionVocab(
        keywords=("rain",),
        nouns=("rain", "rainfall", "rain shower", "rain downpour", "rain from open clouds"),
        slots={
            "intensity": words("light|gentle|soft|sparse", "steady|moderate", "heavy|pouring|torrential"),
            "tempo": words("steady|even", "|", "gusty|wind-driven|sweeping"),
            "pitch": words("with big fat drops", "", "with fine tiny droplets"),
            "texture": words(
                "on soft leaves|on grass|on wet soil",
                "on the pavement|against a window|on a street",
                "on a tin roof|drumming on a metal roof|on a car roof",
            ),
        },
        templates=(
            "{intensity} {tempo} {noun} {texture}, {distance}",
            "{intensity} {noun} falling {texture} {pitch}, {distance}",
            "the sound of {intensity} {noun} {texture}, {distance}",
            "{tempo} {intensity} {noun} {pitch}, {distance}",
        ),
    ),
    "thunder": CaptionVocab(
        keywords=("thunder",),
        nouns=("thunder", "thunder rumbling", "rolling thunder", "thunder roaring in the heavens"),
        slots={
            "intensity": words("soft|quiet|gentle", "|steady", "loud|powerful|violent"),
            "tempo": words(
                "a single roll|one lone clap|one long roll", "|", "clap after clap|repeated claps|frequent rolls"
            ),
            "pitch": words("deep low|very deep|bass-heavy", "", "higher, grumbling|thin"),
            "texture": words("smooth|muffled", "", "sharp cracking|crackling"),
        },
        templates=(
            "{intensity} {texture} {noun}, {distance}",
            "{intensity} {noun}, {tempo}, with a {pitch} rumble, {distance}",
            "{pitch} {texture} {noun} {distance}",
            "the sky rumbles with {intensity} {noun}, {tempo}, {distance}",
        ),
    ),
    "footsteps": CaptionVocab(
        keywords=("footsteps", "steps", "footfalls"),
        nouns=("footsteps", "steps", "footfalls", "footsteps of a stranger strolling past"),
        slots={
            "intensity": words("light|soft|quiet", "|", "heavy|stomping|loud"),
            "tempo": words("slow|leisurely|unhurried", "walking|steady", "fast|running|hurried"),
            "pitch": words("low thudding", "", "high clicking"),
            "texture": words(
                "on gravel|crunching on gravel|on snow",
                "on a wooden floor|on a path",
                "of hard heels on tiles|on a stone floor|on concrete",
            ),
        },
        templates=(
            "{intensity} {tempo} {noun} {texture}, {distance}",
            "{tempo} {noun} {texture} {distance}",
            "{noun}, {intensity} and {tempo}, {texture}, {distance}",
            "{pitch} {noun} {texture}, {distance}",
        ),
    ),
    "door_slam": CaptionVocab(
        keywords=("door",),
        nouns=("door slam", "door slamming shut", "door banging shut", "door slammed in a fury"),
        slots={
            "intensity": words("gently|softly|lightly", "|firmly", "violently|hard|forcefully"),
            "tempo": words("once|a single time", "|", "repeatedly|again and again|several times"),
            "pitch": words("heavy deep", "", "light hollow"),
            "texture": words("solid wooden|thick", "", "rattling|loose, rattling"),
        },
        templates=(
            "a {pitch} {texture} door slams {intensity} {tempo}, {distance}",
            "the sound of a door slamming {intensity}, {distance}",
            "a {texture} door banging shut {tempo}, {distance}",
            "{pitch} {noun}, {intensity}, {distance}",
        ),
    ),
    "knocking": CaptionVocab(
        keywords=("knock",),
        nouns=("knocking on a door", "knocks at the door", "door knocking", "knocking of knuckles at the entrance"),
        slots={
            "intensity": words("soft|timid|polite", "|", "loud|insistent|urgent"),
            "tempo": words("slow|patient|spaced-out", "|", "rapid|quick|impatient"),
            "pitch": words("deep|low", "", "high|light"),
            "texture": words("muffled|dull|thudding", "", "sharp|crisp|rapping"),
        },
        templates=(
            "{intensity} {tempo} {noun}, {distance}",
            "{texture} {noun} {distance}",
            "{pitch} {texture} {noun}, {intensity}, {distance}",
            "{noun} with {tempo} {texture} raps, {distance}",
        ),
    ),
    "car_engine": CaptionVocab(
        keywords=("engine", "motor"),
        nouns=("car engine", "engine", "motor", "old truck engine rumbling"),
        slots={
            "intensity": words("quietly|softly|gently", "|", "loudly|hard|roaring"),
            "tempo": words("idling|ticking over|running steadily", "running|humming", "revving|revving up and down"),
            "pitch": words("deep|low-pitched|rumbling", "", "high-pitched|whiny|small"),
            "texture": words("smooth|purring", "", "rough|growling|sputtering"),
        },
        templates=(
            "a {pitch} {noun} {tempo} {intensity}, {distance}",
            "a {texture} {noun} {tempo}, {distance}",
            "a {noun} {tempo}, {texture} and {pitch}, {distance}",
            "the sound of a {noun} {tempo} {intensity}, {distance}",
        ),
    ),
    "tyre_skid": CaptionVocab(
        keywords=("skid", "screech"),
        nouns=("tyre skid", "tyre screech", "car skid", "skid of wheels squealing round a corner"),
        slots={
            "intensity": words("brief soft|mild", "|", "loud|violent|harsh"),
            "tempo": words("one long|a drawn-out|a sustained", "|", "short repeated|several quick"),
            "pitch": words("low", "", "high-pitched|shrill"),
            "texture": words("gritty scraping|gravelly", "", "squealing|screeching rubber"),
        },
        templates=(
            "{intensity} {texture} {noun}, {distance}",
            "{tempo} {pitch} {noun} {distance}",
            "{noun}, {texture} and {pitch}, {distance}",
            "{tempo} {texture} {noun}, {distance}",
        ),
    ),
    "siren": CaptionVocab(
        keywords=("siren",),
        nouns=("siren", "emergency siren", "police siren", "ambulance siren", "fire engine siren screaming"),
        slots={
            "intensity": words("faint|quiet", "|", "loud|blaring|piercing"),
            "tempo": words(
                "slowly wailing|with a long wail|slowly rising and falling",
                "wailing|sweeping",
                "fast yelping|rapidly warbling|whooping urgently",
            ),
            "pitch": words("low|deep", "", "high|shrill"),
            "texture": words("pure|smooth", "", "harsh|buzzy|electronic"),
        },
        templates=(
            "a {intensity} {noun}, {tempo}, {distance}",
            "a {texture} {pitch} {noun} {tempo}, {distance}",
            "{noun} {tempo} {distance}",
            "the sound of a {intensity} {noun}, {tempo}, {distance}",
        ),
    ),
    "dog_bark": CaptionVocab(
        keywords=("dog", "bark"),
        nouns=("dog barking", "dog barks", "barking dog", "yapping puppy dog"),
        slots={
            "intensity": words("softly|quietly|half-heartedly", "|", "loudly|fiercely|furiously"),
            "tempo": words("occasionally|now and then|slowly", "|steadily", "rapidly|non-stop|frantically"),
            "pitch": words("large|big|deep-voiced", "", "small|little|yappy"),
            "texture": words("clean|clear", "", "rough|gruff|growly"),
        },
        templates=(
            "a {pitch} dog barking {tempo}, {distance}",
            "a {texture} {pitch} dog barks {intensity}, {distance}",
            "{noun} {intensity} and {tempo}, {distance}",
            "barking from a {pitch} dog, {tempo}, {texture}, {distance}",
        ),
    ),
    "birdsong": CaptionVocab(
        keywords=("bird",),
        nouns=("birdsong", "bird chirps", "birds singing", "birds tweeting", "birdsong of sparrows in a hedge"),
        slots={
            "intensity": words("sparse|quiet|faint", "|", "lively|busy|abundant"),
            "tempo": words("unhurried|lazy|occasional", "|", "rapid|busy|excited"),
            "pitch": words("low|mellow", "", "high|shrill|piercing"),
            "texture": words("clear whistling|pure", "", "trilling|warbling"),
        },
        templates=(
            "{intensity} {texture} {noun}, {distance}",
            "{tempo} {pitch} {noun} {distance}",
            "{noun}, {texture} and {tempo}, {distance}",
            "{intensity} {noun} in the morning, {distance}",
        ),
    ),
    "wind": CaptionVocab(
        keywords=("wind", "breeze"),
        nouns=("wind", "breeze", "wind blowing", "wind swaying the trees"),
        slots={
            "intensity": words("gentle|light|soft", "|steady", "strong|fierce|powerful"),
            "tempo": words("steady|calm, even", "|", "gusty|buffeting|sudden gusts of"),
            "pitch": words("low rumbling|deep", "", "high|thin, hissing"),
            "texture": words("rustling|airy", "", "whistling|moaning|howling"),
        },
        templates=(
            "{intensity} {tempo} {noun}, {distance}",
            "{noun}, {texture} and {tempo}, {distance}",
            "{pitch} {texture} {noun} {distance}",
            "the sound of {intensity} {noun}, {texture}, {distance}",
        ),
    ),
    "glass_break": CaptionVocab(
        keywords=("glass", "window"),
        nouns=("glass breaking", "a window shattering", "glass smashing", "glass bottle exploding into shards"),
        slots={
            "intensity": words("a small|a light", "a|a sudden", "a big|a violent|a loud"),
            "tempo": words("slowly scattering|lingering", "", "in a sudden burst|all at once"),
            "pitch": words("thick|heavy", "", "thin|delicate"),
            "texture": words("crunching|crashing", "", "tinkling|chiming"),
        },
        templates=(
            "{intensity} crash of {noun}, {texture} shards, {distance}",
            "{pitch} {noun} {tempo}, {distance}",
            "{noun} with {texture} fragments, {distance}",
            "{noun}, {intensity} impact, {texture} pieces {tempo}, {distance}",
        ),
    ),
    "bell": CaptionVocab(
        keywords=("bell",),
        nouns=("bell", "bell ringing", "bell chiming", "campanile bell of the village"),
        slots={
            "intensity": words("softly|gently|quietly", "|", "loudly|strongly|powerfully"),
            "tempo": words("slow, solemn|slowly tolling|slow", "steady|regular", "fast|rapid|quickly repeated"),
            "pitch": words("large deep|low|heavy church", "", "small high|tiny tinkling|little"),
            "texture": words("pure|clear|sweet", "", "clanging|metallic|brassy"),
        },
        templates=(
            "a {pitch} {noun} {intensity}, {tempo} strikes, {distance}",
            "a {texture} {pitch} {noun} {distance}",
            "{tempo} {texture} {noun}, {distance}",
            "the sound of a {pitch} {noun}, {texture}, {distance}",
        ),
    ),
    "clock_ticks": CaptionVocab(
        keywords=("clock", "tick"),
        nouns=("clock ticking", "clock ticks", "ticking clock", "clock ticking away the seconds"),
        slots={
            "intensity": words("faint|soft|quiet", "|", "loud|prominent"),
            "tempo": words("slow|leisurely", "|steady", "fast|rapid|hurried"),
            "pitch": words("low|dull", "", "high|bright"),
            "texture": words("wooden|dry", "", "metallic|ringing"),
        },
        templates=(
            "a {intensity} {tempo} {noun}, {distance}",
            "a {texture} {noun} {distance}",
            "{noun}, {pitch} and {texture}, {distance}",
            "{tempo} {texture} {noun}, {distance}",
        ),
    ),
    "crowd_murmur": CaptionVocab(
        keywords=("crowd", "people", "chatter"),
        nouns=(
            "crowd murmuring",
            "people chatting",
            "crowd chatter",
            "murmuring crowd",
            "throng of visitors, a murmuring crowd",
        ),
        slots={
            "intensity": words("quiet|hushed|soft", "|", "loud|noisy|boisterous"),
            "tempo": words("calm|relaxed|slow", "|", "lively|animated|excited"),
            "pitch": words("low|deep-voiced", "", "high|bright-voiced"),
            "texture": words("sparse|thin|small", "", "dense|packed|large"),
        },
        templates=(
            "{intensity} {tempo} {noun}, {distance}",
            "{texture} {noun}, {distance}",
            "{noun}, {tempo} and {intensity}, {distance}",
            "the sound of {texture} {pitch} {noun}, {distance}",
        ),
    ),
    "heartbeat": CaptionVocab(
        keywords=("heart",),
        nouns=("heartbeat", "heart beating", "beating heart", "heart thumping in the chest"),
        slots={
            "intensity": words("faint|soft|quiet", "|steady", "strong|pounding|loud"),
            "tempo": words("slow|calm|resting", "|", "fast|racing|rapid"),
            "pitch": words("deep|low", "", "higher|lighter"),
            "texture": words("muffled|soft-edged", "", "sharp|thumping|clear"),
        },
        templates=(
            "a {intensity} {tempo} {noun}, {distance}",
            "a {texture} {noun}, {tempo}, {distance}",
            "{noun}, {intensity} and {texture}, {distance}",
            "{tempo} {pitch} {noun} {distance}",
        ),
    ),
    "water_stream": CaptionVocab(
        keywords=("stream", "water", "brook"),
        nouns=("stream", "flowing water", "babbling brook", "running water", "water gurgling from a spring"),
        slots={
            "intensity": words("gentle|quiet|soft", "|steady", "strong|loud|powerful"),
            "tempo": words("slow|lazy|calm", "|", "fast|rushing|quick"),
            "pitch": words("deep gurgling|low bubbling", "", "high trickling|bright bubbling"),
            "texture": words("trickling|bubbling|dripping", "", "rushing|roaring|gushing"),
        },
        templates=(
            "{intensity} {texture} {noun}, {distance}",
            "{tempo} {noun}, {pitch}, {distance}",
            "{noun}, {texture} and {tempo}, {distance}",
            "the sound of {intensity} {noun}, {distance}",
        ),
    ),
    "phone_ring": CaptionVocab(
        keywords=("phone",),
        nouns=("telephone ringing", "phone ringing", "ringing phone", "landline phone ringing"),
        slots={
            "intensity": words("quietly|softly", "|", "loudly|insistently|shrilly"),
            "tempo": words("with long slow rings|slowly", "|", "with quick short rings|rapidly|urgently"),
            "pitch": words("low", "", "high"),
            "texture": words("old mechanical|vintage bell", "", "electronic|modern|digital"),
        },
        templates=(
            "{texture} {noun} {intensity}, {distance}",
            "a {pitch} {texture} {noun} {tempo}, {distance}",
            "{noun} {tempo} {distance}",
            "the sound of a {noun} {intensity} {tempo}, {distance}",
        ),
    ),
    "fire_crackle": CaptionVocab(
        keywords=("fire", "flame"),
        nouns=("fire crackling", "crackling campfire", "burning fire", "crackling flames", "fire embers glowing"),
        slots={
            "intensity": words("small|gentle|quiet", "|", "big|roaring|blazing"),
            "tempo": words("occasionally popping|calm|slow", "|", "constantly popping|busy|lively"),
            "pitch": words("deep|low", "", "bright|sharp"),
            "texture": words("soft hissing|smouldering", "", "snapping|popping|crackly"),
        },
        templates=(
            "{intensity} {noun}, {texture}, {distance}",
            "{tempo} {noun} {distance}",
            "{texture} {intensity} {noun} with {pitch} pops, {distance}",
            "the sound of {intensity} {noun}, {tempo}, {distance}",
        ),
    ),
}
