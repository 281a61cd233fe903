"""Timeline placement: sample positions, equal-power crossfades that never shift the timeline, gaps, resampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiostory_cli.app.export import event_spans, total_frames
from audiostory_cli.audio.io import resample
from audiostory_cli.audio.timeline import (
    DECLICK_SECONDS,
    Piece,
    clip_piece,
    equal_power_fade,
    mix_pieces,
    on_timeline,
    resample_piece,
    shape_event,
)
from tests.story_factory import make_story

RATE = 44_100


def test_equal_power_fade_has_constant_power():
    for frames in (1, 7, 66_150):
        out, into = equal_power_fade(frames)
        assert out.shape == into.shape == (frames,)
        np.testing.assert_allclose(out.astype(np.float64) ** 2 + into.astype(np.float64) ** 2, 1.0, atol=1e-6)
        assert np.all(np.diff(out) <= 0) and np.all(np.diff(into) >= 0)


def test_spans_abut_and_carry_the_crossfade_tail():
    story = make_story([2.0, 1.0, 0.6, 3.0], gaps=[0, 0, 0, 0.5], crossfade=1.5, tail=0.25)
    spans = event_spans(story, RATE)
    assert [s.start for s in spans] == [0, 88_200, 132_300, 180_810]
    assert [s.end for s in spans] == [88_200, 132_300, 158_760, 313_110]
    # the 1.5 s default is shortened to the shorter neighbour (1.0 s, then 0.6 s); no fade before a gap or at the end
    assert [s.fade_out for s in spans] == [44_100, 26_460, 0, 0]
    assert [s.fade_in for s in spans] == [0, 44_100, 26_460, 0]
    assert [s.render_frames for s in spans] == [132_300, 70_560, 26_460, 132_300]
    assert total_frames(story, RATE) == round(story.total_duration * RATE)


def test_per_event_crossfade_override():
    story = make_story([2.0, 2.0, 2.0], crossfade=1.5, crossfades={1: 0.25, 2: 0.0})
    assert [s.fade_out for s in event_spans(story, RATE)] == [11_025, 0, 0]


def test_crossfade_lies_after_the_boundary_and_never_shifts_the_timeline():
    story = make_story([1.0, 1.0], crossfade=0.5)
    first, second = event_spans(story, RATE)
    ones_a = np.ones((2, first.render_frames), dtype=np.float32)
    ones_b = 2 * np.ones((2, second.render_frames), dtype=np.float32)
    a, b = shape_event(ones_a, first, RATE), shape_event(ones_b, second, RATE)
    mix = mix_pieces([a, b], total_frames(story, RATE))
    fade_out, fade_in = equal_power_fade(first.fade_out)
    boundary = first.end
    assert boundary == 44_100 == second.start
    # before the boundary only event 1 plays (after its 5 ms de-click), untouched
    np.testing.assert_allclose(mix[:, 1000:boundary], 1.0)
    # on [end, end + fade) event 1's tail fades out while event 2 fades in from its planned start
    np.testing.assert_allclose(mix[0, boundary : boundary + first.fade_out], fade_out + 2 * fade_in, rtol=1e-6)
    # then event 2 alone, de-clicked at the very end of the story
    declick = round(DECLICK_SECONDS * RATE)
    np.testing.assert_allclose(mix[:, boundary + first.fade_out : -declick], 2.0)
    assert mix[0, -1] < 0.01 and mix[0, 0] < 0.01


def test_gaps_are_digital_silence_and_length_is_exact():
    story = make_story([1.0, 1.0], gaps=[0.3, 0.7], tail=0.123457)
    frames = total_frames(story, RATE)
    spans = event_spans(story, RATE)
    pieces = [shape_event(np.ones((2, s.render_frames), dtype=np.float32), s, RATE) for s in spans]
    mix = mix_pieces(pieces, frames)
    assert mix.shape == (2, round(story.total_duration * RATE))
    assert not mix[:, : spans[0].start].any()
    assert not mix[:, spans[0].end : spans[1].start].any()
    assert not mix[:, spans[1].end :].any()


def test_shape_event_refuses_a_wrong_length():
    story = make_story([1.0, 1.0])
    span = event_spans(story, RATE)[0]
    with pytest.raises(ValueError, match="span needs"):
        shape_event(np.ones((2, span.render_frames - 1), dtype=np.float32), span, RATE)


@settings(max_examples=12, deadline=None)
@given(offset=st.integers(-300, 5000), length=st.integers(1, 3000), to_rate=st.sampled_from([48_000, 32_000, 96_000]))
def test_resampled_pieces_land_where_resampling_the_whole_track_puts_them(offset, length, to_rate):
    rng = np.random.default_rng(length)
    piece = Piece(offset, rng.uniform(-0.5, 0.5, size=(2, length)).astype(np.float32))
    frames = 9000
    whole = resample(on_timeline(clip_piece(piece, frames), frames), RATE, to_rate)
    out_frames = round(frames * to_rate / RATE)
    moved = on_timeline(clip_piece(resample_piece(clip_piece(piece, frames), RATE, to_rate), out_frames), out_frames)
    np.testing.assert_allclose(moved, whole[:, :out_frames], atol=2e-6)


def test_linear_join_is_the_official_equal_gain_crossfade():
    story = make_story([4.0, 4.0], crossfade=3.0)
    story.settings.crossfade_shape = "linear"
    first, second = event_spans(story, RATE)
    assert first.fade_shape == second.fade_shape == "linear" and first.fade_out == 3 * RATE
    a = shape_event(np.ones((2, first.render_frames), dtype=np.float32), first, RATE)
    b = shape_event(np.ones((2, second.render_frames), dtype=np.float32), second, RATE)
    mix = mix_pieces([a, b], total_frames(story, RATE))
    # equal gain: a constant signal stays constant through the join (an equal-power join would bulge to √2)
    np.testing.assert_allclose(mix[:, first.end : first.end + first.fade_out], 1.0, atol=1e-6)
    out = a.audio[0, first.end - first.start :]
    np.testing.assert_allclose(out, 1.0 - (np.arange(out.size) + 0.5) / out.size, atol=1e-6)
