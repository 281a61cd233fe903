"""``continue``: plan what follows an input audio and render it seamlessly after it.

A continuation is a story folder whose event 0 is the input itself (status "source", never rendered):

    source/<input file>     the input exactly as given (copied)
    events/00-source.wav    the input at the story rate (stereo float) plus its seam tail (below)
    story.json              event 0 = the input [0, n0); events 1..N = the continuation, S seconds after it

Planning: when the model has a trained resampler, the input's Whisper → resampler tokens sit in the prompt
(``understand``, ``planner.reasoner``); otherwise (the released checkpoint, ``tiny-random``) a notice says so once
and the plan comes from the user's instruction alone. The instruction follows the paper's continuation style:
"Understand the input audio, infer the subsequent events, and generate the continued audio of {instruction}
The total duration is {S} seconds." (S = the new part's length).

The seam, at sample n0 (the input's length at the story rate):
1. The first new event is sampled with the input's last ``TAIL_SECONDS`` VAE-encoded as a fixed latent prefix
   (flow-matching inpainting; ``encode_tail`` aligns it to the input's END) and decoded with that left context,
   so its audio starts at n0 and a trained model carries the input's sound across the seam by itself.
2. The input's samples before n0 are delivered untouched (only the story's usual 5 ms de-click at 0 s applies).
3. The join is an equal-power crossfade of ``SEAM_CROSSFADE`` seconds AFTER n0, out of the input's
   time-mirrored end (``x[n0-1-k]``) into the new audio. The mirror starts at the value the input stops at, so
   the seam has no step even when the decoder does not reproduce the input (an imperfect or random VAE); after
   it, each sample step is a blend of the input's own steps and the new audio's. This is the ordinary timeline
   crossfade (``audio.timeline``): the source event's file holds duration + crossfade tail like every render,
   its tail being the mirror, and event 0's ``crossfade`` is pinned to ``SEAM_CROSSFADE``.
4. Length: event 0 lasts exactly n0 samples and the new events fill S seconds after it, so the mix is input + S.
``measure_seam`` checks 3 on delivered audio: the jump at the seam against the 99th percentile of the
neighbouring sample-to-sample steps. The cue sheets mark the seam: event 0's caption names it, and event 1
starts there. Rendering and cutting a continued story (``source_conditioning``, ``seam_frame``,
``write_new_part``) live in ``pipeline``, which renders every story; this module builds on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, StoryError, UsageError
from ..progress import ProgressFn, no_progress
from ..story.folder import StoryFolder
from ..story.lock import holds_story_lock
from ..story.plan import MAX_TOTAL_SECONDS, TIME_EPS, Event, GeneratedPlan, Story
from .pipeline import (
    PlanOptions,
    check_plan_options,
    check_prompt,
    plan_story,
    render_story,
    seam_frame,
    write_new_part,
)

if TYPE_CHECKING:
    from ..audio.input import InputAudio
    from ..audio.io import FloatArray
    from ..model import AudioStoryModel
    from ..runtime import Runtime
    from .export import ExportOptions, ExportResult

log = logging.getLogger(__name__)

Notify = Callable[[str], None]

CONTINUE_LEAD = "Understand the input audio, infer the subsequent events, and generate the continued audio of "
SEAM_CROSSFADE = 0.1  # seconds after the seam: mirrored input end → new audio
SOURCE_FILE = "events/00-source.wav"
SOURCE_DIR = "source"
SOURCE_STEM = "source"


def continuation_instruction(instruction: str | None, new_seconds: float) -> str:
    """The reasoner's instruction in the paper's continuation style (README figure of the official repo)."""
    from ..planner.prompt import build_instruction, format_total_duration

    if instruction:
        return build_instruction(instruction, new_seconds, lead=CONTINUE_LEAD)
    lead = CONTINUE_LEAD.rstrip().removesuffix(" of")
    return f"{lead}. The total duration is {format_total_duration(new_seconds)} seconds."


def check_continue_inputs(source: InputAudio, instruction: str | None, options: PlanOptions) -> str | None:
    """Validate before any model is loaded; returns the cleaned instruction (``None`` when not given)."""

    check_plan_options(options)
    room = MAX_TOTAL_SECONDS - source.seconds
    if options.total_duration > room + TIME_EPS:
        raise UsageError(
            f"--duration {options.total_duration:g}: the input ({source.seconds:.1f} s) plus the continuation "
            f"must stay within {MAX_TOTAL_SECONDS:g} s; use at most {math.floor(room * 1000) / 1000:g}"
        )
    if instruction is None or not instruction.strip():
        return None
    return check_prompt(instruction)


def continue_story(
    source: InputAudio,
    instruction: str | None,
    options: PlanOptions,
    model: AudioStoryModel,
    folder: StoryFolder,
    *,
    progress: ProgressFn = no_progress,
    notify: Notify = log.warning,
) -> Story:
    """Plan ``options.total_duration`` seconds that follow ``source`` and write the story folder (not rendered).

    ``notify`` receives the one-line notice when the model cannot listen to the input (text-only planning).
    Render with ``pipeline.render_story`` like any story: the first new event gets the input's tail as prefix.
    """
    from .understand import audio_tokens, understanding_gap

    instruction = check_continue_inputs(source, instruction, options)
    # 1. the input at the story rate: what is delivered before the seam, what the prefix and tokens come from
    audio = source.stereo(model.sample_rate)
    # 2. listen, or say once that this model cannot
    gap = understanding_gap(model)
    embeds = None
    if gap is None:
        embeds = audio_tokens(model, audio, model.sample_rate)
    else:
        if instruction is None:
            raise UsageError(
                f"{gap}, so it cannot hear what to continue: describe what follows, e.g. "
                f'`audiostory continue {source.path.name} "the storm passes, birds return" --duration ...`'
            )
        notify(f"{gap}: planning the continuation from your instruction alone (the input still shapes the seam)")
    # 3. plan the new part: S seconds from 0, as the reasoner sees it
    prompt = instruction or "continue the input audio"
    planned = plan_story(
        prompt,
        options,
        model,
        progress=progress,
        instruction=continuation_instruction(instruction, options.total_duration),
        audio_embeds=embeds,
    )
    # 4. the input becomes event 0; the new events follow it; write the folder
    story = attach_source(planned, source.path.name, audio.shape[1])
    write_source(folder, story, source.path, audio)
    folder.save(story, keep_previous=True)
    return story


def attach_source(planned: Story, name: str, frames: int) -> Story:
    """``planned`` (events from 0 s) shifted after an input of ``frames`` samples at the story rate, as event 0."""
    seconds = round(frames / planned.sample_rate, 6)
    if round(seconds * planned.sample_rate) != frames:
        raise InputError(f"the input length {frames} samples cannot be stored exactly at {planned.sample_rate} Hz")
    total = round(seconds + planned.total_duration, 6)
    events = [replace(e, start=round(seconds + e.start, 6), takes=list(e.takes)) for e in planned.events]
    last = events[-1]
    if last.end > total:
        last.duration = round(total - last.start, 6)
    source_event = Event(
        index=0,
        start=0.0,
        duration=seconds,
        caption=f"[source] {name} (the input; the continuation starts at the seam, {seconds:.3f} s)",
        story_detail="input audio (not rendered)",
        seed=0,
        stem=SOURCE_STEM,
        crossfade=SEAM_CROSSFADE,
        status="source",
        file=SOURCE_FILE,
    )
    generated = planned.generated
    if generated is not None:  # the shift is not an edit: the events are still what the reasoner wrote
        generated = replace(generated, events=[GeneratedPlan.fingerprint(e) for e in events])
    story = replace(
        planned,
        events=[source_event, *events],
        total_duration=total,
        source=f"{SOURCE_DIR}/{name}",
        generated=generated,
    )
    story.validate()
    return story


def write_source(folder: StoryFolder, story: Story, original: Path, audio: FloatArray) -> None:
    """Copy the original input into ``source/`` and write event 0's file: the input plus its mirrored seam tail."""
    import shutil

    from ..audio.io import write_audio
    from ..fsutil import write_with_atomic
    from .export import event_spans

    if story.source is None:
        raise StoryError("the story has no source audio to write")

    def copy(tmp: Path) -> None:
        shutil.copyfile(original, tmp)

    write_with_atomic(folder.resolve(story.source), copy)
    span = event_spans(story, story.sample_rate)[0]
    frames = span.end - span.start
    if audio.shape[1] != frames or span.fade_out > frames:
        raise StoryError(f"event 0 spans {frames} samples but the input has {audio.shape[1]}")
    tail = audio[:, frames - 1 - np.arange(span.fade_out)] if span.fade_out else audio[:, :0]
    write_audio(folder.resolve(SOURCE_FILE), np.concatenate([audio, tail], axis=1), story.sample_rate, "FLOAT")


