"""Synthetic stories for tests: plans (``make_story``) and story folders with rendered event WAVs.

Other test files reuse these; nothing here needs a model. Event audio is deterministic per event seed:

* ``noise``: pink-ish noise in bursts over a quiet bed (broadband, like rain or a crowd);
* ``tones``: a few sines with sharp decaying clicks and an ``fs/4`` component whose true peak sits ~3 dB above
  its sample peak, so a true-peak limiter has real work;
* ``silence``: digital silence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from audiostory_cli.app.export import event_spans
from audiostory_cli.story.folder import StoryFolder
from audiostory_cli.story.plan import Event, RenderSettings, Story

Kind = Literal["noise", "tones", "silence"]
STORY_RATE = 44_100


def make_story(
    durations: Sequence[float],
    *,
    gaps: Sequence[float] | None = None,
    crossfade: float = 1.5,
    crossfades: dict[int, float] | None = None,
    stems: Sequence[str] | None = None,
    tail: float = 0.0,
    preset: str = "broadcast",
    prompt: str = "a short synthetic story for tests",
) -> Story:
    """A valid plan: events back to back from 0 (``gaps[i]`` seconds of silence before event ``i+1``).

    ``crossfades`` maps an event index to its boundary crossfade override; ``tail`` adds silence after the last
    event. Statuses are "planned"; see ``make_rendered_story`` for rendered folders.
    """
    gaps = list(gaps) if gaps is not None else [0.0] * len(durations)
    if len(gaps) != len(durations):
        raise ValueError("gaps needs one value per event")
    events: list[Event] = []
    cursor = 0.0
    for position, (duration, gap) in enumerate(zip(durations, gaps, strict=True), start=1):
        cursor = round(cursor + gap, 6)
        events.append(
            Event(
                index=position,
                start=cursor,
                duration=float(duration),
                caption=f"synthetic event number {position}",
                seed=100 + position,
                stem=stems[position - 1] if stems else "fx",
                crossfade=(crossfades or {}).get(position),
            )
        )
        cursor = round(cursor + duration, 6)
    story = Story(
        prompt=prompt,
        total_duration=round(cursor + tail, 6),
        events=events,
        preset=preset,
        settings=RenderSettings(crossfade=crossfade),
        sample_rate=STORY_RATE,
    )
    story.validate()
    return story


def synth_event(
    kind: Kind, frames: int, rate: int, seed: int, *, channels: int = 2, level_db: float = -18.0
) -> np.ndarray:
    """Deterministic event audio ``(channels, frames)`` float32 (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros((channels, frames), dtype=np.float32)
    t = np.arange(frames) / rate
    if kind == "noise":
        audio = _pink(rng, channels, frames)
        envelope = 0.25 + np.zeros(frames)
        for onset in rng.uniform(0, frames / rate, size=max(1, int(frames / rate * 2))):
            envelope += np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(3, 12)), 0.0)
        audio *= envelope
    elif kind == "tones":
        audio = np.zeros((channels, frames))
        for _ in range(3):
            freq, phase = rng.uniform(150, 2500), rng.uniform(0, 2 * np.pi)
            audio += rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * freq * t + phase)
        audio += 0.4 * np.sin(2 * np.pi * (rate / 4) * t + np.pi / 4)  # inter-sample peaks
        for onset in rng.uniform(0, frames / rate, size=max(1, int(frames / rate * 3))):
            click = np.where(t >= onset, np.exp(-(t - onset) * 80.0), 0.0)
            audio += 3.0 * click * np.sign(np.sin(2 * np.pi * 3000 * t))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    rms = float(np.sqrt(np.mean(audio**2))) or 1.0
    return (audio * (10 ** (level_db / 20) / rms)).astype(np.float32)


def make_rendered_story(
    tmp_path: Path,
    durations: Sequence[float],
    *,
    kind: Kind | Sequence[Kind] = "noise",
    channels: int = 2,
    level_db: float = -18.0,
    name: str = "story",
    **story_kwargs: object,
) -> StoryFolder:
    """A story folder under ``tmp_path/name`` with every event rendered: WAVs of the exact planned length
    (duration + crossfade tail) at 44.1 kHz float32, statuses "rendered", files and render hashes set."""
    story = make_story(durations, **story_kwargs)  # type: ignore[arg-type]
    folder = StoryFolder(tmp_path / name)
    folder.root.mkdir(parents=True, exist_ok=True)
    kinds = [kind] * len(durations) if isinstance(kind, str) else list(kind)
    for event, span, event_kind in zip(story.events, event_spans(story, story.sample_rate), kinds, strict=True):
        audio = synth_event(
            event_kind, span.render_frames, story.sample_rate, event.seed, channels=channels, level_db=level_db
        )
        write_event(folder, story, event, audio)
    folder.save(story)
    return folder


def write_event(folder: StoryFolder, story: Story, event: Event, audio: np.ndarray, rate: int | None = None) -> Path:
    """Write ``audio`` (channels, frames) as the render of ``event`` and mark it rendered (story not saved)."""
    event.file = folder.event_file_name(event)
    event.status = "rendered"
    event.render_hash = story.render_hash(event)
    path = folder.resolve(event.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.ascontiguousarray(audio.T), rate or story.sample_rate, subtype="FLOAT", format="WAV")
    return path


def _pink(rng: np.random.Generator, channels: int, frames: int) -> np.ndarray:
    white = rng.standard_normal((channels, frames))
    spectrum = np.fft.rfft(white, axis=-1)
    scale = 1.0 / np.sqrt(np.maximum(np.arange(spectrum.shape[-1]), 1.0))
    return np.fft.irfft(spectrum * scale, n=frames, axis=-1)
