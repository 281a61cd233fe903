"""The bridge module (projectors + per-event fusion) and the planner API that feeds it."""

from __future__ import annotations

import pytest
import torch

from audiostory_cli.config import full_dims, tiny_dims
from audiostory_cli.planner.api import build_tiny_planner, demo_sampling
from audiostory_cli.planner.bridge import Bridge
from audiostory_cli.story.plan import Event, Story

DIMS = tiny_dims().bridge


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_state_dict_keys_match_the_official_checkpoint_names():
    with torch.device("meta"):
        bridge = Bridge(full_dims().bridge)
    shapes = {k: tuple(v.shape) for k, v in bridge.state_dict().items()}
    expected = {
        "projector.0.weight": (1024, 2048),
        "projector.0.bias": (1024,),
        "projector.2.weight": (1024, 1024),
        "projector.2.bias": (1024,),
        "audio_projector.0.weight": (1024, 2048),
        "audio_projector.0.bias": (1024,),
        "audio_projector.2.weight": (1024, 1024),
        "audio_projector.2.bias": (1024,),
        "multihead_attention.in_proj_weight": (3072, 1024),
        "multihead_attention.in_proj_bias": (3072,),
        "multihead_attention.out_proj.weight": (1024, 1024),
        "multihead_attention.out_proj.bias": (1024,),
    }
    assert shapes == expected
    assert bridge.t5_feature_scale == 10.0
    assert isinstance(bridge.projector[1], torch.nn.GELU)
    assert bridge.multihead_attention.batch_first is False and bridge.multihead_attention.num_heads == 8


def test_fusion_formula_per_event():
    torch.manual_seed(0)
    bridge = Bridge(DIMS).eval()
    semantic = torch.randn(3, DIMS.num_semantic_tokens, DIMS.llm_dim)
    residual = torch.randn(3, DIMS.num_residual_tokens, DIMS.llm_dim)
    with torch.no_grad():
        fused = bridge(semantic, residual)
        assert fused.shape == (3, DIMS.num_semantic_tokens, DIMS.out_dim)
        for i in range(3):  # each event alone, as (seq, batch=1, dim), like the official permute
            s = bridge.projector(semantic[i])[:, None]
            r = bridge.audio_projector(residual[i])[:, None]
            attended = bridge.multihead_attention(s, r, r)[0]
            expected = ((s + attended) / DIMS.t5_feature_scale)[:, 0]
            torch.testing.assert_close(fused[i], expected, atol=1e-6, rtol=1e-5)
        changed = residual.clone()
        changed[1] += 1.0
        other = bridge(semantic, changed)
    torch.testing.assert_close(other[0], fused[0])
    torch.testing.assert_close(other[2], fused[2])
    assert not torch.allclose(other[1], fused[1])


def test_bridge_checks_its_inputs():
    bridge = Bridge(DIMS)
    with pytest.raises(ValueError, match="events, tokens, dim"):
        bridge(torch.zeros(8, DIMS.llm_dim), torch.zeros(2, DIMS.llm_dim))
    with pytest.raises(ValueError, match="events"):
        bridge(torch.zeros(2, 8, DIMS.llm_dim), torch.zeros(3, 2, DIMS.llm_dim))
    with pytest.raises(ValueError, match="divisible"):
        Bridge(type(DIMS)(out_dim=30, fusion_heads=4))


def test_planner_plan_then_bridge():
    planner = build_tiny_planner(seed=0)
    prompt = "Rain starts. A car skids, then a door slams."
    sampling, processor = demo_sampling(planner, prompt, 24.0)
    calls = []
    out = planner.plan(prompt, 24.0, sampling=sampling, processors=[processor])
    tokens = planner.fuse(out)
    assert tokens.shape == (3, DIMS.num_semantic_tokens, DIMS.out_dim)
    again = planner.bridge_tokens(out.instruction, out.reasoning, out.events, progress=lambda *a: calls.append(a))
    torch.testing.assert_close(again, tokens, atol=1e-5, rtol=1e-5)
    assert calls == [("bridge", 0, 1), ("bridge", 1, 1)]
    starts = [0.0, 8.0, 16.0]
    story = Story(
        prompt=prompt,
        total_duration=24.0,
        instruction=out.instruction,
        reasoning=out.reasoning,
        events=[
            Event(index=i + 1, start=starts[i], duration=e.duration, caption=e.caption, story_detail=e.story_detail)
            for i, e in enumerate(out.events)
        ],
    )
    story.validate()
    torch.testing.assert_close(planner.bridge_story(story), tokens, atol=1e-5, rtol=1e-5)
    story.events[1].caption = "a truck horn blares"
    edited = planner.bridge_story(story)
    assert not torch.allclose(edited[1], tokens[1])
    story.instruction = ""
    assert planner.bridge_story(story).shape == tokens.shape  # instruction rebuilt from prompt and total


def test_tiny_planner_is_deterministic():
    a, b = build_tiny_planner(seed=3), build_tiny_planner(seed=3)
    for (name, x), (_, y) in zip(a.bridge.state_dict().items(), b.bridge.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert torch.equal(a.reasoner.llm.model.embed_tokens.weight, b.reasoner.llm.model.embed_tokens.weight)
    c = build_tiny_planner(seed=4)
    assert not torch.equal(a.reasoner.llm.model.embed_tokens.weight, c.reasoner.llm.model.embed_tokens.weight)
