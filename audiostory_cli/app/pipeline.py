"""From prompt to delivered story: plan, render (only what is missing or stale), regenerate chosen events.

The CLI commands ``tell``, ``render``, ``regen`` and ``batch`` are thin shells over these functions; ``tell()``
is the whole of ``audiostory tell --yes`` (``check_tell_inputs``, ``start_story``, ``deliver_story``).
"""

from __future__ import annotations

import contextlib
import math
import secrets
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import CANVAS_FIXED, CANVASES
from ..errors import InputError, StoryError, UsageError
from ..progress import ProgressFn, no_progress
from ..story.folder import StoryFolder
from ..story.lock import holds_story_lock
from ..story.plan import FADE_SHAPES, MAX_TOTAL_SECONDS, TIME_EPS, Event, GeneratedPlan, RenderSettings, Story

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..audio.io import FloatArray
    from ..model import AudioStoryModel
    from ..runtime import Runtime
    from .export import ExportOptions, ExportResult

DEFAULT_MODEL = "audiostory-3b"
MIN_TOTAL_SECONDS = 1.0
MAX_PROMPT_CHARS = 4000
MAX_SEED = 2**31 - 1
TAIL_SECONDS = 3.0  # a continued story: input tail encoded as the first new event's latent prefix
NEW_PART_FILE = "continuation.wav"  # a continued story: the delivered mix from the seam on


@dataclass(frozen=True)
class PlanOptions:
    """What shapes the plan and the render settings stored with it."""

    total_duration: float
    preset: str = "broadcast"
    style: str | None = None
    seed: int | None = None  # base seed: event i gets seed + i - 1; None draws one
    steps: int | None = None  # None: the style's, else 50
    guidance: float | None = None  # None: the style's, else 4.0
    crossfade: float | None = None  # None: the style's, else 1.5 s
    temperature: float = 0.0  # 0 = greedy planning, like the official inference
    top_p: float = 1.0
    canvas: str | None = None  # None: the model's (fixed for the official checkpoint); "sized" is an opt-in
    repetition_penalty: float | None = None  # None: the model's generation config (1.05 for the released model)
    crossfade_shape: str | None = None  # None: the model's join (linear for the official checkpoint)


def check_prompt(prompt: str) -> str:
    """The prompt as planned and stored: control characters (ESC, BEL, NUL, CR...) become spaces, so they never
    reach story.json, cue sheets or a terminal; tabs, newlines, accents and emoji are kept."""
    text = "".join(" " if ch not in "\t\n" and unicodedata.category(ch) == "Cc" else ch for ch in prompt).strip()
    if not text:
        raise UsageError('the prompt is empty; describe the story, e.g. "rain on a tin roof, then thunder"')
    if len(text) > MAX_PROMPT_CHARS:
        raise UsageError(f"the prompt is {len(text)} characters; at most {MAX_PROMPT_CHARS} (summarise the story)")
    return text


def check_plan_options(options: PlanOptions) -> None:
    """Validate early, naming the flag and the allowed range; never clamp silently."""
    d = options.total_duration
    if not (math.isfinite(d) and MIN_TOTAL_SECONDS <= d <= MAX_TOTAL_SECONDS):
        raise UsageError(
            f"--duration {d:g} is out of range; use {MIN_TOTAL_SECONDS:g} to {MAX_TOTAL_SECONDS:g} seconds"
        )
    if options.seed is not None and not 0 <= options.seed <= MAX_SEED:
        raise UsageError(f"--seed {options.seed} is out of range; use 0 to {MAX_SEED}")
    if options.steps is not None and not 1 <= options.steps <= 1000:
        raise UsageError(f"--steps {options.steps} is out of range; use 1 to 1000")
    if options.guidance is not None and not (math.isfinite(options.guidance) and 0 <= options.guidance <= 50):
        raise UsageError(f"--guidance {options.guidance:g} is out of range; use 0 to 50 (1 disables guidance)")
    if options.crossfade is not None and not (math.isfinite(options.crossfade) and 0 <= options.crossfade <= 10):
        raise UsageError(f"--crossfade {options.crossfade:g} is out of range; use 0 to 10 seconds")
    if not (math.isfinite(options.temperature) and options.temperature >= 0):
        raise UsageError(f"--temperature {options.temperature:g} must be 0 (greedy) or positive")
    if not 0 < options.top_p <= 1:
        raise UsageError(f"--top-p {options.top_p:g} must be in (0, 1]")
    penalty = options.repetition_penalty
    if penalty is not None and not (math.isfinite(penalty) and 0 < penalty <= 10):
        raise UsageError(f"--repetition-penalty {penalty:g} is out of range; use a number in (0, 10] (1 = none)")
    if options.crossfade_shape is not None and options.crossfade_shape not in FADE_SHAPES:
        raise UsageError(f"--crossfade-shape {options.crossfade_shape!r} must be one of {', '.join(FADE_SHAPES)}")
    if options.canvas is not None and options.canvas not in CANVASES:
        raise UsageError(f"--canvas {options.canvas!r} must be one of {', '.join(CANVASES)}")


