"""`continue` through the Python API: tiny-random model, synthetic inputs (mono 22.05 kHz, stereo 48 kHz, 70 s).

What is checked: output length = input + S to the sample; the samples before the seam equal the input (exactly
at the story rate, within resampling tolerance at the 48 kHz delivery rate); no step at the seam larger than the
audio's own sample-to-sample steps; the text-only fallback notice; the story folder (event 0 = source, seam in
the cue sheets); only the input's tail is encoded; regen and editing of continued stories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiostory_cli.app.continuation import (
    CONTINUE_LEAD,
    SEAM_CROSSFADE,
    SOURCE_FILE,
    attach_source,
    continuation_instruction,
    continue_story,
    measure_seam,
)
from audiostory_cli.app.export import ExportOptions, export_story
from audiostory_cli.app.pipeline import (
    PlanOptions,
    regen_events,
    render_story,
    seam_frame,
    source_conditioning,
    write_new_part,
)
from audiostory_cli.app.understand import audio_tokens
from audiostory_cli.audio.input import InputAudio, read_input_audio
from audiostory_cli.audio.io import resample, resample_margin
from audiostory_cli.errors import UsageError
from audiostory_cli.model import AudioStoryModel, tiny_random_model
from audiostory_cli.runtime import make_runtime
from audiostory_cli.story import StoryFolder
from audiostory_cli.story.edit import set_event_fields
from audiostory_cli.story.editview import parse_view, render_view
from tests.story_factory import make_story

DELIVERY_RATE = 48_000  # the presets' rate
STORY_RATE = 44_100


def input_signal(rate: int, seconds: float, channels: int) -> np.ndarray:
    """Band-limited test audio (frames, channels): a few partials under a slow swell."""
    t = np.arange(round(rate * seconds)) / rate
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    left = swell * (
        0.2 * np.sin(2 * np.pi * 220 * t)
        + 0.08 * np.sin(2 * np.pi * 1234 * t + 1)
        + 0.04 * np.sin(2 * np.pi * 3150 * t)
    )
    right = swell * (0.18 * np.sin(2 * np.pi * 277 * t + 0.3) + 0.08 * np.sin(2 * np.pi * 990 * t))
    return np.stack([left, right], axis=1)[:, :channels].astype(np.float32)


def write_input(path: Path, rate: int, seconds: float, channels: int, subtype: str = "PCM_24") -> Path:
    sf.write(str(path), input_signal(rate, seconds, channels), rate, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_random_model()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runtime():
    return make_runtime("cpu")


def fast(new_seconds: float, seed: int = 5) -> PlanOptions:
    return PlanOptions(total_duration=new_seconds, preset="none", seed=seed, steps=2, guidance=1.0)


def read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), always_2d=True, dtype="float32")
    return np.ascontiguousarray(data.T), rate


@dataclass
class Continued:
    folder: StoryFolder
    source: InputAudio
    new_seconds: float
    notices: list[str]
    mix48: np.ndarray  # delivered: preset "none", 48 kHz / 24-bit
    mix44: np.ndarray | None  # the same at the story rate, 32-bit float (no delivery resampling)


def run_continuation(
    root: Path,
    model: AudioStoryModel,
    runtime,
    *,
    rate: int,
    channels: int,
    seconds: float,
    new_seconds: float,
    story_rate_export: bool = True,
) -> Continued:
    path = write_input(root / f"in-{rate}-{channels}.wav", rate, seconds, channels)
    folder = StoryFolder(root / "story")
    folder.prepare_new(force=False)
    source = read_input_audio(path)
    notices: list[str] = []
    continue_story(source, "rain on the roof, then thunder", fast(new_seconds), model, folder, notify=notices.append)
    report = render_story(folder, model, runtime)
    assert report.skipped == [0] and report.rendered == [e.index for e in folder.load().events[1:]]
    mix44 = None
    if story_rate_export:
        export_story(folder, ExportOptions(loudness="none", sample_rate=STORY_RATE, bit_depth=32, force=True))
        mix44, _ = read(folder.mix_path)
    export_story(folder, ExportOptions(loudness="none", cues=("story", "audacity"), force=True))
    mix48, rate48 = read(folder.mix_path)
    assert rate48 == DELIVERY_RATE
    return Continued(folder, source, new_seconds, notices, mix48, mix44)


@pytest.fixture(scope="module", params=[(22_050, 1), (48_000, 2)], ids=["mono-22k", "stereo-48k"])
def short(request, tmp_path_factory, model, runtime) -> Continued:
    rate, channels = request.param
    root = tmp_path_factory.mktemp(f"short-{rate}")
    return run_continuation(root, model, runtime, rate=rate, channels=channels, seconds=3.0, new_seconds=3.0)


@pytest.fixture(scope="module")
def long70(tmp_path_factory, model, runtime) -> Continued:
    root = tmp_path_factory.mktemp("long70")
    return run_continuation(  # at the story rate: the 70 s are not resampled, only the mix is (to 48 kHz)
        root, model, runtime, rate=STORY_RATE, channels=1, seconds=70.0, new_seconds=2.0, story_rate_export=False
    )


def expected_input(run: Continued, rate: int) -> np.ndarray:
    """The input as it should be delivered at ``rate``: stereo, resampled once from the file's own rate."""
    return resample(np.repeat(run.source.audio, 2 // run.source.channels, axis=0), run.source.sample_rate, rate)


def test_output_length_is_input_plus_new_part_to_the_sample(short, long70):
    for run in (short, long70):
        want = round((run.source.frames / run.source.sample_rate + run.new_seconds) * DELIVERY_RATE)
        assert run.mix48.shape == (2, want)
        assert seam_frame(run.folder.load(), DELIVERY_RATE) == round(run.source.seconds * DELIVERY_RATE)
    assert short.mix44.shape[1] == round(short.source.seconds * STORY_RATE) + round(short.new_seconds * STORY_RATE)


def test_samples_before_the_seam_equal_the_input(short):
    declick44 = round(0.005 * STORY_RATE)  # every story starts with a 5 ms de-click fade-in
    seam44 = seam_frame(short.folder.load(), STORY_RATE)
    exact = short.source.stereo(STORY_RATE)
    assert seam44 == exact.shape[1]
    np.testing.assert_array_equal(short.mix44[:, declick44:seam44], exact[:, declick44:])  # bit-exact
    assert np.all(np.abs(short.mix44[:, :declick44]) <= np.abs(exact[:, :declick44]) + 1e-7)
    # delivered at 48 kHz: the story-rate copy is resampled once more; equal within resampling tolerance
    seam = seam_frame(short.folder.load(), DELIVERY_RATE)
    reach = resample_margin(STORY_RATE, DELIVERY_RATE)  # the delivery filter's reach across the seam
    want = expected_input(short, DELIVERY_RATE)
    declick = round(0.005 * DELIVERY_RATE) + reach
    error = np.abs(short.mix48[:, :seam] - want[:, :seam])
    assert error[:, declick : seam - reach].max() < 1e-5
    assert error[:, seam - reach :].max() < 5e-3


def test_seam_has_no_step_larger_than_the_audio_own_steps(short, long70):
    for run in (short, long70):
        for mix, rate in ((run.mix48, DELIVERY_RATE), (run.mix44, STORY_RATE)):
            if mix is None:
                continue
            seam = seam_frame(run.folder.load(), rate)
            report = measure_seam(mix, seam, rate)
            assert report.continuous
            assert report.jump <= report.p99_before, report  # even against the smooth input alone
            steps = np.abs(np.diff(mix.astype(np.float64), axis=1))
            fade = round(SEAM_CROSSFADE * rate)
            own = max(steps[:, seam - rate // 2 : seam - 1].max(), steps[:, seam + fade : seam + rate // 2].max())
            assert report.max_step_crossfade <= 1.5 * own  # the crossfade blends the two sides' own steps


def test_text_only_fallback_notice_once(short):
    assert len(short.notices) == 1
    assert "no trained audio understanding (resampler) weights" in short.notices[0]
    assert "from your instruction alone" in short.notices[0]
    story = short.folder.load()
    assert story.instruction == continuation_instruction("rain on the roof, then thunder", short.new_seconds)


def test_story_folder_records_the_source_and_marks_the_seam(short):
    folder = short.folder
    story = folder.load()
    source = story.events[0]
    assert (source.index, source.status, source.start, source.file) == (0, "source", 0.0, SOURCE_FILE)
    assert source.duration == pytest.approx(short.source.seconds, abs=1e-6)
    assert [e.index for e in story.events] == list(range(len(story.events)))
    assert story.events[1].start == source.end
    assert story.total_duration == pytest.approx(short.source.seconds + short.new_seconds, abs=1e-6)
    assert folder.resolve(story.source).read_bytes() == short.source.path.read_bytes()  # the input, as given
    stored, rate = read(folder.resolve(SOURCE_FILE))  # input + mirrored seam tail
    n0 = round(source.duration * rate)
    tail = round(SEAM_CROSSFADE * rate)
    assert stored.shape[1] == n0 + tail
    np.testing.assert_array_equal(stored[:, n0:], stored[:, n0 - 1 - np.arange(tail)])
    csv = (folder.cues_dir / "story.csv").read_text()
    assert f"seam, {source.end:.3f} s" in csv.splitlines()[1]
    labels = (folder.cues_dir / "audacity.txt").read_text().splitlines()
    assert labels[1].startswith(f"{source.end:.6f}\t")  # the first new event starts at the seam


def test_long_input_encodes_only_its_tail(long70, model):
    story = long70.folder.load()
    assert story.events[0].duration == pytest.approx(70.0)
    conditioning = source_conditioning(long70.folder, story, model)
    assert conditioning.continues == 1 and conditioning.embeds is None
    assert conditioning.prefix.shape == (65, model.dims.vae.latent_channels)  # ceil(3 s / hop) frames
    listener = tiny_random_model()
    listener.resampler_trained = True
    audio = long70.source.stereo(STORY_RATE)
    whole = audio_tokens(listener, audio, STORY_RATE)
    last30 = audio_tokens(listener, audio[:, -30 * STORY_RATE :], STORY_RATE)
    torch.testing.assert_close(whole, last30)  # Whisper hears the last 30 s only


def test_only_new_part_is_the_mix_from_the_seam(short):
    path = write_new_part(short.folder)
    new, rate = read(path)
    seam = seam_frame(short.folder.load(), rate)
    np.testing.assert_array_equal(new, short.mix48[:, seam:])
    assert new.shape[1] == round(short.new_seconds * rate)
    assert sf.info(str(path)).subtype == sf.info(str(short.folder.mix_path)).subtype


def test_regen_rerenders_the_event_at_the_seam(tmp_path, model, runtime):
    run = run_continuation(
        tmp_path, model, runtime, rate=44_100, channels=2, seconds=1.0, new_seconds=1.5, story_rate_export=False
    )
    folder = run.folder
    source_bytes = folder.resolve(SOURCE_FILE).read_bytes()
    regen_events(folder, [1], seed=77)
    with pytest.raises(Exception, match="input audio of a continuation"):
        regen_events(folder, [0])
    report = render_story(folder, model, runtime)
    assert report.rendered == [1] and 0 in report.skipped
    assert folder.resolve(SOURCE_FILE).read_bytes() == source_bytes
    export_story(folder, ExportOptions(loudness="none", force=True))
    mix, rate = read(folder.mix_path)
    assert mix.shape[1] == round(2.5 * rate)
    report = measure_seam(mix, seam_frame(folder.load(), rate), rate)
    assert report.jump <= report.p99_before
    assert len(folder.load().events[1].takes) == 1  # the earlier render is kept as a take


def continued_plan() -> tuple[StoryFolder | None, object]:
    planned = make_story([2.0, 3.0], crossfade=1.0)
    return attach_source(planned, "field.wav", 3 * STORY_RATE)


def test_edit_view_shows_the_source_read_only_and_keeps_it():
    story = continued_plan()
    text = render_view(story)
    assert "# event 0 (read-only, not rendered): 0.000-3.000 s" in text
    assert text.splitlines().count("[[event]]") == 2
    assert parse_view(text, story).to_dict() == story.to_dict()  # round trip
    edited = parse_view(text.replace("duration = 2.0", "duration = 4.0"), story)
    assert edited.events[0].to_dict() == story.events[0].to_dict()
    assert [(e.index, e.start, e.duration) for e in edited.events] == [(0, 0.0, 3.0), (1, 3.0, 4.0), (2, 7.0, 3.0)]
    assert edited.total_duration == 10.0


def test_edit_errors_point_at_the_view_line():
    story = continued_plan()
    text = render_view(story).replace('caption = "synthetic event number 2"', 'caption = ""')
    with pytest.raises(Exception, match="caption is empty") as info:
        parse_view(text, story)
    line = text.splitlines()[info.value.line - 1]
    assert line == 'caption = ""'


def test_set_fields_of_a_continued_story_targets_the_named_event(tmp_path):
    folder = StoryFolder(tmp_path / "s")
    folder.save(continued_plan())
    story = set_event_fields(folder, 1, caption="a different first event")
    assert [e.caption for e in story.events[1:]] == ["a different first event", "synthetic event number 2"]
    with pytest.raises(Exception, match="source audio of a continuation"):
        set_event_fields(folder, 0, caption="nope")


def test_trained_resampler_puts_the_audio_in_the_prompt(tmp_path, runtime):
    listener = tiny_random_model()
    listener.resampler_trained = True
    path = write_input(tmp_path / "in.wav", 44_100, 1.0, 2)
    folder = StoryFolder(tmp_path / "story")
    notices: list[str] = []
    story = continue_story(read_input_audio(path), None, fast(1.0), listener, folder, notify=notices.append)
    assert notices == []  # it can listen: no fallback
    assert story.instruction.startswith(CONTINUE_LEAD.rstrip().removesuffix(" of") + ".")
    conditioning = source_conditioning(folder, story, listener)
    assert conditioning.embeds is not None and conditioning.embeds.shape == (4, 64)
    planner = listener.planner()
    with torch.inference_mode():
        heard = planner.bridge_story(story, audio_embeds=conditioning.embeds)
        deaf = planner.bridge_story(story)
    assert heard.shape == deaf.shape and not torch.allclose(heard, deaf)  # the audio changes the bridge
    assert render_story(folder, listener, runtime).rendered == [1]


def test_measure_seam_flags_a_hard_cut():
    rate = 8000
    t = np.arange(rate) / rate
    smooth = np.sin(2 * np.pi * 50 * t)[None].astype(np.float32)
    cut = smooth.copy()
    cut[:, rate // 2 :] += 0.5
    assert measure_seam(smooth, rate // 2, rate).continuous
    report = measure_seam(cut, rate // 2, rate)
    assert not report.continuous and report.jump > 0.49


def test_inputs_are_checked_before_planning(tmp_path, model):
    path = write_input(tmp_path / "in.wav", 44_100, 1.0, 1)
    source = read_input_audio(path)
    folder = StoryFolder(tmp_path / "story")
    with pytest.raises(UsageError, match="cannot hear what to continue"):
        continue_story(source, None, fast(2.0), model, folder)
    with pytest.raises(UsageError, match=r"--duration 3600: the input \(1.0 s\) plus the continuation"):
        continue_story(source, "more rain", fast(3600.0), model, folder)
    assert not folder.story_path.exists()


def test_instruction_follows_the_paper_style():
    assert continuation_instruction("the storm passes, birds return.", 30) == (
        "Understand the input audio, infer the subsequent events, and generate the continued audio of the storm "
        "passes, birds return. The total duration is 30.0 seconds."
    )
    assert continuation_instruction(None, 12.5) == (
        "Understand the input audio, infer the subsequent events, and generate the continued audio. "
        "The total duration is 12.5 seconds."
    )
