"""Prompt, serialise/parse round trips, repairs of malformed output, and duration fitting."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiostory_cli.errors import InputError, PlanValidationError, UsageError
from audiostory_cli.planner.layout import (
    MIN_EVENT_SECONDS,
    ParsedPlan,
    PlannedEvent,
    PlanParseError,
    fit_durations,
    parse,
    serialise,
    serialise_ids,
)
from audiostory_cli.planner.prompt import (
    DEFAULT_LEAD_INDEX,
    LEAD_PHRASES,
    build_chat_prompt,
    build_instruction,
)
from audiostory_cli.planner.tokens import build_tiny_tokenizer

S, R = 3, 2
SEM = "<t5><t5_00000><t5_00001><t5_00002></t5>"
RES = "<aud><aud_00000><aud_00001></aud>"


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def gen(caption: str, seconds: str | None, sem: str = SEM, res: str = RES, close: str = "<|/gen|>") -> str:
    ts = "" if seconds is None else f"<timestamp>{seconds}</timestamp>"
    return f"<|gen|>{caption}{ts}{sem}{res}{close}\n"


# -- prompt -------------------------------------------------------------------------------------------------


def test_lead_phrases_and_instruction():
    assert len(LEAD_PHRASES) == 20 and len(set(LEAD_PHRASES)) == 20
    assert all(p.endswith(" ") and not p.endswith("  ") for p in LEAD_PHRASES)
    assert LEAD_PHRASES[DEFAULT_LEAD_INDEX] == "Produce an in-depth, multi-layered audio that portrays "
    assert build_instruction("a dog barks.", 50) == (
        "Produce an in-depth, multi-layered audio that portrays a dog barks. The total duration is 50.0 seconds."
    )
    assert build_instruction(" rain ", 22.8, lead=0) == (
        "Create a long-form audio composition that explores rain. The total duration is 22.8 seconds."
    )  # a full stop ends a prompt that has none, as every instruction of the training data does
    assert build_instruction('a sign says "stop!"', 5).endswith('says "stop!" The total duration is 5.0 seconds.')
    assert build_instruction("a chase.", 31.6, lead="Craft a audio composition for a Tom & Jerry scene showing") == (
        "Craft a audio composition for a Tom & Jerry scene showing a chase. The total duration is 31.6 seconds."
    )
    with pytest.raises(UsageError):
        build_instruction("rain", 10, lead=20)
    with pytest.raises(InputError):
        build_instruction("  ", 10)
    with pytest.raises(InputError):
        build_instruction("rain", float("nan"))


def test_chat_prompt_is_exactly_official():
    assert build_chat_prompt("X") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nX<|im_end|>\n"
        "<|im_start|>assistant\n<|think|>"
    )


# -- serialise ----------------------------------------------------------------------------------------------


def test_serialise_exact_layout():
    events = [PlannedEvent("rain on a roof", "rain begins", 5.2), PlannedEvent("a dog barks", "", 3.0)]
    assert serialise("About rain.", events, S, R) == (
        "About rain.\n"
        "Event 1: Timestamp: 0.0s - 5.2s. Story detail: rain begins Sound effect: rain on a roof\n"
        "Event 2: Timestamp: 5.2s - 8.2s. Sound effect: a dog barks<|/think|>\n"
        f"<|gen|>rain on a roof<timestamp>5.2</timestamp>{SEM}{RES}<|/gen|>\n"
        f"<|gen|>a dog barks<timestamp>3.0</timestamp>{SEM}{RES}<|/gen|>\n"
        "<|im_end|>"
    )


def test_serialise_rejects_text_that_breaks_the_layout():
    good = PlannedEvent("a dog barks", "", 3.0)
    bad_cases = [
        ("", [good], None),
        ("ok", [], "events"),
        ("ok", [PlannedEvent("a <|gen|> b", "", 1.0)], "events[1].caption"),
        ("ok", [PlannedEvent("  ", "", 1.0)], "events[1].caption"),
        ("ok", [PlannedEvent("dog", "see Event 2: later", 1.0)], "events[1].story_detail"),
        ("ok", [PlannedEvent("dog", "x Sound effect: y", 1.0)], "events[1].story_detail"),
        ("ok", [PlannedEvent("dog", "", 0.0)], "events[1].duration"),
        ("ok", [PlannedEvent("dog", "", float("inf"))], "events[1].duration"),
        ("Event 1: hi", [good], "reasoning"),
        ("a <t5_00003> b", [good], "reasoning"),
    ]
    assert serialise(*bad_cases[0][:2], S, R).startswith("Event 1:")
    for reasoning, events, fieldname in bad_cases[1:]:
        with pytest.raises(PlanValidationError) as info:
            serialise(reasoning, events, S, R)
        assert info.value.field == fieldname
    with pytest.raises(ValueError):
        serialise("ok", [good], 0, R)


# -- round trips --------------------------------------------------------------------------------------------

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789,.'!?-()&é", min_size=1, max_size=8)
_PHRASE = (
    st.lists(_WORD, min_size=1, max_size=6)
    .map(" ".join)
    .filter(lambda s: not re.search(r"\bEvent\s+\d+\s*:|sound effect:|story detail:", s, re.IGNORECASE))
)
_EVENT = st.builds(
    PlannedEvent,
    caption=_PHRASE,
    story_detail=st.one_of(st.just(""), _PHRASE),
    duration=st.integers(min_value=5, max_value=3000).map(lambda k: k / 10),
)
_REASONING = st.one_of(st.just(""), st.lists(_PHRASE, min_size=1, max_size=3).map("\n".join))


@settings(max_examples=60, deadline=None)
@given(reasoning=_REASONING, events=st.lists(_EVENT, min_size=1, max_size=5))
def test_parse_serialise_is_identity(reasoning, events):
    text = serialise(reasoning, events, S, R)
    plan = parse(text, num_semantic=S, num_residual=R)
    assert plan == ParsedPlan(reasoning=reasoning, events=events, warnings=[])
    again = parse(serialise(plan.reasoning, plan.events, S, R), num_semantic=S, num_residual=R)
    assert again == plan
    total = math.fsum(e.duration for e in events)
    assert parse(text, total_duration=total) == plan  # durations that already fit are kept as written


@settings(max_examples=25, deadline=None)
@given(reasoning=_REASONING, events=st.lists(_EVENT, min_size=1, max_size=4))
def test_parse_ids_matches_parse_text(tok, reasoning, events):
    ids = serialise_ids(tok, reasoning, events, S, R)
    assert parse(ids, tokenizer=tok, num_semantic=S, num_residual=R) == parse(serialise(reasoning, events, S, R))


# -- tolerant parsing and repairs ---------------------------------------------------------------------------


def test_free_reasoning_text_gives_empty_details():
    text = "The story is a storm, then a dog.<|/think|>\n" + gen("rain", "4") + gen("dog", "6.5") + "<|im_end|>"
    plan = parse(text, num_semantic=S, num_residual=R)
    assert plan.reasoning == "The story is a storm, then a dog."
    assert plan.events == [PlannedEvent("rain", "", 4.0), PlannedEvent("dog", "", 6.5)]
    assert plan.warnings == []


def test_readme_style_reasoning_in_one_paragraph():
    reasoning = (
        "The storyline is mainly about: a party. The whole story can be divided into 2 sequential parts. "
        "Event 1: Timestamp: 0.0s - 1.1s. Story detail: people sing. Sound effect: singing. "
        "Event 2: Timestamp: 1.1s - 10.8s. Story detail: a dog barks, kids cry. Sound effect: barking."
    )
    text = reasoning + "<|/think|>" + gen("singing crowd", "1.1") + gen("dog barking", None) + "<|im_end|>"
    plan = parse(text, num_semantic=S, num_residual=R)
    assert plan.reasoning.startswith("The storyline is mainly about: a party.")
    assert [e.story_detail for e in plan.events] == ["people sing.", "a dog barks, kids cry."]
    assert plan.events[1].duration == pytest.approx(9.7)  # missing <timestamp>: taken from the reasoning line
    assert any("took 9.7 s from the reasoning" in w for w in plan.warnings)


def test_truncated_last_event_is_dropped():
    text = "story<|/think|>\n" + gen("rain", "4") + "<|gen|>dog<timestamp>6</timestamp><t5><t5_00000>"
    plan = parse(text, num_semantic=S, num_residual=R, total_duration=10)
    assert [e.caption for e in plan.events] == ["rain"]
    assert plan.events[0].duration == 10.0
    assert any("truncated" in w for w in plan.warnings)
    assert any("did not end with <|im_end|>" in w for w in plan.warnings)


def test_complete_blocks_without_closer_are_kept():
    text = "s<|/think|>" + gen("rain", "4", close="") + gen("dog", "6", close="") + "<|im_end|>"
    plan = parse(text, num_semantic=S, num_residual=R)
    assert [e.caption for e in plan.events] == ["rain", "dog"]
    assert sum("not closed by <|/gen|>" in w for w in plan.warnings) == 2
    cut = "s<|/think|>" + gen("rain", "4") + f"<|gen|>dog<timestamp>6</timestamp>{SEM}{RES}"
    assert [e.caption for e in parse(cut).events] == ["rain", "dog"]


@pytest.mark.parametrize(
    "text",
    [
        "a long reasoning that never ends",
        "reasoning<|/think|>\n<|im_end|>",
        "reasoning<|/think|>\n<|gen|>a dog barks<timestamp>3",
        "",
    ],
)
def test_no_complete_event_raises(text):
    with pytest.raises(PlanParseError, match="no complete event"):
        parse(text, total_duration=10)


def test_missing_and_invalid_durations_share_the_remaining_time():
    text = "s<|/think|>" + gen("a", "4") + gen("b", None) + gen("c", "abc") + "<|im_end|>"
    plan = parse(text, num_semantic=S, num_residual=R, total_duration=10)
    assert [e.duration for e in plan.events] == [4.0, 3.0, 3.0]
    assert any("event 2 has no <timestamp>" in w for w in plan.warnings)
    assert any("event 3 has timestamp 'abc'" in w for w in plan.warnings)
    with pytest.raises(PlanParseError, match="total_duration"):
        parse(text)
    zero = parse("s<|/think|>" + gen("a", "0") + gen("b", "5") + "<|im_end|>", total_duration=10)
    assert [e.duration for e in zero.events] == [5.0, 5.0]


def test_malformed_blocks_and_stray_text_are_repaired_with_warnings():
    text = (
        "s<|/think|>noise"
        + gen("a", "4", sem="<t5><t5_00000></t5>")
        + gen("b", "4", sem="", res="")
        + gen("   ", "4")
        + "<|im_end|> trailing"
    )
    plan = parse(text, num_semantic=S, num_residual=R, total_duration=8)
    assert [e.caption for e in plan.events] == ["a", "b"]
    joined = "\n".join(plan.warnings)
    assert "ignored 'noise' between events" in joined
    assert "semantic block has 1 placeholders" in joined
    assert "event 2 has no semantic block" in joined and "event 2 has no residual block" in joined
    assert "event 3 has an empty caption; dropped it" in joined
    assert "ignored text after <|im_end|>" in joined


def test_missing_think_close_is_reported():
    plan = parse("reasoning " + gen("a", "4") + "<|im_end|>")
    assert plan.reasoning == "reasoning" and plan.events[0].caption == "a"
    assert any("not closed by <|/think|>" in w for w in plan.warnings)


def test_parse_ids_needs_the_tokenizer(tok):
    with pytest.raises(TypeError):
        parse([1, 2, 3])
    with pytest.raises(InputError):
        parse("s<|/think|>" + gen("a", "4") + "<|im_end|>", total_duration=0.2)


# -- durations ----------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    durations=st.lists(st.floats(min_value=0.01, max_value=500.0), min_size=1, max_size=12),
    total=st.floats(min_value=0.5, max_value=600.0),
)
def test_fit_durations_sums_to_total(durations, total):
    fitted, dropped = fit_durations(durations, total)
    assert dropped == max(0, len(durations) - int(math.floor(total / MIN_EVENT_SECONDS + 1e-9)))
    assert len(fitted) == len(durations) - dropped
    assert math.fsum(fitted) == pytest.approx(total, abs=1e-6)
    assert all(d >= MIN_EVENT_SECONDS - 1e-9 for d in fitted)


def test_fit_durations_examples():
    assert fit_durations([1, 1, 1], 2.0) == ([0.7, 0.7, 0.6], 0)
    assert fit_durations([100, 0.1, 0.1], 3.0) == ([2.0, 0.5, 0.5], 0)
    assert fit_durations([2.5, 2.5], 5.0) == ([2.5, 2.5], 0)
    assert fit_durations([1] * 7, 3.2) == ([0.5, 0.5, 0.5, 0.5, 0.5, 0.7], 1)


def test_event_markers_inside_text_are_defused_so_the_plan_reserialises():
    reasoning = (
        "As in Event 5: a storm. "
        "Event 1: Timestamp: 0.0s - 2.0s. Story detail: thunder, see Event 9: later. Sound effect: thunder "
        "Event 2: Timestamp: 2.0s - 5.0s. Story detail: rain. Sound effect: rain"
    )
    text = reasoning + "<|/think|>" + gen("thunder Event 2: loud", "2") + gen("rain", "3") + "<|im_end|>"
    plan = parse(text, num_semantic=S, num_residual=R)
    assert plan.reasoning == "As in Event 5 - a storm."
    assert [e.story_detail for e in plan.events] == ["thunder, see Event 9 - later.", "rain."]
    assert plan.events[0].caption == "thunder Event 2 - loud"
    assert sum("'Event N:'" in w for w in plan.warnings) == 3
    again = parse(serialise(plan.reasoning, plan.events, S, R), num_semantic=S, num_residual=R)
    assert again == ParsedPlan(plan.reasoning, plan.events, [])