def check_preset(name: str) -> None:
    from ..audio.presets import load_preset

    load_preset(name)


def check_tell_inputs(prompt: str, options: PlanOptions, *, cues: Sequence[str], model: str) -> tuple[str, ...]:
    """Every cheap check of a ``tell`` (no model loaded, nothing written): prompt, ranges, preset, style, cue
    sheets and the model name. Returns the validated cue sheet names."""
    from ..audio.cues import check_cue_names
    from ..weights.registry import resolve_model_ref

    check_prompt(prompt)
    check_plan_options(options)
    check_preset(options.preset)
    if options.style:
        from ..styles import get_style

        get_style(options.style)
    cue_names = check_cue_names(tuple(cues))
    resolve_model_ref(model)
    return cue_names


@contextlib.contextmanager
def removed_if_left_empty(root: Path, created: bool) -> Iterator[None]:
    """A folder this command created (``created``) is removed again if the block fails before anything is in it.

    Run it under the folder's lock, so its lock file goes too: a command waiting for it then finds no folder.
    """
    try:
        yield
    except BaseException:
        from ..story.lock import LOCK_FILE

        if created and Path(root).is_dir() and not StoryFolder(root).content():
            (Path(root) / LOCK_FILE).unlink(missing_ok=True)
            Path(root).rmdir()
        raise


def start_story(
    folder: StoryFolder,
    prompt: str,
    options: PlanOptions,
    model: AudioStoryModel,
    *,
    progress: ProgressFn = no_progress,
) -> Story:
    """Plan a new story into ``folder`` (already prepared with ``StoryFolder.prepare_new``) and save story.json."""
    story = plan_story(prompt, options, model, progress=progress)
    folder.save(story, keep_previous=True)
    return story


@dataclass(frozen=True)
class Delivery:
    """What ``deliver_story`` did: the events rendered now, and the exported mix, stems, cues and QC."""

    story: Story
    render: RenderReport
    export: ExportResult


def deliver_story(
    folder: StoryFolder,
    model: AudioStoryModel | None,
    runtime: Runtime | None,
    *,
    export_options: ExportOptions,
    progress: ProgressFn = no_progress,
    offload: bool = False,
) -> Delivery:
    """Render what is missing or stale, then export (``audiostory render``); a continued story's new part too.

    ``model`` None: the caller found nothing to render, so only delivery runs (no model loaded).
    """
    from .export import export_story

    if model is None or runtime is None:
        report = RenderReport(rendered=[], skipped=[e.index for e in folder.load().events])
    else:
        report = render_story(folder, model, runtime, progress=progress, offload=offload)
    result = export_story(folder, export_options, progress)
    story = folder.load()
    if story.source and (folder.root / NEW_PART_FILE).is_file():
        write_new_part(folder)  # keep the new-part file in step with the refreshed mix
    return Delivery(story=story, render=report, export=result)


