"""The fast path gives what the straightforward path gives (tiny-random, fp32 CPU).

Fast path: KV-cache decoding with forced placeholder blocks in one forward, one teacher-forced bridge pass, cached
T5("") tokens, every event × CFG in one DiT batch with duration-sized latents, chunked VAE decode.
Straightforward path (written out here): transformers ``generate``, the generation's own states, per-event fusion,
T5("") encoded each time, one DiT call per event, one unchunked VAE decode per event.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiostory_cli.app.pipeline import PlanOptions, plan_story, render_story
from audiostory_cli.generator.geometry import LatentGeometry
from audiostory_cli.generator.render import EventCondition, render_latents
from audiostory_cli.generator.text_encoder import T5_EOS_ID, T5_PAD_ID
from audiostory_cli.model import tiny_random_model
from audiostory_cli.planner.api import demo_sampling
from audiostory_cli.planner.decoding import DecodeEngine, fast_generate
from audiostory_cli.planner.prompt import build_instruction
from audiostory_cli.runtime import cpu_runtime
from audiostory_cli.story import StoryFolder

PROMPT = "rain on a tin roof, then thunder rolls, a dog barks"
TOTAL = 6.0
STEPS = 3
OPTIONS = PlanOptions(total_duration=TOTAL, seed=21, steps=STEPS, guidance=4.0, crossfade=0.5)


@pytest.fixture(scope="module")
def model():
    return tiny_random_model()


def _plan(model, method):
    planner = model.planner()
    sampling, script = demo_sampling(planner, PROMPT, TOTAL)
    return planner.plan(PROMPT, TOTAL, sampling=sampling, processors=[script], method=method)


def _uncond_uncached(model) -> torch.Tensor:
    """T5("") padded to S, encoded afresh (the official way), not through the cache."""
    num = model.dims.bridge.num_semantic_tokens
    ids = torch.full((1, num), T5_PAD_ID, dtype=torch.long)
    ids[0, 0] = T5_EOS_ID
    mask = torch.zeros_like(ids)
    mask[0, 0] = 1
    with torch.no_grad():
        return model.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0]


def test_fast_and_reference_plans_are_identical(model):
    fast, reference = _plan(model, "fast"), _plan(model, "reference")
    assert fast.text == reference.text
    assert fast.events == reference.events and len(fast.events) == 3
    assert fast.states_source == reference.states_source == "generation"
    torch.testing.assert_close(fast.semantic_states, reference.semantic_states, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.residual_states, reference.residual_states, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "engine",
    [DecodeEngine(static_cache=True), DecodeEngine(static_cache=True, compile_step=True, compile_backend="eager")],
    ids=["static-cache", "compiled-step"],
)
def test_static_cache_and_compiled_step_decode_the_same(model, engine):
    reasoner = model.planner().reasoner
    prompt_ids = reasoner.prompt_ids(build_instruction(PROMPT, TOTAL))

    def generate(chosen):
        sampling, script = demo_sampling(model.planner(), PROMPT, TOTAL)
        return fast_generate(
            reasoner.decoder,
            reasoner.lm_head,
            prompt_ids,
            reasoner.classes,
            sampling.limits(),
            sampling.sampler(),
            [script],
            engine=chosen,
        )

    default, other = generate(DecodeEngine()), generate(engine)
    assert other.ids == default.ids and sorted(other.states) == sorted(default.states)
    for position, state in default.states.items():
        torch.testing.assert_close(other.states[position], state, rtol=0, atol=1e-5)


def test_compiled_step_needs_a_static_cache():
    with pytest.raises(ValueError, match="static_cache"):
        DecodeEngine(compile_step=True)


def test_plan_story_uses_the_fast_plan(model):
    story = plan_story(PROMPT, OPTIONS, model)
    reference = _plan(model, "reference")
    assert story.reasoning == reference.reasoning
    assert [e.caption for e in story.events] == [e.caption for e in reference.events]
    assert [e.duration for e in story.events] == pytest.approx([e.duration for e in reference.events], abs=1e-6)


def test_batched_render_equals_each_event_alone(model):
    tokens = model.planner().fuse(_plan(model, "fast"))
    uncond = _uncond_uncached(model)
    events = [EventCondition(tokens[i], seconds, 100 + i) for i, seconds in enumerate([2.5, 1.2, 2.0])]
    batched = render_latents(model.dit, events, steps=STEPS, guidance=4.0, uncond=uncond, runtime=cpu_runtime())
    for event, latents in zip(events, batched, strict=True):
        alone = render_latents(model.dit, [event], steps=STEPS, guidance=4.0, uncond=uncond, runtime=cpu_runtime())
        torch.testing.assert_close(latents, alone[0], rtol=0, atol=1e-5)


def test_render_story_equals_a_straightforward_loop(model, tmp_path):
    story = plan_story(PROMPT, OPTIONS, model)
    folder = StoryFolder(tmp_path / "story")
    folder.prepare_new(force=False)
    folder.save(story)
    report = render_story(folder, model, cpu_runtime())
    story = folder.load()
    assert report.rendered == [1, 2, 3]

    reference = _plan(model, "reference")  # transformers generate; its own states, no bridge pass
    uncond = _uncond_uncached(model)
    geometry = LatentGeometry.from_vae(model.dims.vae)
    for number, event in enumerate(story.events):
        with torch.no_grad():
            tokens = model.bridge(
                reference.semantic_states[number : number + 1], reference.residual_states[number : number + 1]
            )[0]
        seconds = story.render_length(event)
        latents = render_latents(
            model.dit,
            [EventCondition(tokens, seconds, event.seed)],
            steps=STEPS,
            guidance=4.0,
            uncond=uncond,
            runtime=cpu_runtime(),
        )[0]
        with torch.no_grad():
            audio = model.vae.decode(latents.T[None]).sample[0, :, : geometry.samples(seconds)].numpy()
        written, rate = sf.read(folder.resolve(event.file), dtype="float32", always_2d=True)
        assert rate == model.sample_rate and written.shape == (audio.shape[1], 2)
        scale = max(float(np.abs(audio).max()), 1e-3)
        np.testing.assert_allclose(written.T, audio, rtol=0, atol=1e-4 * scale)
