"""Foley stories: AudioStory-style instructions and reasoning, exact durations, held-out splits, manifests."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from audiostory_cli.errors import InputError, OutputExistsError
from audiostory_cli.foley.bank import CLASS_NAMES
from audiostory_cli.foley.corpus import (
    CLAUSES,
    HELD_OUT_LEADS,
    LEAD_PHRASES,
    PATTERNS,
    SPLITS,
    StoryOptions,
    held_out_pairs,
    is_held_out_pair,
    make_story,
    write_manifests,
)

EVENT_LINE_RE = re.compile(
    r"^Event (\d+): Timestamp: (\d+\.\d)s - (\d+\.\d)s\. Story detail: (.+?) Sound effect: (.+)$"
)


def _stories(split: str, n: int, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    return [make_story(rng, split=split, **kw) for _ in range(n)]


def _pairs(classes):
    return list(zip(classes[:-1], classes[1:], strict=True))


def test_lead_phrases_are_the_official_twenty():
    assert len(LEAD_PHRASES) == 20 and all(p.endswith(" ") for p in LEAD_PHRASES)
    assert LEAD_PHRASES[12] == "Produce an in-depth, multi-layered audio that portrays "


def test_make_story_is_deterministic():
    assert _stories("train", 5, seed=3) == _stories("train", 5, seed=3)
    assert _stories("train", 5, seed=3) != _stories("train", 5, seed=4)


@pytest.mark.parametrize("split", SPLITS)
def test_durations_sum_exactly_and_instruction_is_official_style(split):
    for story in _stories(split, 150, seed=1):
        ds = [round(e.duration * 10) for e in story.events]
        assert all(abs(d / 10 - e.duration) < 1e-9 for d, e in zip(ds, story.events, strict=True))
        assert sum(ds) == round(story.total_duration * 10)
        assert 10.0 <= story.total_duration <= 60.0
        assert 2 <= len(story.events) <= 6 and min(ds) >= 15
        assert len(set(story.classes)) == len(story.classes)
        composed = story.template_keys[0].startswith(("lead:c", "lead:n"))
        assert composed or any(story.instruction.startswith(lead) for lead in LEAD_PHRASES)
        assert not (composed and split == "test")
        assert story.instruction.endswith(f" The total duration is {story.total_duration:.1f} seconds.")


def test_narrative_names_the_events_in_order():
    for story in _stories("train", 60, seed=2) + _stories("test", 60, seed=2):
        text = story.instruction.lower()
        cursor = 0
        for event in story.events:
            clause = event.story_detail[:-1].lower()
            found = text.find(clause, cursor)
            assert found >= 0, (clause, story.instruction)
            cursor = found + len(clause)


def test_some_events_are_named_only_indirectly():
    indirect = {text for pools in CLAUSES.values() for pool in pools for text, hidden in pool if hidden}
    details = [e.story_detail[:-1].lower() for s in _stories("train", 80, seed=5) for e in s.events]
    assert any(d in indirect for d in details) and any(d not in indirect for d in details)


def test_reasoning_follows_the_official_layout():
    for story in _stories("val", 60, seed=4):
        first, *lines = story.reasoning.split("\n")
        assert first == story.storyline
        assert story.storyline.startswith("The storyline is mainly about: ")
        assert story.storyline.endswith(f"The whole story can be divided into {len(story.events)} sequential parts.")
        assert len(lines) == len(story.events)
        for k, (line, event, t0) in enumerate(zip(lines, story.events, story.starts(), strict=True), start=1):
            index, start, end, detail, caption = EVENT_LINE_RE.match(line).groups()
            assert int(index) == k
            assert float(start) == pytest.approx(t0) and float(end) == pytest.approx(t0 + event.duration)
            assert detail == event.story_detail and caption == event.caption
        assert float(EVENT_LINE_RE.match(lines[-1]).group(3)) == pytest.approx(story.total_duration)


def test_given_total_is_respected_and_validated():
    rng = np.random.default_rng(0)
    for total in (3.0, 12.3, 45.7):
        story = make_story(rng, split="train", total=total)
        assert story.total_duration == total
        assert sum(round(e.duration * 10) for e in story.events) == round(total * 10)
    with pytest.raises(InputError, match="multiple of 0.1"):
        make_story(rng, split="train", total=12.34)
    with pytest.raises(InputError, match="at least"):
        make_story(rng, split="train", total=2.0)
    with pytest.raises(InputError, match="unknown split"):
        make_story(rng, split="dev")
    with pytest.raises(InputError, match="invalid"):
        make_story(rng, split="train", options=StoryOptions(min_events=5, max_events=3))


def test_options_change_the_story_shape():
    options = StoryOptions(min_events=3, max_events=3, min_total=20.0, max_total=25.0, min_event=2.0)
    for story in _stories("train", 30, options=options):
        assert len(story.events) == 3 and 20.0 <= story.total_duration <= 25.0
        assert min(e.duration for e in story.events) >= 2.0


def test_held_out_pairs_are_a_minority_and_train_can_always_continue():
    pairs = held_out_pairs()
    assert 0.1 < len(pairs) / (len(CLASS_NAMES) * (len(CLASS_NAMES) - 1)) < 0.3
    for a in CLASS_NAMES:
        assert sum(1 for b in CLASS_NAMES if b != a and not is_held_out_pair(a, b)) >= 8


def test_splits_are_disjoint_in_phrasing_and_class_order():
    train = _stories("train", 300, seed=7) + _stories("val", 100, seed=7)
    test = _stories("test", 200, seed=7)
    for story in train:
        assert not any(is_held_out_pair(a, b) for a, b in _pairs(story.classes))
        lead = story.template_keys[0].split(":")[1]
        assert lead.startswith(("c", "n")) or int(lead) not in HELD_OUT_LEADS
        assert all(k.split(":")[-2] == "0" for k in story.template_keys[1:]), story.template_keys
    for story in test:
        assert any(is_held_out_pair(a, b) for a, b in _pairs(story.classes))
        assert int(story.template_keys[0].split(":")[1]) in HELD_OUT_LEADS
        assert all(k.split(":")[-2] == "1" for k in story.template_keys[1:]), story.template_keys
    train_phrases = {k for s in train for k in s.template_keys}
    test_phrases = {k for s in test for k in s.template_keys}
    assert not train_phrases & test_phrases
    assert not {s.classes for s in train} & {s.classes for s in test}
    assert not {s.instruction.split(":")[0] for s in train} & {s.instruction.split(":")[0] for s in test}


_STOP_WORDS = frozenset(
    "a an the of to in on and is are someone something from with into out up over its it by at".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP_WORDS}


def test_train_composes_phrasing_that_is_never_held_out():
    train = _stories("train", 300, seed=11)
    test = _stories("test", 300, seed=11)
    kinds = [{k.split(":")[0] for k in s.template_keys[:3] if ":c" in k or k.endswith(":n")} for s in train]
    nonce = [{k.split(":")[0] for k in s.template_keys[:3] if k.endswith(":n")} for s in train]
    for kind in ("lead", "scene", "pattern"):  # about half of each is composed, half of those nonce
        assert 0.35 < sum(kind in k for k in kinds) / len(train) < 0.65, kind
        assert 0.15 < sum(kind in k for k in nonce) / len(train) < 0.35, kind
    # no held-out lead, scene or connective shows up in any train instruction
    held_leads = [LEAD_PHRASES[i] for i in HELD_OUT_LEADS]
    held_connectives = {c.strip(" ,;") for p in PATTERNS[1] for c in (p.first, *p.middle, p.last) if c.strip()}
    for story in train:
        text = story.instruction
        assert not any(lead in text for lead in held_leads) and story.scene not in {s.scene for s in test}
        assert not any(f" {c} " in f" {text.lower()} " for c in held_connectives if len(c.split()) > 1), text
    assert _stories("test", 20, seed=4) == _stories("test", 20, seed=4, options=StoryOptions(composed_phrasing=False))
    assert _stories("train", 20, seed=4) != _stories("train", 20, seed=4, options=StoryOptions(composed_phrasing=False))


def test_nonce_filler_is_made_up_words_around_the_real_clauses():
    from audiostory_cli.foley.corpus import NONCE_CONSONANTS, NONCE_FUNCTION_WORDS, NONCE_VOWELS

    syllable = f"[{NONCE_CONSONANTS}][{NONCE_VOWELS}]"
    nonce_word = re.compile(f"(?:{syllable}){{1,3}}|" + "|".join(NONCE_FUNCTION_WORDS))
    stories = [s for s in _stories("train", 200, seed=12) if "scene:0:n" in s.template_keys]
    assert stories
    for story in stories:
        assert all(nonce_word.fullmatch(w) for w in story.scene.split()), story.scene
        assert story.storyline.startswith(f"The storyline is mainly about: {story.scene}, with ")
        assert all(e.story_detail[:-1].lower() in story.instruction.lower() for e in story.events)


def test_held_out_clauses_use_words_the_world_teaches():
    """Held-out phrasings are unseen as narrative clauses, but every one of them shares a content word with its
    class's caption vocabulary, so a model trained only on this world can learn what the words mean."""
    from audiostory_cli.foley.captions import VOCAB

    for name in CLASS_NAMES:
        taught = set().union(*(_content_words(noun) for noun in VOCAB[name].nouns))
        for clause, *_ in CLAUSES[name][1]:
            assert _content_words(clause) & taught, (name, clause)


