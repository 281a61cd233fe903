"""Loudness presets in presets/loudness/*.toml: contents, validation, unknown names."""

from __future__ import annotations

import pytest

from audiostory_cli.audio import presets
from audiostory_cli.audio.presets import check_format, check_targets, load_preset, preset_names
from audiostory_cli.errors import InputError, UsageError

EXPECTED = {
    "broadcast": (-23.0, -1.0),
    "atsc": (-24.0, -2.0),
    "podcast": (-16.0, -1.0),
    "streaming": (-14.0, -1.0),
    "none": (None, -0.1),
}


def test_every_preset_is_shipped_with_its_targets_and_48k_24bit():
    assert set(EXPECTED) <= set(preset_names())
    for name, (lufs, peak) in EXPECTED.items():
        preset = load_preset(name)
        assert (preset.name, preset.integrated_lufs, preset.true_peak_dbtp) == (name, lufs, peak)
        assert (preset.sample_rate, preset.bit_depth) == (48_000, 24)
        assert preset.description and 0 < preset.tolerance_lu <= 1.0


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown loudness preset 'loud'; known presets: atsc, broadcast, "):
        load_preset("loud")
    with pytest.raises(UsageError, match="unknown loudness preset"):
        load_preset("../models/x")


def test_ranges_are_checked():
    with pytest.raises(UsageError, match="--lufs 3"):
        check_targets(3.0, -1.0)
    with pytest.raises(UsageError, match="--true-peak 1"):
        check_targets(-23.0, 1.0)
    with pytest.raises(UsageError, match="--sample-rate 12345"):
        check_format(12_345, 24)
    with pytest.raises(UsageError, match="--bit-depth 8"):
        check_format(48_000, 8)


def test_a_broken_preset_file_is_reported(tmp_path, monkeypatch):
    (tmp_path / "odd.toml").write_text('name = "odd"\ntrue_peak_dbtp = -1.0\nloudness = 3\n')
    (tmp_path / "bad.toml").write_text("name = [\n")
    monkeypatch.setattr(presets, "presets_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="unknown field 'loudness'"):
        load_preset("odd")
    with pytest.raises(InputError, match="cannot be read"):
        load_preset("bad")
