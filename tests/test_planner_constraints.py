"""Hard-constrained decoding: blocks are always well formed, whatever the logits, weights or sampling."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor

from audiostory_cli.config import tiny_dims
from audiostory_cli.errors import UsageError
from audiostory_cli.planner.constraints import (
    DecodeLimits,
    GrammarViolation,
    MaskBuilder,
    PlanGrammar,
    build_token_classes,
    min_plan_tokens,
)
from audiostory_cli.planner.decoding import Sampler, choose_token, fast_generate, reference_generate
from audiostory_cli.planner.layout import parse
from audiostory_cli.planner.reasoner import Reasoner, build_llm
from audiostory_cli.planner.tokens import build_tiny_tokenizer, encode_text, resolve_special_token_ids

DIMS = tiny_dims()
S, R = DIMS.bridge.num_semantic_tokens, DIMS.bridge.num_residual_tokens


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up costs more than the maths
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def classes(tok):
    ids = resolve_special_token_ids(tok)
    return build_token_classes(tok, ids, S, R, len(tok))


def layout_regex(num_semantic: int, num_residual: int) -> re.Pattern[str]:
    """An independent description of a valid output, over a symbol string (see ``symbols``)."""
    sem = "<t5>" + "".join(f"<t5_{k:05d}>" for k in range(num_semantic)) + "</t5>"
    res = "<aud>" + "".join(f"<aud_{k:05d}>" for k in range(num_residual)) + "</aud>"
    caption = r"[xw0-9.]*[x0-9.][xw0-9.]*"
    timestamp = r"<timestamp>[0-9]+(\.[0-9]+)?</timestamp>"
    event = rf"<\|gen\|>{caption}{timestamp}{re.escape(sem + res)}<\|/gen\|>"
    return re.compile(rf"^[xw0-9.]*<\|/think\|>w*(?:{event}w*)+<\|im_end\|>$")


def symbols(tok, classes, ids: list[int]) -> str:
    """Text tokens → ``x`` (content), ``w`` (whitespace) or the digit/dot; special tokens → their own text."""
    out = []
    for token in ids:
        if token < classes.ids.num_text_tokens:
            piece = tok.decode([token])
            if token in classes.digits or token == classes.dot:
                out.append(piece)
            else:
                out.append("w" if not piece.strip() else "x")
        else:
            out.append(tok.convert_ids_to_tokens(token))
    return "".join(out)


def assert_well_formed(tok, classes, ids: list[int], limits: DecodeLimits) -> None:
    text = symbols(tok, classes, ids)
    assert layout_regex(classes.num_semantic, classes.num_residual).match(text), text[:400]
    plan = parse(ids, tokenizer=tok, num_semantic=S, num_residual=R, total_duration=30.0)
    assert len(plan.events) == min(ids.count(classes.ids.gen_open), 60)
    structural = ("dropped it", "block", "not closed", "ignored", "did not end")
    assert not [w for w in plan.warnings if any(s in w for s in structural)], plan.warnings
    assert len(ids) <= limits.max_new_tokens
    sp = classes.ids
    for k_id in range(sp.t5_first + S, sp.t5_first + 100):
        assert k_id not in ids
    for k_id in range(sp.aud_first + R, sp.aud_first + 501):
        assert k_id not in ids
    assert sp.video_padding not in ids and sp.think_open not in ids and sp.im_start not in ids


class AdversarialBias(LogitsProcessor):
    """Pushes every special token (placeholders, closers, out-of-range placeholders) far above text."""

    def __init__(self, seed: int, first_special: int, strength: float) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.first_special = first_special
        self.strength = strength

    def __call__(self, input_ids, scores):
        noise = torch.rand(scores.shape, generator=self.generator) * self.strength
        noise[:, : self.first_special] *= 0.1
        return scores + noise


# -- the grammar alone --------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    temperature=st.sampled_from([0.0, 0.3, 1.0, 5.0]),
    top_p=st.sampled_from([1.0, 0.9, 0.3]),
    max_new=st.integers(min_plan_tokens(S, R), 260),
    max_caption=st.integers(1, 10),
    max_reasoning=st.integers(1, 30),
    max_events=st.one_of(st.none(), st.integers(1, 4)),
    special_boost=st.floats(0.0, 50.0),
)
def test_grammar_with_random_logits_always_yields_a_valid_plan(
    tok, classes, seed, temperature, top_p, max_new, max_caption, max_reasoning, max_events, special_boost
):
    limits = DecodeLimits(
        max_new_tokens=max_new,
        max_reasoning_tokens=max_reasoning,
        max_caption_tokens=max_caption,
        max_events=max_events,
    )
    grammar = PlanGrammar(classes, limits)
    masks = MaskBuilder(classes, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    sampler = Sampler(temperature=temperature, top_p=top_p, seed=seed)
    ids: list[int] = []
    while not grammar.done:
        scores = torch.randn(classes.logits_size, generator=generator) * 3
        scores[classes.ids.num_text_tokens :] += special_boost  # try hard to emit stray placeholders
        token = choose_token(masks.apply(scores, grammar.allowed()), sampler, generator)
        grammar.advance(token)
        ids.append(token)
    assert_well_formed(tok, classes, ids, limits)
    if max_events is not None:
        assert ids.count(classes.ids.gen_open) <= max_events


def test_grammar_rejects_placeholders_outside_blocks(classes):
    grammar = PlanGrammar(classes, DecodeLimits(max_new_tokens=200))
    sp = classes.ids
    for bad in (sp.t5_open, sp.t5(0), sp.t5_close, sp.aud_open, sp.aud(0), sp.gen_close, sp.im_end, sp.endoftext):
        assert not grammar.is_allowed(bad)
    with pytest.raises(GrammarViolation):
        grammar.advance(sp.t5(0))
    for token in [5, 6, sp.think_close, sp.gen_open, 40, sp.timestamp_open, *encode_digits(classes, "12.5")]:
        grammar.advance(token)
    assert grammar.allowed().ids == (sp.timestamp_close,) and grammar.allowed().classes == ("digits",)
    grammar.advance(sp.timestamp_close)
    forced = []
    while (token := grammar.forced()) is not None:
        forced.append(token)
        grammar.advance(token)
    assert forced == [*sp.semantic_block(S), *sp.residual_block(R), sp.gen_close]
    assert sp.im_end in grammar.allowed().ids  # one event done: the model may stop


def encode_digits(classes, text: str) -> list[int]:
    digits = sorted(classes.digits)
    return [classes.dot if ch == "." else digits[int(ch)] for ch in text]


def test_budget_forces_a_complete_plan(classes):
    limits = DecodeLimits(max_new_tokens=min_plan_tokens(S, R))
    grammar = PlanGrammar(classes, limits)
    sp = classes.ids
    assert grammar.forced() == sp.think_close  # no room for any reasoning text
    with pytest.raises(UsageError, match="needs at least"):
        PlanGrammar(classes, DecodeLimits(max_new_tokens=min_plan_tokens(S, R) - 1))
    with pytest.raises(UsageError):
        DecodeLimits(max_timestamp_tokens=2).check(S, R)


# -- with a model: random weights, seeds and sampling -------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    weight_seed=st.integers(0, 10_000),
    sample_seed=st.integers(0, 10_000),
    temperature=st.sampled_from([0.0, 0.7, 1.5]),
    top_p=st.sampled_from([1.0, 0.8]),
    strength=st.floats(0.0, 40.0),
)
def test_decoding_random_models_never_emits_a_malformed_block(
    tok, classes, weight_seed, sample_seed, temperature, top_p, strength
):
    torch.manual_seed(weight_seed)
    llm = build_llm(DIMS.reasoner, len(tok), torch.float32)
    reasoner = Reasoner(llm, tok, DIMS.bridge)
    limits = DecodeLimits(max_new_tokens=150, max_reasoning_tokens=12, max_caption_tokens=6)
    bias = AdversarialBias(sample_seed, classes.ids.num_text_tokens, strength)
    prompt = reasoner.prompt_ids("A dog barks in the rain. The total duration is 10.0 seconds.")
    sampler = Sampler(temperature=temperature, top_p=top_p, seed=sample_seed)
    out = fast_generate(reasoner.decoder, reasoner.lm_head, prompt, classes, limits, sampler, [bias])
    assert_well_formed(tok, classes, out.ids, limits)
    placeholders = [
        i for i, t in enumerate(out.ids) if classes.ids.is_t5_placeholder(t) or classes.ids.is_aud_placeholder(t)
    ]
    assert sorted(out.states) == placeholders


@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (1.0, 0.5), (3.0, 1.0)])
def test_generate_with_the_logits_processor_is_well_formed(tok, classes, temperature, top_p):
    torch.manual_seed(7)
    llm = build_llm(DIMS.reasoner, len(tok), torch.float32)
    limits = DecodeLimits(max_new_tokens=120, max_reasoning_tokens=10, max_caption_tokens=5)
    prompt = encode_text(tok, "<|im_start|>user\nrain<|im_end|>\n<|im_start|>assistant\n<|think|>")
    bias = AdversarialBias(3, classes.ids.num_text_tokens, 30.0)
    out = reference_generate(llm, prompt, classes, limits, Sampler(temperature, top_p, seed=1), [bias])
    assert_well_formed(tok, classes, out.ids, limits)


def test_the_layout_checker_itself_rejects_malformed_outputs(tok, classes):
    sp = classes.ids
    limits = DecodeLimits(max_new_tokens=200)
    caption = encode_text(tok, "dog")
    good = [
        5,
        sp.think_close,
        sp.gen_open,
        *caption,
        sp.timestamp_open,
        *encode_digits(classes, "2.5"),
        sp.timestamp_close,
        *sp.event_tail(S, R),
        sp.im_end,
    ]
    assert_well_formed(tok, classes, good, limits)
    tail_start = good.index(sp.t5_open)
    broken = [
        good[: tail_start + 2] + good[tail_start + 3 :],  # a missing placeholder
        good[:tail_start] + [sp.t5(S)] + good[tail_start:],  # an out-of-range placeholder before the block
        good[:-1],  # no <|im_end|>
        [t for t in good if t != sp.timestamp_open and t != sp.timestamp_close],  # no timestamp
    ]
    for ids in broken:
        with pytest.raises(AssertionError):
            assert_well_formed(tok, classes, ids, limits)


def test_choose_token_refuses_when_nothing_is_possible():
    from audiostory_cli.errors import ModelError

    with pytest.raises(ModelError, match="finite logit"):
        choose_token(torch.full((5,), float("-inf")), Sampler(), None)
    with pytest.raises(ModelError, match="finite logit"):
        choose_token(torch.tensor([0.0, float("nan")]), Sampler(temperature=1.0), torch.Generator())
    generator = torch.Generator().manual_seed(0)
    scores = torch.tensor([0.0, 1.0, float("-inf"), 0.5])
    picks = {choose_token(scores, Sampler(temperature=1.0, top_p=0.5), generator) for _ in range(50)}
    assert picks == {1}  # top-p 0.5 keeps only the most likely token here; -inf is never drawn
    assert choose_token(scores, Sampler(), None) == 1
