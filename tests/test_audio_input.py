"""Reading user audio for `continue`/`describe`: formats, rates, channels, and one-line errors for bad input."""

from __future__ import annotations

import array
import shutil

import numpy as np
import pytest
import soundfile as sf

from audiostory_cli.audio import input as audio_input
from audiostory_cli.audio.input import MAX_INPUT_SECONDS, read_input_audio, segment_to_array
from audiostory_cli.audio.io import resample
from audiostory_cli.errors import AudioInputError


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 2100 * t)
    right = 0.25 * np.sin(2 * np.pi * 440 * t + 0.5)
    data = np.stack([left, right], axis=1)[:, :channels]
    return data.astype(np.float32)  # (frames, channels), soundfile's layout


@pytest.mark.parametrize(
    ("name", "rate", "channels", "subtype"),
    [
        ("mono.wav", 22_050, 1, "PCM_16"),
        ("stereo.flac", 48_000, 2, "PCM_24"),
        ("stereo.aiff", 44_100, 2, "PCM_16"),
        ("mono.ogg", 32_000, 1, "VORBIS"),
        ("stereo.mp3", 44_100, 2, "MPEG_LAYER_III"),
    ],
)
def test_reads_common_formats_at_their_own_rate(tmp_path, name, rate, channels, subtype):
    path = tmp_path / name
    data = tone(rate, 1.0, channels)
    sf.write(str(path), data, rate, subtype=subtype)
    got = read_input_audio(path)
    assert got.sample_rate == rate and got.channels == channels and got.decoder == "soundfile"
    assert abs(got.seconds - 1.0) < 0.06  # MP3 adds encoder padding
    if subtype.startswith("PCM"):
        np.testing.assert_allclose(got.audio, data.T, atol=2.0**-14)


def test_stereo_and_mono_conversions_are_explicit(tmp_path):
    path = tmp_path / "in.wav"
    data = tone(22_050, 1.0, 1)
    sf.write(str(path), data, 22_050, subtype="FLOAT")
    got = read_input_audio(path)
    stereo = got.stereo(44_100)
    assert stereo.shape == (2, 44_100)
    np.testing.assert_array_equal(stereo[0], stereo[1])  # mono is copied to both channels
    np.testing.assert_array_equal(stereo, resample(np.repeat(data.T, 2, axis=0), 22_050, 44_100))
    path2 = tmp_path / "st.wav"
    data2 = tone(48_000, 2.0, 2)
    sf.write(str(path2), data2, 48_000, subtype="FLOAT")
    got2 = read_input_audio(path2)
    mono = got2.mono(16_000, last_seconds=0.5)
    np.testing.assert_allclose(mono, resample(data2.T[:, -24_000:].mean(axis=0, keepdims=True), 48_000, 16_000)[0])
    assert mono.shape == (8000,)


def _write(kind: str, tmp_path):
    path = tmp_path / f"{kind}.wav"
    if kind == "not-audio":
        path.write_text("this is a text file, not audio\n")
    elif kind == "zero-length":
        sf.write(str(path), np.zeros((0, 2), np.float32), 44_100)
    elif kind == "all-nan":
        sf.write(str(path), np.full((4410, 2), np.nan, np.float32), 44_100, subtype="FLOAT")
    elif kind == "8-channel":
        sf.write(str(path), np.zeros((44_100, 8), np.float32), 44_100)
    elif kind == "1-hour":  # an hour at 1 kHz mono: 7 MB, rejected from the header before decoding
        sf.write(str(path), np.zeros(3600 * 1000, np.int16), 1000, subtype="PCM_16")
    elif kind == "too-short":
        sf.write(str(path), np.zeros((441, 2), np.float32), 44_100)
    elif kind == "missing":
        path = tmp_path / "no" / "such.wav"
    elif kind == "folder":
        path = tmp_path / "a-folder.wav"
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("not-audio", "not a valid WAV file"),
        ("zero-length", "holds no audio (0 samples)"),
        ("all-nan", "NaN or infinite samples (100% of them, the first at 0.000 s)"),
        ("8-channel", "has 8 channels; audiostory takes mono or stereo (at most 2)"),
        ("1-hour", f"is 1:00:00 long (3600.0 s); the limit is {MAX_INPUT_SECONDS:g} s (10:00)"),
        ("too-short", "is 0.010 s long; at least 0.5 s"),
        ("missing", "does not exist"),
        ("folder", "is a folder"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, kind, expected):
    path = _write(kind, tmp_path)
    with pytest.raises(AudioInputError) as info:
        read_input_audio(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert "\n" not in message


def test_unreadable_file_names_permissions(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(str(path), tone(44_100, 1.0, 2), 44_100)
    path.chmod(0)
    try:
        with open(path, "rb"):
            pytest.skip("running as root: permissions are not enforced")
    except PermissionError:
        pass
    try:
        with pytest.raises(AudioInputError, match="cannot open .*check its permissions"):
            read_input_audio(path)
    finally:
        path.chmod(0o644)


def test_m4a_without_ffmpeg_names_the_missing_tool(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    path = tmp_path / "phone.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioInputError) as info:
        read_input_audio(path)
    message = str(info.value)
    assert "needs ffmpeg, which is not on PATH" in message and "install ffmpeg" in message and ".m4a" in message


def _segment(rate: int, frames: int):
    from pydub import AudioSegment

    t = np.arange(frames) / rate
    pcm = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)], axis=1) * 0.5 * 32767
    raw = np.round(pcm).astype("<i2").tobytes()
    return AudioSegment(data=raw, sample_width=2, frame_rate=rate, channels=2), pcm.T / 32768.0


def test_pydub_segment_to_array():
    segment, expected = _segment(24_000, 2400)
    audio, rate = segment_to_array(segment)
    assert rate == 24_000 and audio.shape == (2, 2400) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, expected, atol=1.0 / 32768)
    assert isinstance(segment.get_array_of_samples(), array.array)


def test_ffmpeg_path_is_used_for_other_formats(tmp_path, monkeypatch):
    """With ffmpeg on PATH, formats soundfile does not know go through pydub (its decoder is stubbed here)."""
    segment, expected = _segment(16_000, 16_000)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name == "ffmpeg" else None)
    segment_class, _error = audio_input._pydub()
    calls = []

    def fake_from_file(path):
        calls.append(path)
        return segment

    monkeypatch.setattr(segment_class, "from_file", staticmethod(fake_from_file))
    path = tmp_path / "clip.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    got = read_input_audio(path)
    assert calls == [str(path)] and got.decoder == "ffmpeg" and got.sample_rate == 16_000
    np.testing.assert_allclose(got.audio, expected, atol=1.0 / 32768)
