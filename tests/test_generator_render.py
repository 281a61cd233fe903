"""render_latents: batched == one at a time, per-event seeds, exact lengths, prefixes, long events."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from audiostory_cli.config import tiny_dims
from audiostory_cli.errors import ModelError, UsageError
from audiostory_cli.generator.dit import build_dit
from audiostory_cli.generator.geometry import LatentGeometry
from audiostory_cli.generator.render import (
    EventCondition,
    WindowSpec,
    default_overlap_frames,
    derive_seed,
    plan_windows,
    render_latents,
)
from audiostory_cli.generator.text_encoder import build_text_encoder, unconditional_tokens
from audiostory_cli.runtime import cpu_runtime

GEOMETRY = LatentGeometry()
STEPS = 6


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    dims = tiny_dims()
    dit = build_dit(dims.dit)
    uncond = unconditional_tokens(build_text_encoder(dims.text_encoder), dims.bridge.num_semantic_tokens)
    return dit, uncond


def _tokens(seed: int) -> torch.Tensor:
    return torch.randn(8, 32, generator=torch.Generator().manual_seed(seed))


def _render(models, events, **kwargs):
    dit, uncond = models
    kwargs.setdefault("steps", STEPS)
    kwargs.setdefault("guidance", 4.0)
    return render_latents(dit, events, uncond=uncond, runtime=cpu_runtime(), **kwargs)


def test_batched_render_equals_one_at_a_time(models):
    events = [EventCondition(_tokens(i), s, seed) for i, (s, seed) in enumerate([(1.0, 11), (0.6, 12), (1.3, 13)])]
    batched = _render(models, events)
    for event, out in zip(events, batched, strict=True):
        alone = _render(models, [event])[0]
        assert out.shape == (GEOMETRY.frames(event.seconds), 8)
        torch.testing.assert_close(out, alone, rtol=0, atol=1e-5)
    capped = _render(models, events, max_batch=2)
    for a, b in zip(batched, capped, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_same_seed_is_bit_identical_and_seeds_differ(models):
    events = [EventCondition(_tokens(0), 0.8, 5), EventCondition(_tokens(0), 0.8, 6)]
    first, second = _render(models, events), _render(models, events)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.allclose(first[0], first[1])


def test_no_cfg_needs_no_uncond_and_differs_from_cfg(models):
    dit, _ = models
    event = EventCondition(_tokens(3), 0.5, 1)
    plain = render_latents(dit, [event], steps=STEPS, guidance=1.0, uncond=None, runtime=cpu_runtime())[0]
    assert plain.shape == (GEOMETRY.frames(0.5), 8)
    assert not torch.allclose(plain, _render(models, [event])[0])


def test_prefix_is_kept_exactly_and_length_includes_it(models):
    prefix = torch.randn(5, 8, generator=torch.Generator().manual_seed(9))
    with_prefix = EventCondition(_tokens(1), 0.7, 3, prefix=prefix)
    out = _render(models, [with_prefix, EventCondition(_tokens(2), 1.1, 4)])
    assert out[0].shape == (5 + GEOMETRY.frames(0.7), 8)
    assert torch.equal(out[0][:5], prefix)
    alone = _render(models, [with_prefix])[0]
    torch.testing.assert_close(out[0], alone, rtol=0, atol=1e-5)


def test_plan_windows_covers_exactly_the_new_frames():
    assert plan_windows(30, 0, 40, 8) == [WindowSpec(0, 30)]
    assert plan_windows(64, 0, 40, 8) == [WindowSpec(0, 40), WindowSpec(8, 24)]
    specs = plan_windows(6460, 0, 645, default_overlap_frames(645))
    assert sum(s.new_frames for s in specs) == 6460 and all(s.frames <= 645 for s in specs)
    assert plan_windows(50, 10, 40, 8)[0] == WindowSpec(10, 30)
    with pytest.raises(ValueError):
        plan_windows(10, 40, 40, 8)
    assert derive_seed(7, 0) == 7 and derive_seed(7, 1) != derive_seed(7, 2)


def test_long_event_is_first_window_plus_outpainted_continuation(models):
    dit, uncond = models
    small = build_dit(dataclasses.replace(tiny_dims().dit, audio_seq_len=40))
    small.load_state_dict(dit.state_dict())
    window, overlap = 40, 8
    seconds = GEOMETRY.seconds(64) - 0.01  # 1.6 windows
    new_frames = GEOMETRY.frames(seconds)
    calls = []

    def render(events):
        return render_latents(
            small,
            events,
            steps=STEPS,
            guidance=4.0,
            uncond=uncond,
            runtime=cpu_runtime(),
            overlap_frames=overlap,
            progress=lambda *a: calls.append(a),
        )

    long_event = EventCondition(_tokens(4), seconds, 21)
    short_event = EventCondition(_tokens(5), 0.5, 22)
    long_out, short_out = render([long_event, short_event])
    assert long_out.shape == (new_frames, 8) and new_frames == 64
    assert calls[-1] == ("dit", 2 * STEPS, 2 * STEPS)  # round 0: both events in one batch; round 1: the tail
    # window 0 is exactly a standalone window-sized render with the event's seed ...
    first = render([EventCondition(_tokens(4), GEOMETRY.seconds(window), 21)])[0]
    torch.testing.assert_close(long_out[:window], first, rtol=0, atol=1e-5)
    # ... and the rest is a continuation that keeps window 0's last `overlap` frames as its fixed prefix
    rest = render(
        [
            EventCondition(
                _tokens(4),
                seconds - GEOMETRY.seconds(window),
                derive_seed(21, 1),
                prefix=long_out[window - overlap : window],
            )
        ]
    )[0]
    assert torch.equal(rest[:overlap], long_out[window - overlap : window])
    torch.testing.assert_close(rest[overlap:], long_out[window:], rtol=0, atol=1e-5)
    # the short event rendered alongside is unaffected by the chain
    torch.testing.assert_close(short_out, render([short_event])[0], rtol=0, atol=1e-5)


def test_validation_errors_say_what_is_wrong(models):
    dit, uncond = models
    good = EventCondition(_tokens(0), 0.5, 1)
    with pytest.raises(ModelError, match="bridge tokens"):
        _render(models, [EventCondition(torch.zeros(8, 16), 0.5, 1)])
    with pytest.raises(ModelError, match="bridge tokens"):
        _render(models, [good, EventCondition(torch.zeros(4, 32), 0.5, 1)])
    with pytest.raises(UsageError, match="duration"):
        _render(models, [EventCondition(_tokens(0), 0.0, 1)])
    with pytest.raises(UsageError, match="seed"):
        _render(models, [EventCondition(_tokens(0), 0.5, -1)])
    with pytest.raises(UsageError, match="steps"):
        _render(models, [good], steps=0)
    with pytest.raises(UsageError, match="prefix"):
        _render(models, [EventCondition(_tokens(0), 0.5, 1, prefix=torch.zeros(645, 8))])
    with pytest.raises(ValueError, match="unconditional"):
        render_latents(dit, [good], steps=2, guidance=3.0, uncond=None, runtime=cpu_runtime())
    assert _render(models, []) == []