def tell(
    prompt: str,
    options: PlanOptions,
    folder: StoryFolder,
    model: AudioStoryModel,
    runtime: Runtime,
    *,
    export_options: ExportOptions,
    progress: ProgressFn = no_progress,
    offload: bool = False,
    force: bool = False,
) -> Delivery:
    """``audiostory tell --yes`` without the terminal: a new story folder planned, rendered and delivered.

    The folder must be missing or empty (or hold a story, with ``force``); one that this call creates is removed
    again if planning fails before anything is written. An interrupted render resumes with ``deliver_story``.
    """
    folder.check_new(force=force)  # before the lock: no lock file is left in a folder that is not ours
    created = not folder.root.exists()
    with folder.locked("tell", create=True), removed_if_left_empty(folder.root, created):
        folder.prepare_new(force=force)  # again under the lock: another tell may have filled it meanwhile
        start_story(folder, prompt, options, model, progress=progress)
        return deliver_story(folder, model, runtime, export_options=export_options, progress=progress, offload=offload)


def render_settings(
    options: PlanOptions, model_canvas: str = CANVAS_FIXED, model_join: tuple[float, str] = (1.5, "equal-power")
) -> RenderSettings:
    """The settings stored with a new plan: flags, else the style's, else the model's (canvas and join: the
    official ones for the official checkpoint), else the defaults."""
    from ..styles import get_style

    style = get_style(options.style) if options.style else None
    join_seconds, join_shape = model_join
    return RenderSettings(
        steps=options.steps if options.steps is not None else (style.steps if style else 50),
        guidance=options.guidance if options.guidance is not None else (style.guidance if style else 4.0),
        crossfade=options.crossfade if options.crossfade is not None else (style.crossfade if style else join_seconds),
        canvas=options.canvas or model_canvas,
        crossfade_shape=options.crossfade_shape or join_shape,
    )


def plan_story(
    prompt: str,
    options: PlanOptions,
    model: AudioStoryModel,
    *,
    progress: ProgressFn = no_progress,
    instruction: str | None = None,
    audio_embeds: Any = None,
) -> Story:
    """1. plan: the reasoner writes the storyline and timed events; seeds and settings make it a Story.

    ``instruction`` replaces the one built from the prompt and the style's lead (``continue`` passes its own);
    ``audio_embeds`` (T, H) are an input audio's resampler tokens for the prompt (see ``continuation``).
    """
    from ..planner.api import demo_sampling
    from ..planner.reasoner import SamplingOptions
    from ..styles import get_style

    prompt = check_prompt(prompt)
    check_plan_options(options)
    settings = render_settings(options, model.canvas, model.join)
    lead = get_style(options.style).lead if options.style else None
    planner = model.planner()
    penalty = model.repetition_penalty if options.repetition_penalty is None else options.repetition_penalty
    sampling = SamplingOptions(
        temperature=options.temperature, top_p=options.top_p, seed=options.seed or 0, repetition_penalty=penalty
    )
    processors: tuple[Any, ...] = ()
    if model.name == "tiny-random" or model.extra.get("random_weights"):  # steer random weights with a script
        sampling, script = demo_sampling(planner, prompt, options.total_duration)
        sampling = replace(sampling, repetition_penalty=penalty)
        processors = (script,)
    if instruction is None and audio_embeds is None:
        output = planner.plan(
            prompt, options.total_duration, lead=lead, sampling=sampling, progress=progress, processors=processors
        )
    else:
        from ..planner.prompt import build_instruction

        output = planner.plan_instruction(
            instruction or build_instruction(prompt, options.total_duration, lead),
            options.total_duration,
            sampling=sampling,
            progress=progress,
            processors=processors,
            audio_embeds=audio_embeds,
        )
    base_seed = options.seed if options.seed is not None else secrets.randbelow(MAX_SEED - 1000)
    events: list[Event] = []
    cursor = 0.0
    for index, planned in enumerate(output.events, start=1):
        events.append(
            Event(
                index=index,
                start=round(cursor, 6),
                duration=round(planned.duration, 6),
                caption=planned.caption,
                story_detail=planned.story_detail,
                seed=(base_seed + index - 1) % (MAX_SEED + 1),
            )
        )
        cursor += planned.duration
    story = Story(
        prompt=prompt,
        total_duration=options.total_duration,
        events=events,
        model=model.name,
        model_revision=model.revision,
        preset=options.preset,
        style=options.style,
        instruction=output.instruction,
        reasoning=output.reasoning,
        settings=settings,
        sample_rate=model.sample_rate,
    )
    _fit_last_event(story)
    if output.event_blocks and len(output.event_blocks) == len(events):  # render conditions on these tokens
        story.generated = GeneratedPlan(
            token_ids=list(output.token_ids),
            event_blocks=list(output.event_blocks),
            instruction=story.instruction,
            reasoning=story.reasoning,
            events=[GeneratedPlan.fingerprint(e) for e in story.events],
        )
    story.validate()
    return story