def test_write_manifests_round_trip(tmp_path):
    sr = 16_000
    options = StoryOptions(min_events=2, max_events=3, min_total=3.0, max_total=4.0, min_event=1.0)
    paths = write_manifests(
        tmp_path / "train",
        split="train",
        n_stories=2,
        n_clips=3,
        sr=sr,
        seed=5,
        options=options,
        clip_seconds=(0.5, 1.0),
    )
    clips = [json.loads(line) for line in paths.clips.read_text().splitlines()]
    qa = [json.loads(line) for line in paths.qa.read_text().splitlines()]
    stories = [json.loads(line) for line in paths.stories.read_text().splitlines()]
    assert len(clips) == len(qa) == 3 and len(stories) == 2
    for clip, question in zip(clips, qa, strict=True):
        audio, rate = sf.read(paths.root / clip["audio"], always_2d=True)
        assert rate == sr and audio.shape == (round(clip["duration"] * sr), 2)
        assert clip["class"] in CLASS_NAMES and clip["caption"]
        assert question["audio"] == clip["audio"] and question["answer"] == clip["caption"]
        assert question["question"].endswith("?") or question["question"].endswith(".")
    assert clips[0]["audio"] == "clips/000001.wav"
    for story in stories:
        assert story["instruction"].endswith(f"The total duration is {story['total_duration']:.1f} seconds.")
        assert story["reasoning"].startswith(story["storyline"] + "\nEvent 1: Timestamp: 0.0s - ")
        total = 0
        for k, event in enumerate(story["events"], start=1):
            assert event["audio"].endswith(f"/{k:02d}.wav") and event["class"] in CLASS_NAMES
            assert set(event) >= {"caption", "story_detail", "duration", "audio", "class"}
            info = sf.info(str(paths.root / event["audio"]))
            assert info.samplerate == sr and info.channels == 2 and info.frames == round(event["duration"] * sr)
            total += info.frames
        assert sf.info(str(paths.root / story["audio"])).frames == total == round(story["total_duration"] * sr)
    meta = json.loads((paths.root / "foley.json").read_text())
    assert meta["split"] == "train" and meta["n_clips"] == 3

    again = write_manifests(
        tmp_path / "again",
        split="train",
        n_stories=2,
        n_clips=3,
        sr=sr,
        seed=5,
        options=options,
        clip_seconds=(0.5, 1.0),
    )
    assert again.stories.read_text() == paths.stories.read_text()
    assert again.clips.read_text() == paths.clips.read_text()
    with pytest.raises(OutputExistsError):
        write_manifests(tmp_path / "train", split="train", n_stories=1, n_clips=1, sr=sr, seed=5, options=options)
    write_manifests(
        tmp_path / "train", split="test", n_stories=1, n_clips=0, sr=sr, seed=5, options=options, overwrite=True
    )
    assert paths.clips.read_text() == ""


