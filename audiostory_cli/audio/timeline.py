"""Placing event renders on the story timeline: sample positions, crossfades, pieces and mixing.

The convention (sample-exact at any rate ``sr``):

* event ``i`` owns ``[s_i, e_i)`` with ``s_i = round(start_i·sr)`` and ``e_i = round(end_i·sr)``; when the next
  event starts where this one ends (the caller says so: ``EventTiming.end`` is then the next start, see
  ``export.event_spans``), ``e_i = s_{i+1}`` so contiguous events abut exactly;
* ``x_i = round(crossfade_i·sr)`` is the boundary crossfade (``Story.crossfade_after``); the raw render holds
  ``e_i - s_i + x_i`` frames (duration plus tail);
* on ``[e_i, e_i + x_i)`` event ``i``'s tail fades out with ``cos(π/2·t)`` while event ``i+1``'s head (its first
  ``x_i`` frames, already at its planned start) fades in with ``sin(π/2·t)``, ``t = (k + ½)/x_i``: equal power,
  and nothing moves, because the fade lies *after* the boundary, inside the next event's span; with the story's
  ``crossfade_shape = "linear"`` (the official join) the fades are ``1 − t`` and ``t`` (equal gain) instead;
* an edge without a crossfade (story start, before or after a gap, story end) gets a 5 ms raised-cosine
  de-click inside the event's own span; gaps stay digital silence;
* the mix is ``round(total_duration·sr)`` frames long.

This module takes plain data (``EventTiming``), not the story plan; ``export.event_spans`` converts a plan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .io import resample, resample_margin

FloatArray = npt.NDArray[np.float32]
DECLICK_SECONDS = 0.005


@dataclass(frozen=True)
class EventSpan:
    """Where one event sits on the timeline, in samples at one rate."""

    index: int
    start: int  # first timeline sample of the event
    end: int  # one past its last sample (its tail continues after this)
    fade_in: int  # crossfade frames at the start (shared with the previous event's tail)
    fade_out: int  # crossfade tail frames after ``end``
    keep_head: bool = False  # the user's own source audio: its first samples are delivered untouched
    fade_shape: str = "equal-power"  # or "linear" (the official join), the story's settings.crossfade_shape

    @property
    def render_frames(self) -> int:
        """Frames the raw render must hold: duration plus crossfade tail."""
        return self.end - self.start + self.fade_out


@dataclass(frozen=True)
class Piece:
    """Audio ``(channels, frames)`` placed with its first frame at timeline sample ``offset`` (may be < 0)."""

    offset: int
    audio: FloatArray

    @property
    def stop(self) -> int:
        return self.offset + int(self.audio.shape[1])


@dataclass(frozen=True)
class EventTiming:
    """One event's place on the timeline in seconds: what ``place_events`` needs of a plan."""

    index: int
    start: float
    end: float  # the next event's start when the two are contiguous, so they abut exactly
    crossfade: float  # seconds of tail after ``end`` shared with the next event (0: none)
    keep_head: bool = False  # the user's own source audio


def frames_at(seconds: float, rate: int) -> int:
    """Timeline length in samples of ``seconds`` at ``rate``."""
    return int(round(seconds * rate))


def place_events(timings: Sequence[EventTiming], rate: int, fade_shape: str = "equal-power") -> list[EventSpan]:
    """Sample positions of every event at ``rate`` (the convention in the module docstring)."""
    spans: list[EventSpan] = []
    previous_tail = 0
    for timing in timings:
        tail = round(timing.crossfade * rate)
        spans.append(
            EventSpan(
                timing.index,
                round(timing.start * rate),
                round(timing.end * rate),
                previous_tail,
                tail,
                keep_head=timing.keep_head,
                fade_shape=fade_shape,
            )
        )
        previous_tail = tail
    return spans


def equal_power_fade(frames: int) -> tuple[FloatArray, FloatArray]:
    """``(fade_out, fade_in)`` of ``frames`` samples: ``cos`` and ``sin`` of ``π/2·(k+½)/frames``; squares sum to 1."""
    t = (np.arange(frames, dtype=np.float64) + 0.5) / max(frames, 1)
    return np.cos(0.5 * np.pi * t).astype(np.float32), np.sin(0.5 * np.pi * t).astype(np.float32)