def _fit_last_event(story: Story) -> None:
    """Rounding can leave the last end a hair past the total; trim that hair (never more than a millisecond)."""
    last = story.events[-1]
    overshoot = last.end - story.total_duration
    if 0 < overshoot < 1e-3:
        last.duration = round(story.total_duration - last.start, 6)


@dataclass(frozen=True)
class RenderReport:
    rendered: list[int]
    skipped: list[int]


@holds_story_lock("render")
def render_story(
    folder: StoryFolder,
    model: AudioStoryModel,
    runtime: Runtime,
    *,
    progress: ProgressFn = no_progress,
    offload: bool = False,
    max_batch: int | None = None,
) -> RenderReport:
    """Render every event that is missing or stale, in DiT batches; story.json is saved after each event.

    An interruption keeps every finished event; running again renders only what is still missing.
    A continued story (event 0 = the input audio) renders the event at the seam with the input's tail as a
    latent prefix, and plans' audio tokens come from the input when the model can listen (``continuation``).
    """
    import torch

    from ..generator.render import EventCondition, render_latents
    from ..generator.text_encoder import unconditional_tokens

    story = folder.load()
    _check_model_matches(story, model)
    stale = [event for event in story.events if folder.needs_render(story, event)]
    skipped = [event.index for event in story.events if event not in stale]
    if not stale:
        return RenderReport(rendered=[], skipped=skipped)
    for event in stale:  # a symlinked events/ pointing elsewhere is refused before any rendering
        folder.resolve(folder.event_file_name(event))
    source = _source_conditioning(folder, story, model)
    # 2. bridge: one teacher-forced pass over the whole (possibly edited) plan
    with torch.inference_mode():
        tokens = model.planner().bridge_story(story, progress=progress, audio_embeds=source.embeds if source else None)
        if offload:
            model.offload_llm()
        uncond = unconditional_tokens(model.text_encoder, model.dims.bridge.num_semantic_tokens)
    geometry = model.codec.geometry
    batch = max_batch or len(stale)
    rendered: list[int] = []
    for start in range(0, len(stale), batch):
        chunk = stale[start : start + batch]
        conditions = [
            EventCondition(
                tokens=tokens[event.index - 1],
                seconds=story.render_length(event),
                seed=event.seed,
                prefix=source.prefix_for(event) if source else None,
            )
            for event in chunk
        ]
        # 3. sample: all events of the chunk (× CFG) through the DiT together
        with torch.inference_mode():
            latents = render_latents(
                model.dit,
                conditions,
                steps=story.settings.steps,
                guidance=story.settings.guidance,
                uncond=uncond,
                runtime=runtime,
                progress=progress,
                geometry=geometry,
                canvas=story.settings.canvas,
            )
        for event, condition, event_latents in zip(chunk, conditions, latents, strict=True):
            # 4. decode (a prefix gives left context, then is dropped), write the event and the plan
            skip = 0 if condition.prefix is None else int(condition.prefix.shape[0])
            audio = _decode(model, event_latents, geometry.samples(story.render_length(event)), progress, skip)
            _store_event(folder, story, event, audio)
            rendered.append(event.index)
            progress("events", len(rendered), len(stale))
    return RenderReport(rendered=rendered, skipped=skipped)