def test_duration_hints_name_each_event_length():
    from audiostory_cli.foley.corpus import StoryOptions

    story = make_story(np.random.default_rng(5), split="train", options=StoryOptions(duration_hints=True))
    for event in story.events:
        assert f"({event.duration:.1f} s)" in story.instruction
    plain = make_story(np.random.default_rng(5), split="train")
    assert "s)" not in plain.instruction.replace("seconds.", "")


def test_caption_clauses_describe_the_events_own_sound(monkeypatch):
    import zlib

    import audiostory_cli.foley.corpus as corpus

    # each caption names the parameters it was made from; the narration must name the event's own
    monkeypatch.setattr(corpus, "caption_for", lambda _name, params, _rng: f"tag{zlib.crc32(repr(params).encode())}")
    for story in _stories("train", 30, seed=21, options=StoryOptions(caption_clauses=1.0)):
        for event in story.events:
            assert event.story_detail.lower() == event.caption + "."


def test_caption_clauses_narrate_train_events_with_caption_words():
    from audiostory_cli.foley.bank import get_class

    options = StoryOptions(caption_clauses=1.0)
    stories = _stories("train", 80, seed=13, options=options)
    kinds = {"caption": 0, "masked": 0}
    for story in stories:
        for event, key in zip(story.events, story.template_keys[3:], strict=True):
            name, part, kind = key.split(":")[1:]
            assert name == event.class_name and part == "0" and kind in kinds, key
            kinds[kind] += 1
            clause = event.story_detail[:-1].lower()
            assert clause in story.instruction.lower()
            named = any(k in clause for k in get_class(name).keywords)
            assert named == (kind == "caption"), (key, clause)  # masked clauses lose every class keyword
    assert min(kinds.values()) > 0.3 * sum(kinds.values())
    # the test split never narrates with captions; a share of 0 leaves train stories as they were
    assert _stories("test", 20, seed=4) == _stories("test", 20, seed=4, options=options)
    assert _stories("train", 20, seed=4) == _stories("train", 20, seed=4, options=StoryOptions(caption_clauses=0.0))
    with pytest.raises(InputError, match="caption_clauses"):
        make_story(np.random.default_rng(0), split="train", options=StoryOptions(caption_clauses=1.5))
