"""Pure evaluation helpers of the foley world."""

from __future__ import annotations

import numpy as np
import pytest

from audiostory_cli.errors import InputError
from audiostory_cli.foley.metrics import duration_error, seam_discontinuity, sequence_accuracy

SR = 16_000


def _sine(freq: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.5 * np.sin(2 * np.pi * freq * t + phase)


def test_a_continuous_signal_has_no_seam():
    x = _sine(220.0, 1.0)
    assert seam_discontinuity(x, SR, [SR // 3, SR // 2]) < 1.6


def test_a_hard_cut_is_a_large_jump():
    a = _sine(220.0, 0.5)
    b = _sine(220.0, 0.5, phase=np.pi / 2) + 0.3
    stereo = np.stack([np.concatenate([a, b])] * 2)
    assert seam_discontinuity(stereo, SR, [len(a)]) > 10.0


def test_edges_are_ignored_and_out_of_range_rejected():
    x = _sine(100.0, 0.2)
    assert seam_discontinuity(x, SR, []) == 0.0
    assert seam_discontinuity(x, SR, [0, len(x)]) == 0.0
    with pytest.raises(InputError):
        seam_discontinuity(x, SR, [len(x) + 5])
    with pytest.raises(InputError):
        seam_discontinuity(np.zeros(1), SR, [0])


def test_duration_error_and_sequence_accuracy():
    assert duration_error([1.0, 2.0], [1.5, 2.0, 3.0]) == pytest.approx(0.25)
    assert duration_error([], [1.0]) == float("inf")
    assert sequence_accuracy(["rain", "thunder"], ["rain", "thunder"]) == 1.0
    assert sequence_accuracy(["thunder", "rain"], ["rain", "thunder"]) == 0.0
    assert sequence_accuracy(["rain"], ["rain", "dog_bark"]) == 0.5
    assert sequence_accuracy([], []) == 1.0