def _check_model_matches(story: Story, model: AudioStoryModel) -> None:
    if story.sample_rate != model.sample_rate:
        raise InputError(
            f"the story was planned for {story.sample_rate} Hz renders but model {model.name!r} renders at "
            f"{model.sample_rate} Hz; render it with --model {story.model}"
        )


def _source_conditioning(folder: StoryFolder, story: Story, model: AudioStoryModel) -> Any:
    """For a continued story: the input's tail latents and audio tokens (``None`` for an ordinary story)."""
    if story.first_index != 0:
        return None
    return source_conditioning(folder, story, model)


def _decode(
    model: AudioStoryModel, latents: torch.Tensor, num_samples: int, progress: ProgressFn, skip_frames: int = 0
) -> np.ndarray:
    import torch

    with torch.inference_mode():
        audio = model.codec.decode(latents, num_samples=num_samples, skip_frames=skip_frames, progress=progress)
    return audio.float().cpu().numpy()


def _store_event(folder: StoryFolder, story: Story, event: Event, audio: np.ndarray) -> None:
    """Write the event's audio atomically; an earlier render of it becomes a numbered take, never lost.

    The take is listed in story.json before the earlier render is moved to it, so a process killed at any point
    leaves every render listed: a listed take still missing while ``event.file`` exists is a move that a killed
    render recorded but did not make, and is made now.
    """
    from ..audio.io import write_audio

    name = folder.event_file_name(event)
    target = folder.resolve(name)
    if event.file:
        old = folder.resolve(event.file)
        if old.exists():
            if not event.takes or folder.resolve(event.takes[-1]).exists():
                event.takes.append(_next_take_name(folder, event, event.file))
                folder.save(story)
            old.rename(folder.resolve(event.takes[-1]))
    write_audio(target, audio, story.sample_rate, "FLOAT")
    event.file = name
    event.status = "rendered"
    event.render_hash = story.render_hash(event)
    folder.save(story)


def _next_take_name(folder: StoryFolder, event: Event, old_file: str) -> str:
    """``events/02-thunder-rolls.take1.wav``: named after the render it keeps (its caption), not the new one."""
    stem = old_file.removesuffix(".wav").rsplit(".s", 1)[0]
    number = len(event.takes) + 1
    while folder.resolve(f"{stem}.take{number}.wav").exists():
        number += 1
    return f"{stem}.take{number}.wav"


@holds_story_lock("regen")
def regen_events(
    folder: StoryFolder,
    indices: Sequence[int],
    *,
    seed: int | None = None,
    new_seed: bool = False,
    caption: str | None = None,
    duration: float | None = None,
) -> Story:
    """Change the chosen events (seed, caption, duration) and mark them for re-rendering; keeps the old plan.

    With no change given, each chosen event gets a new random seed: a new take of the same idea.
    """
    story = folder.load()
    if not indices:
        raise UsageError("name at least one event to regenerate, e.g. `audiostory regen DIR 3`")
    for index in indices:
        story.event(index)  # raises with the valid range
        if story.event(index).status == "source":
            raise InputError(f"event {index} is the input audio of a continuation; it is not rendered")
    if seed is not None and new_seed:
        raise UsageError("give either --seed N or --new-seed, not both")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed {seed} is out of range; use 0 to {MAX_SEED}")
    if caption is not None and not caption.strip():
        raise UsageError("--caption is empty; describe the sound")
    new_story = replace(story, events=[replace(e, takes=list(e.takes)) for e in story.events])
    for index in indices:
        event = new_story.event(index)
        if seed is not None:
            event.seed = seed
        elif new_seed or (caption is None and duration is None):
            event.seed = secrets.randbelow(MAX_SEED)
        if caption is not None:
            event.caption = caption.strip()
        if duration is not None:
            event.duration = duration
        event.status = "planned"
    if duration is not None:
        from ..story.edit import reflow_keeping_gaps

        reflow_keeping_gaps(new_story, story)
    folder.save(new_story, keep_previous=True)
    return new_story


