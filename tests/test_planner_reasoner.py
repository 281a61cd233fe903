"""The reasoner on tiny-random: fast vs reference decoding, teacher forcing, determinism, LoRA, building."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LogitsProcessor

from audiostory_cli.config import full_dims, tiny_dims
from audiostory_cli.errors import InputError, ModelError, UsageError
from audiostory_cli.planner.api import build_tiny_planner, demo_sampling
from audiostory_cli.planner.constraints import DecodeLimits
from audiostory_cli.planner.decoding import Sampler, fast_generate, reference_generate
from audiostory_cli.planner.layout import PlannedEvent
from audiostory_cli.planner.reasoner import (
    Reasoner,
    SamplingOptions,
    apply_lora,
    build_llm,
    reset_rotary_buffers,
)
from audiostory_cli.planner.script import demo_plan, scripted_plan
from audiostory_cli.planner.tokens import build_tiny_tokenizer
from audiostory_cli.story.plan import Event, Story

DIMS = tiny_dims()
S, R = DIMS.bridge.num_semantic_tokens, DIMS.bridge.num_residual_tokens
SMALL = SamplingOptions(max_new_tokens=220, max_reasoning_tokens=16, max_caption_tokens=6)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up costs more than the maths
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def planner():
    return build_tiny_planner(seed=0)


@pytest.fixture(scope="module")
def reasoner(planner):
    return planner.reasoner


class StructureBias(LogitsProcessor):
    """Deterministic nudges so a random model writes several short events (the grammar still decides)."""

    def __init__(self, reasoner: Reasoner) -> None:
        self.ids = reasoner.ids

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.ids.gen_open] += 5.0
        scores[:, self.ids.timestamp_open] += 0.4
        scores[:, self.ids.timestamp_close] += 0.4
        scores[:, self.ids.think_close] += 0.2
        scores[:, self.ids.im_end] -= 5.0
        return scores


def _generate(reasoner, method, sampler, limits, processors):
    prompt = reasoner.prompt_ids("A storm, a dog, a door. The total duration is 20.0 seconds.")
    if method == "fast":
        return prompt, fast_generate(
            reasoner.decoder, reasoner.lm_head, prompt, reasoner.classes, limits, sampler, processors
        )
    return prompt, reference_generate(reasoner.llm, prompt, reasoner.classes, limits, sampler, processors)


@pytest.mark.parametrize("penalty", [1.0, 1.05])
def test_fast_and_reference_decoding_agree(reasoner, penalty):
    limits = DecodeLimits(max_new_tokens=200, max_reasoning_tokens=12, max_caption_tokens=5)
    sampler = Sampler(repetition_penalty=penalty)
    _, fast = _generate(reasoner, "fast", sampler, limits, [StructureBias(reasoner)])
    _, ref = _generate(reasoner, "reference", sampler, limits, [StructureBias(reasoner)])
    assert fast.ids == ref.ids
    assert fast.ids.count(reasoner.ids.gen_open) >= 3
    assert sorted(fast.states) == sorted(ref.states)
    assert len(fast.states) == fast.ids.count(reasoner.ids.gen_open) * (S + R)
    for position, state in fast.states.items():
        torch.testing.assert_close(state, ref.states[position], atol=1e-5, rtol=1e-5)


def test_plan_outputs_agree_between_methods(reasoner):
    fast = reasoner.plan("rain and thunder", 12.0, sampling=SMALL, processors=[StructureBias(reasoner)])
    ref = reasoner.plan(
        "rain and thunder", 12.0, sampling=SMALL, processors=[StructureBias(reasoner)], method="reference"
    )
    assert fast.text == ref.text and fast.events == ref.events and fast.warnings == ref.warnings
    torch.testing.assert_close(fast.semantic_states, ref.semantic_states, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.residual_states, ref.residual_states, atol=1e-5, rtol=1e-5)


def test_teacher_forced_states_equal_generation_states(reasoner):
    limits = DecodeLimits(max_new_tokens=200, max_reasoning_tokens=12, max_caption_tokens=5)
    prompt, gen = _generate(reasoner, "fast", Sampler(temperature=1.0, seed=5), limits, [StructureBias(reasoner)])
    semantic, residual = reasoner.states_for_ids([*prompt, *gen.ids], start=len(prompt))
    blocks = [i for i, t in enumerate(gen.ids) if t == reasoner.ids.gen_open]
    assert semantic.shape == (len(blocks), S, DIMS.reasoner.hidden_size)
    assert residual.shape == (len(blocks), R, DIMS.reasoner.hidden_size)
    expected_sem = torch.stack(
        [gen.states[p] for p in sorted(gen.states) if reasoner.ids.is_t5_placeholder(gen.ids[p])]
    ).reshape(semantic.shape)
    expected_res = torch.stack(
        [gen.states[p] for p in sorted(gen.states) if reasoner.ids.is_aud_placeholder(gen.ids[p])]
    ).reshape(residual.shape)
    torch.testing.assert_close(semantic, expected_sem, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(residual, expected_res, atol=1e-5, rtol=1e-5)


def test_bridge_of_the_same_plan_text_equals_generation(reasoner):
    prompt = "A dog barks. Thunder rolls, then rain falls on a roof."
    reasoning, events = demo_plan(prompt, 20.0)
    scripted = scripted_plan(reasoner, reasoning, events)
    sampling = SamplingOptions(max_new_tokens=scripted.num_tokens + 20)
    out = reasoner.plan(prompt, 20.0, sampling=sampling, processors=[scripted.processor()])
    assert out.states_source == "generation" and out.warnings == []
    assert out.reasoning == reasoning and out.events == events
    assert [e.caption for e in out.events] == ["A dog barks", "Thunder rolls", "rain falls on a roof"]
    semantic, residual = reasoner.bridge_states(out.instruction, out.reasoning, out.events)
    torch.testing.assert_close(semantic, out.semantic_states, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(residual, out.residual_states, atol=1e-5, rtol=1e-5)
    edited = [PlannedEvent("a cat meows", events[0].story_detail, events[0].duration), *events[1:]]
    semantic_edit, _ = reasoner.bridge_states(out.instruction, out.reasoning, edited)
    assert not torch.allclose(semantic_edit[0], semantic[0])


def test_repaired_plans_keep_the_states_of_what_the_model_wrote(reasoner):
    out = reasoner.plan("a dog barks in the rain", 20.0, sampling=SMALL)
    assert out.warnings  # the random model's durations were rescaled: the re-serialised text differs
    assert out.states_source == "generation" and len(out.event_blocks) == len(out.events)
    semantic, residual = reasoner.generated_states(out.instruction, out.token_ids, out.event_blocks)
    torch.testing.assert_close(semantic, out.semantic_states, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(residual, out.residual_states, atol=1e-5, rtol=1e-5)
    reserialised, _ = reasoner.bridge_states(out.instruction, out.reasoning, out.events)
    assert not torch.allclose(reserialised, out.semantic_states, atol=1e-4)  # text the model never wrote


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_model_plans_always_fit_the_total(reasoner, seed):
    total = [7.3, 30.0, 61.5][seed]
    sampling = SamplingOptions(
        temperature=1.2, top_p=0.9, seed=seed, max_new_tokens=200, max_reasoning_tokens=10, max_caption_tokens=4
    )
    out = reasoner.plan("a chase through a rainstorm", total, sampling=sampling, processors=[StructureBias(reasoner)])
    assert len(out.events) >= 1
    assert math.fsum(e.duration for e in out.events) == pytest.approx(total, abs=1e-6)
    assert out.semantic_states.shape == (len(out.events), S, DIMS.reasoner.hidden_size)
    story_events, start = [], 0.0
    for i, e in enumerate(out.events, start=1):
        story_events.append(Event(index=i, start=start, duration=e.duration, caption=e.caption))
        start += e.duration
    Story(prompt="a chase", total_duration=total, events=story_events).validate()


def test_same_seed_same_plan(reasoner):
    sampling = SamplingOptions(temperature=1.0, top_p=0.9, seed=11, **_small_budget())
    first = reasoner.plan("footsteps and a door", 15.0, sampling=sampling)
    second = reasoner.plan("footsteps and a door", 15.0, sampling=sampling)
    assert first.token_ids == second.token_ids and first.events == second.events
    assert torch.equal(first.semantic_states, second.semantic_states)
    others = {
        tuple(
            reasoner.plan(
                "footsteps and a door",
                15.0,
                sampling=SamplingOptions(temperature=1.0, top_p=0.9, seed=s, **_small_budget()),
            ).token_ids
        )
        for s in (12, 13)
    }
    assert any(other != tuple(first.token_ids) for other in others)
    ref_a = reasoner.plan("footsteps", 15.0, sampling=sampling, method="reference")
    ref_b = reasoner.plan("footsteps", 15.0, sampling=sampling, method="reference")
    assert ref_a.token_ids == ref_b.token_ids


def _small_budget():
    return dict(max_new_tokens=160, max_reasoning_tokens=12, max_caption_tokens=5)


def test_progress_reports_plan_and_bridge(reasoner):
    calls = []
    out = reasoner.plan("rain", 10.0, sampling=SMALL, progress=lambda *a: calls.append(a))
    plan_calls = [c for c in calls if c[0] == "plan"]
    assert plan_calls[0] == ("plan", 0, SMALL.max_new_tokens) and plan_calls[-1] == ("plan", 220, 220)
    dones = [c[1] for c in plan_calls]
    assert dones == sorted(dones) and len(plan_calls) > 3
    assert out.states_source == "generation" and ("bridge", 1, 1) not in calls  # no second pass


def test_validation_errors(reasoner):
    with pytest.raises(UsageError, match="needs at least"):
        reasoner.plan("rain", 10.0, sampling=SamplingOptions(max_new_tokens=10))
    with pytest.raises(InputError):
        reasoner.plan("rain", 0.2)
    with pytest.raises(InputError):
        reasoner.plan("", 10.0)
    with pytest.raises(InputError, match="special token"):
        reasoner.plan("rain <|gen|>", 10.0)
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(repetition_penalty=0.0), dict(seed=-1)):
        with pytest.raises(UsageError):
            SamplingOptions(**bad)
    with pytest.raises(UsageError):
        reasoner.plan("rain", 10.0, sampling=SMALL, method="beam")


def test_final_hidden_state_is_post_norm(reasoner):
    ids = torch.tensor([reasoner.prompt_ids("rain")])
    with torch.no_grad():
        out = reasoner.llm(ids, output_hidden_states=True)
        last = reasoner.decoder(input_ids=ids).last_hidden_state
        pre_norm = out.hidden_states[-2]
    torch.testing.assert_close(out.hidden_states[-1], last)
    assert not torch.allclose(pre_norm, last)


def test_build_llm_shapes_and_meta_loading():
    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    llm = build_llm(DIMS.reasoner, len(tok), torch.float32)
    assert llm.config._attn_implementation == "sdpa"
    assert llm.lm_head.weight.data_ptr() == llm.model.embed_tokens.weight.data_ptr()
    assert llm.model.embed_tokens.weight.shape == (len(tok), DIMS.reasoner.hidden_size)
    empty = build_llm(DIMS.reasoner, len(tok), torch.float32, device="meta")
    empty = empty.to_empty(device="cpu")
    empty.load_state_dict(llm.state_dict(), strict=True)
    reset_rotary_buffers(empty)
    empty.tie_weights()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(empty(ids).logits, llm(ids).logits)
    with pytest.raises(ModelError, match="vocab_size"):
        build_llm(full_dims().reasoner, len(tok), torch.float32, device="meta")
    full = build_llm(full_dims().reasoner, 152277, torch.bfloat16, device="meta")
    assert full.model.embed_tokens.weight.shape == (152277, 2048)
    assert len(full.model.layers) == 36 and full.config.num_key_value_heads == 2
    assert full.config.rope_parameters["rope_theta"] == 1_000_000.0
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(3.09e9, rel=0.01)


def test_lora_wrapping_trains_the_right_parts_and_still_plans():
    tok = build_tiny_tokenizer()
    torch.manual_seed(0)
    plain = build_llm(DIMS.reasoner, len(tok), torch.float32)
    torch.manual_seed(0)
    wrapped = apply_lora(build_llm(DIMS.reasoner, len(tok), torch.float32), DIMS.reasoner)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("q_proj.lora_A" in n for n in trainable) and any("down_proj.lora_B" in n for n in trainable)
    norms = [n for n in trainable if "modules_to_save" in n]
    assert len(norms) == 2 * DIMS.reasoner.num_layers + 1
    assert any("embed_tokens" in n for n in trainable)
    assert not any("q_proj.base_layer" in n for n in trainable)
    sampling = SamplingOptions(max_new_tokens=120, max_reasoning_tokens=8, max_caption_tokens=4)
    a = Reasoner(plain, tok, DIMS.bridge).plan("rain", 10.0, sampling=sampling)
    b = Reasoner(wrapped, tok, DIMS.bridge).plan("rain", 10.0, sampling=sampling)
    assert a.token_ids == b.token_ids  # LoRA B starts at zero
    torch.testing.assert_close(a.semantic_states, b.semantic_states)
    c = Reasoner(wrapped, tok, DIMS.bridge).plan("rain", 10.0, sampling=sampling, method="reference")
    assert c.token_ids == a.token_ids


def test_reasoner_checks_dims():
    tok = build_tiny_tokenizer()
    llm = build_llm(DIMS.reasoner, len(tok), torch.float32)
    with pytest.raises(ModelError, match="hidden size"):
        Reasoner(llm, tok, full_dims().bridge)


def test_demo_sampling_makes_a_readable_plan(planner):
    prompt = "Rain starts; a car skids, then a door slams!"
    sampling, processor = demo_sampling(planner, prompt, 30.0)
    out = planner.plan(prompt, 30.0, sampling=sampling, processors=[processor])
    assert [e.caption for e in out.events] == ["Rain starts", "a car skids", "a door slams"]
    assert [e.duration for e in out.events] == [10.0, 10.0, 10.0]
    assert out.warnings == [] and out.states_source == "generation"
