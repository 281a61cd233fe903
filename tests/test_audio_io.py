"""The one audio reader/writer: validation, exact PCM round trips, atomic writes, resampling."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiostory_cli.audio import io as audio_io
from audiostory_cli.audio.io import quantize, read_audio, resample, subtype_for_bit_depth, write_audio
from audiostory_cli.errors import AudioInputError, UsageError


def _signal(frames: int = 4800, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.5 * rng.uniform(-1, 1, size=(channels, frames))).astype(np.float32)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_write_then_read_returns_exactly_the_quantised_audio(tmp_path, subtype):
    audio = _signal()
    path = write_audio(tmp_path / "a.wav", audio, 48_000, subtype)
    back, rate = read_audio(path)
    assert rate == 48_000
    assert sf.info(str(path)).subtype == subtype
    np.testing.assert_array_equal(back, quantize(audio, subtype))
    step = {"PCM_16": 2.0**-15, "PCM_24": 2.0**-23, "FLOAT": 0.0}[subtype]
    assert np.max(np.abs(back - audio)) <= step / 2 + 1e-9


def test_mono_1d_is_written_as_one_channel(tmp_path):
    path = write_audio(tmp_path / "m.wav", _signal(channels=1)[0], 44_100, "PCM_24")
    audio, _ = read_audio(path)
    assert audio.shape == (1, 4800)


def test_bit_depths_map_to_subtypes():
    assert [subtype_for_bit_depth(b) for b in (16, 24, 32)] == ["PCM_16", "PCM_24", "FLOAT"]
    with pytest.raises(UsageError, match="16, 24 or 32"):
        subtype_for_bit_depth(8)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.zeros((2, 10), dtype=np.int16), TypeError),
        (np.full((2, 10), np.nan, dtype=np.float32), ValueError),
        (np.zeros((1, 2, 10), dtype=np.float32), ValueError),
        (np.zeros((2, 0), dtype=np.float32), ValueError),
    ],
)
def test_writer_rejects_bad_arrays_and_leaves_nothing(tmp_path, bad, error):
    with pytest.raises(error):
        write_audio(tmp_path / "x.wav", bad, 48_000, "PCM_24")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = write_audio(tmp_path / "keep.wav", _signal(), 48_000, "PCM_24")
    before = target.read_bytes()

    def broken_write(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("simulated failure")

    monkeypatch.setattr(audio_io.sf, "write", broken_write)
    with pytest.raises(OSError, match="simulated"):
        write_audio(target, _signal(), 48_000, "PCM_24")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.wav"]


def test_reader_rejects_missing_corrupt_empty_multichannel_and_nonfinite(tmp_path):
    with pytest.raises(AudioInputError, match="does not exist"):
        read_audio(tmp_path / "nope.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioInputError, match="cannot read"):
        read_audio(tmp_path / "corrupt.wav")
    sf.write(str(tmp_path / "eight.wav"), np.zeros((100, 8), dtype=np.float32), 44_100, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="8 channels"):
        read_audio(tmp_path / "eight.wav")
    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 2), dtype=np.float32), 44_100, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="no audio"):
        read_audio(tmp_path / "empty.wav")
    for value, name in ((np.nan, "nan"), (np.inf, "inf")):
        data = np.zeros((441, 2), dtype=np.float32)
        data[220, 1] = value
        sf.write(str(tmp_path / f"{name}.wav"), data, 44_100, subtype="FLOAT")
        with pytest.raises(AudioInputError, match=r"NaN or infinite samples \(first at 0.005 s\)"):
            read_audio(tmp_path / f"{name}.wav")
    sf.write(str(tmp_path / "huge.wav"), np.full((100, 1), 1e6, dtype=np.float32), 44_100, subtype="FLOAT")
    with pytest.raises(AudioInputError, match="not audio"):
        read_audio(tmp_path / "huge.wav")


def test_resample_keeps_a_tone_and_its_length():
    rate_in, rate_out = 44_100, 48_000
    t = np.arange(rate_in) / rate_in
    tone = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32)
    out = resample(tone, rate_in, rate_out)
    assert out.shape == (2, rate_out)
    expected = np.sin(2 * np.pi * 1000 * np.arange(rate_out) / rate_out)
    core = slice(1000, rate_out - 1000)  # away from the edges, where the filter sees the zero padding
    assert np.max(np.abs(out[0, core] - expected[core])) < 1e-3
    np.testing.assert_array_equal(resample(tone, rate_in, rate_in), tone)