def default_out_dir(prompt: str) -> Path:
    from ..story.plan import event_slug

    return Path(event_slug(prompt, max_words=5))


# -- a continued story (``continuation``): its source event's conditioning and the new part -------------


@dataclass(frozen=True)
class SourceConditioning:
    """What the source event gives the render: the first new event's latent prefix, the prompt's audio tokens."""

    continues: int | None  # index of the event that starts at the seam (None: a gap separates them)
    prefix: torch.Tensor | None  # (P, C) latents of the input's tail, aligned to its end
    embeds: torch.Tensor | None  # (T, H) resampler tokens; None when the model cannot listen

    def prefix_for(self, event: Event) -> torch.Tensor | None:
        return self.prefix if event.index == self.continues else None


def source_audio(folder: StoryFolder, story: Story) -> FloatArray:
    """Event 0's audio (the input at the story rate) without its seam tail: ``(2, n0)``."""
    import numpy as np

    from ..audio.io import read_audio
    from .export import event_spans

    event = story.events[0]
    if event.status != "source" or not event.file:
        raise StoryError(f"{folder.root}: event {event.index} is not the source audio of a continuation")
    audio, rate = read_audio(folder.resolve(event.file), what="source audio")
    span = event_spans(story, story.sample_rate)[0]
    frames = span.end - span.start
    if rate != story.sample_rate or audio.shape[1] < frames:
        raise StoryError(
            f"{folder.root}: {event.file} is {audio.shape[1]} samples at {rate} Hz, the plan needs {frames} at "
            f"{story.sample_rate} Hz; run `audiostory continue` again"
        )
    audio = audio[:, :frames]
    return np.repeat(audio, 2, axis=0) if audio.shape[0] == 1 else audio


def source_conditioning(folder: StoryFolder, story: Story, model: AudioStoryModel) -> SourceConditioning:
    """The prefix latents and audio tokens of a continued story's source event."""
    import numpy as np
    import torch

    from .understand import audio_tokens, understanding_gap

    audio = source_audio(folder, story)
    embeds = audio_tokens(model, audio, story.sample_rate) if understanding_gap(model) is None else None
    source = story.events[0]
    following = story.events[1] if len(story.events) > 1 else None
    if following is None or abs(following.start - source.end) > TIME_EPS:
        return SourceConditioning(continues=None, prefix=None, embeds=embeds)
    geometry = model.codec.geometry
    window = model.dims.dit.audio_seq_len
    frames = min(geometry.frames(TAIL_SECONDS), audio.shape[1] // geometry.hop_length, window // 2)
    with torch.inference_mode():
        prefix = model.codec.encode_tail(torch.from_numpy(np.ascontiguousarray(audio)), frames)
    return SourceConditioning(continues=following.index, prefix=prefix, embeds=embeds)


def seam_frame(story: Story, rate: int) -> int:
    """First sample of the continuation at ``rate`` (the timeline's own rounding)."""
    from .export import event_spans

    if story.first_index != 0:
        raise StoryError("this story does not continue an input audio; it has no seam")
    spans = event_spans(story, rate)
    return spans[0].end


def write_new_part(folder: StoryFolder) -> Path:
    """``continuation.wav``: the delivered mix from the seam on (same mastering, rate and bit depth).

    Placed right after the input in a session it plays exactly like mix.wav.
    """
    import soundfile as sf

    from ..audio.io import read_audio, write_audio

    story = folder.load()
    if not folder.mix_path.is_file():
        raise StoryError(f"{folder.root} has no mix.wav yet; render and export it first")
    mix, rate = read_audio(folder.mix_path, what="mix")
    subtype = sf.info(str(folder.mix_path)).subtype
    if subtype not in ("PCM_16", "PCM_24", "FLOAT"):
        raise StoryError(f"{folder.mix_path} is {subtype}; export it again with audiostory")
    start = seam_frame(story, rate)
    return write_audio(folder.root / NEW_PART_FILE, mix[:, start:], rate, subtype)
