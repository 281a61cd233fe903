"""Loudness and true-peak measurement, the look-ahead true-peak limiter and the mastering loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from audiostory_cli.audio import limiter as limiter_module
from audiostory_cli.audio.limiter import limiter_gain, lookahead_gain, release_gain
from audiostory_cli.audio.loudness import (
    integrated_loudness,
    loudness_range,
    oversample_factor,
    to_db,
    true_peak,
    true_peak_envelope,
)
from audiostory_cli.audio.master import master
from audiostory_cli.errors import AudioInputError
from tests.story_factory import synth_event

RATE = 48_000


def fft_true_peak_db(audio: np.ndarray, factor: int = 4) -> float:
    """An independent true-peak meter: FFT (periodic sinc) interpolation; give it audio that starts and ends
    near zero (``tapered``) or the wrap-around jump adds a peak of its own."""
    up = scipy.signal.resample(audio.astype(np.float64), audio.shape[-1] * factor, axis=-1)
    return to_db(float(np.max(np.abs(up))))


def tapered(audio: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    ramp = np.minimum(1.0, np.minimum(np.arange(audio.shape[-1]), np.arange(audio.shape[-1])[::-1]) / (seconds * RATE))
    return (audio * ramp).astype(np.float32)


def band_limited(audio: np.ndarray, cutoff: float = 20_000.0) -> np.ndarray:
    """What the delivery chain's resampler leaves (flat to ~20.9 kHz): a 4× FIR meter and an ideal one agree on it.

    On raw square-wave clicks with energy right up to Nyquist any 4× FIR meter (BS.1770's included) under-reads
    an ideal reconstruction by a few tenths of a dB; that is the meter's definition, not a limiter fault.
    """
    sos = scipy.signal.butter(12, cutoff, fs=RATE, output="sos")
    return scipy.signal.sosfiltfilt(sos, audio, axis=-1).astype(np.float32)


def test_a_minus_20_dbfs_997_hz_sine_in_both_channels_measures_about_minus_20_lufs():
    t = np.arange(RATE * 3) / RATE
    sine = 0.1 * np.sin(2 * np.pi * 997 * t)
    lufs = integrated_loudness(np.stack([sine, sine]).astype(np.float32), RATE)
    assert lufs == pytest.approx(-20.0, abs=0.1)


def test_silence_is_minus_infinity_and_too_short_is_an_error():
    assert integrated_loudness(np.zeros((2, RATE), dtype=np.float32), RATE) == -math.inf
    with pytest.raises(AudioInputError, match="at least 0.4 s"):
        integrated_loudness(np.zeros((2, RATE // 4), dtype=np.float32), RATE)
    assert loudness_range(np.zeros((2, RATE), dtype=np.float32), RATE) is None


def test_true_peak_finds_the_inter_sample_peak_of_a_quarter_rate_sine():
    n = np.arange(RATE)
    taper = np.minimum(1.0, np.minimum(n, n[::-1]) / 2000)  # no Gibbs overshoot from an abrupt start or end
    sine = (taper * np.sin(2 * np.pi * n / 4 + np.pi / 4)).astype(np.float32)[np.newaxis]  # samples at ±0.707
    assert to_db(float(np.max(np.abs(sine)))) == pytest.approx(-3.01, abs=0.01)
    assert to_db(true_peak(sine, RATE)) == pytest.approx(0.0, abs=0.05)
    assert oversample_factor(48_000) == 4 and oversample_factor(96_000) == 4 and oversample_factor(16_000) == 12


@settings(max_examples=25, deadline=None)
@given(
    required=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=300),
    window=st.integers(1, 40),
)
def test_lookahead_gain_never_exceeds_the_requirement(required, window):
    req = np.array(required)
    smoothed = lookahead_gain(req, window)
    assert smoothed.shape == req.shape
    assert np.all(smoothed <= req + 1e-12)
    assert np.all(smoothed > 0)


def test_release_matches_the_recursive_definition_across_chunks(monkeypatch):
    monkeypatch.setattr(limiter_module, "_RELEASE_CHUNK", 1000)
    rng = np.random.default_rng(3)
    attack = np.ones(4500)
    for start in rng.integers(0, 4400, size=12):
        attack[start : start + 50] = np.minimum(attack[start : start + 50], rng.uniform(0.2, 0.9))
    fast = release_gain(attack, RATE, 0.01)
    alpha = math.exp(-1.0 / (0.01 * RATE))
    held, slow = 0.0, np.empty_like(attack)
    for i, value in enumerate(-np.log(attack)):
        held = max(value, alpha * held)
        slow[i] = math.exp(-held)
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    assert np.all(fast <= attack + 1e-12)


@pytest.mark.parametrize("ceiling", [-1.0, -2.0, -6.0])
def test_limiter_holds_the_true_peak_ceiling_with_a_smooth_gain(ceiling):
    audio = tapered(band_limited(synth_event("tones", RATE * 3, RATE, seed=7, level_db=-6.0)))
    assert fft_true_peak_db(audio) > ceiling + 3  # real work to do
    gain = limiter_gain(audio, RATE, ceiling - 0.1)
    limited = audio * gain
    assert np.all((gain > 0) & (gain <= 1.0))
    assert fft_true_peak_db(limited) <= ceiling
    assert to_db(true_peak(limited, RATE)) <= ceiling
    assert np.max(np.abs(np.diff(gain))) < 0.01  # ramps, no steps: the look-ahead spreads every attack


def test_limiter_leaves_quiet_audio_alone():
    audio = synth_event("noise", RATE, RATE, seed=1, level_db=-40.0)
    np.testing.assert_array_equal(limiter_gain(audio, RATE, -1.0), 1.0)


def test_envelope_is_linked_over_channels():
    audio = np.zeros((2, 1000), dtype=np.float32)
    audio[1, 500] = 0.9
    envelope = true_peak_envelope(audio, RATE)
    assert envelope.shape == (1000,)
    assert envelope[500] == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize(("target", "ceiling"), [(-23.0, -1.0), (-14.0, -1.0), (None, -0.1)])
def test_master_reaches_the_target_under_the_ceiling(target, ceiling):
    audio = tapered(band_limited(synth_event("tones", RATE * 4, RATE, seed=11, level_db=-16.0)))
    result = master(audio, RATE, target_lufs=target, ceiling_dbtp=ceiling)
    np.testing.assert_allclose(result.audio, audio * result.gain, rtol=1e-6)
    assert fft_true_peak_db(result.audio) <= ceiling + 0.02
    if target is None:
        assert result.static_gain_db == 0.0
    else:
        assert integrated_loudness(result.audio, RATE) == pytest.approx(target, abs=0.1)


def test_master_refuses_to_normalise_silence_but_passes_it_through_without_a_target():
    silence = np.zeros((2, RATE), dtype=np.float32)
    with pytest.raises(AudioInputError, match="the mix is silent"):
        master(silence, RATE, target_lufs=-23.0, ceiling_dbtp=-1.0)
    result = master(silence, RATE, target_lufs=None, ceiling_dbtp=-1.0)
    assert not result.audio.any() and result.input_lufs == -math.inf