# -- delivery -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContinuationResult:
    rendered: list[int]
    export: ExportResult
    new_part: Path | None  # continuation.wav with ``only_new``
    seam: SeamReport  # measured on the delivered mix
    seam_seconds: float


@holds_story_lock("continue")
def deliver_continuation(
    folder: StoryFolder,
    model: AudioStoryModel,
    runtime: Runtime,
    export_options: ExportOptions,
    *,
    only_new: bool = False,
    offload: bool = False,
    progress: ProgressFn = no_progress,
) -> ContinuationResult:
    """Render what is missing, export, cut the new part (``only_new``) and measure the seam of the mix."""
    from ..audio.io import read_audio
    from .export import export_story

    report = render_story(folder, model, runtime, progress=progress, offload=offload)
    result = export_story(folder, export_options, progress)
    new_part = write_new_part(folder) if only_new else None
    story = folder.load()
    mix, rate = read_audio(result.mix, what="mix")
    seam = seam_frame(story, rate)
    return ContinuationResult(report.rendered, result, new_part, measure_seam(mix, seam, rate), seam / rate)


@dataclass(frozen=True)
class SeamReport:
    """Continuity at the seam of delivered audio: the step there against the audio's own steps."""

    seam: int  # first sample of the continuation
    jump: float  # max over channels of |x[seam] - x[seam-1]|
    p99_before: float  # 99th percentile of |x[n+1] - x[n]| over the input just before the seam
    p99_around: float  # the same over both sides (the seam step excluded)
    max_step_crossfade: float  # largest step inside the seam crossfade

    @property
    def continuous(self) -> bool:
        return self.jump <= self.p99_around

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "seam": self.seam,
            "jump": self.jump,
            "p99_before": self.p99_before,
            "p99_around": self.p99_around,
            "max_step_crossfade": self.max_step_crossfade,
            "continuous": self.continuous,
        }


def measure_seam(audio: FloatArray, seam: int, rate: int, *, window_seconds: float = 0.5) -> SeamReport:
    """Compare the step at ``seam`` of ``audio`` ``(channels, samples)`` with its neighbouring steps."""
    if not 1 <= seam < audio.shape[1]:
        raise ValueError(f"seam {seam} is outside the audio (1..{audio.shape[1] - 1})")
    window = max(2, round(window_seconds * rate))
    first = max(0, seam - 1 - window)
    local = audio[:, first : seam + window + 1].astype(np.float64)
    steps = np.abs(np.diff(local, axis=1))  # steps[:, k] = |x[first+k+1] - x[first+k]|
    at = seam - 1 - first
    jump = float(steps[:, at].max())
    before = steps[:, :at]
    after = steps[:, at + 1 :]
    fade = after[:, : max(1, round(SEAM_CROSSFADE * rate))]
    around = np.concatenate([before, after], axis=1)
    return SeamReport(
        seam=seam,
        jump=jump,
        p99_before=float(np.percentile(before, 99)) if before.size else 0.0,
        p99_around=float(np.percentile(around, 99)) if around.size else 0.0,
        max_step_crossfade=float(fade.max()) if fade.size else 0.0,
    )