def linear_fade(frames: int) -> tuple[FloatArray, FloatArray]:
    """``(fade_out, fade_in)`` of ``frames`` samples: ``1 − t`` and ``t``, ``t = (k+½)/frames``; they sum to 1
    (the official join's equal-gain ``linspace`` fades, sampled at the same midpoints as the equal-power ones)."""
    t = (np.arange(frames, dtype=np.float64) + 0.5) / max(frames, 1)
    return (1.0 - t).astype(np.float32), t.astype(np.float32)


def crossfade_curves(frames: int, shape: str) -> tuple[FloatArray, FloatArray]:
    if shape == "linear":
        return linear_fade(frames)
    if shape == "equal-power":
        return equal_power_fade(frames)
    raise ValueError(f"crossfade shape {shape!r} must be 'linear' or 'equal-power'")


def declick_ramp(frames: int) -> FloatArray:
    """A raised-cosine fade-in of ``frames`` samples (reverse it for a fade-out)."""
    t = (np.arange(frames, dtype=np.float64) + 0.5) / max(frames, 1)
    return (np.sin(0.5 * np.pi * t) ** 2).astype(np.float32)


def shape_event(raw: FloatArray, span: EventSpan, rate: int) -> Piece:
    """Apply the crossfades and de-clicks to a raw render already trimmed to ``span.render_frames``."""
    if raw.shape[1] != span.render_frames:
        raise ValueError(f"event {span.index}: render has {raw.shape[1]} frames, span needs {span.render_frames}")
    audio = np.array(raw, dtype=np.float32, copy=True)
    own = span.end - span.start
    declick = min(max(1, round(DECLICK_SECONDS * rate)), max(1, own // 2))
    if span.fade_in:
        audio[:, : span.fade_in] *= crossfade_curves(span.fade_in, span.fade_shape)[1]
    elif not span.keep_head:
        audio[:, :declick] *= declick_ramp(declick)
    if span.fade_out:
        audio[:, own:] *= crossfade_curves(span.fade_out, span.fade_shape)[0]
    else:
        audio[:, own - declick : own] *= declick_ramp(declick)[::-1]
    return Piece(span.start, audio)


def resample_piece(piece: Piece, from_rate: int, to_rate: int) -> Piece:
    """Resample a piece so that it lands exactly where resampling the whole timeline would put it.

    The piece is zero-padded to start and stop on a multiple of ``p`` input frames (``p/q`` the reduced rate
    ratio) with room for the whole filter response, so input frame ``a·p`` maps to output frame ``a·q``.
    """
    if from_rate == to_rate:
        return piece
    gcd = math.gcd(from_rate, to_rate)
    p, q = from_rate // gcd, to_rate // gcd
    margin = resample_margin(from_rate, to_rate)
    first = ((piece.offset - margin) // p) * p
    last = -((-(piece.stop + margin)) // p) * p
    padded = np.zeros((piece.audio.shape[0], last - first), dtype=np.float32)
    padded[:, piece.offset - first : piece.stop - first] = piece.audio
    out = resample(padded, from_rate, to_rate)
    return Piece((first // p) * q, out)


def clip_piece(piece: Piece, frames: int) -> Piece:
    """The part of ``piece`` inside the timeline ``[0, frames)``."""
    lo, hi = max(piece.offset, 0), min(piece.stop, frames)
    if hi <= lo:
        return Piece(lo, np.zeros((piece.audio.shape[0], 0), dtype=np.float32))
    return Piece(lo, piece.audio[:, lo - piece.offset : hi - piece.offset])


def mix_pieces(pieces: list[Piece], frames: int, channels: int = 2) -> FloatArray:
    """Sum pieces (already clipped to the timeline) into a ``(channels, frames)`` buffer."""
    out = np.zeros((channels, frames), dtype=np.float32)
    for piece in pieces:
        out[:, piece.offset : piece.stop] += piece.audio
    return out


def on_timeline(piece: Piece, frames: int, channels: int = 2) -> FloatArray:
    """One piece as a full-length ``(channels, frames)`` track (a stem)."""
    return mix_pieces([piece], frames, channels)
