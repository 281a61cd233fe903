"""The foley sound bank: a registry of procedural event classes, their parameters and captions.

Every class renders from five parameters in [0, 1] (``EventParams``): intensity, tempo, pitch, texture and
distance. What each means for a class is in ``CLASSES[name].param_help``; each one changes the sound audibly.
Rendering is deterministic: the same class, params, duration, rate and seed give the same samples.

    >>> audio = render_event("rain", EventParams(intensity=0.9, texture=0.9), 4.0, 16_000, seed=1)
    >>> audio.shape
    (2, 64000)
    >>> caption_for("rain", EventParams(intensity=0.9, texture=0.9), np.random.default_rng(0))  # doctest: +SKIP
    'Heavy rain drumming on a metal roof, close by'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft

from ..errors import InputError
from . import synth
from .captions import VOCAB, CaptionVocab, fill
from .params import PARAM_NAMES, EventParams

MIN_SR = 8_000
MAX_SR = 192_000
MAX_SECONDS = 600.0
PEAK_CEILING = 0.9  # peak of a render at intensity 1, distance 0; everything else is quieter

SynthFn = Callable[["EventParams", int, int, np.random.Generator], np.ndarray]


FULL_RANGE: Mapping[str, tuple[float, float]] = {name: (0.0, 1.0) for name in PARAM_NAMES}


@dataclass(frozen=True, eq=False)
class SoundClass:
    """One event class: a dry synthesiser, its caption vocabulary and what its parameters mean."""

    name: str
    title: str  # short noun phrase for story summaries, e.g. "a barking dog"
    synth: SynthFn
    captions: CaptionVocab
    param_help: Mapping[str, str]
    param_ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(FULL_RANGE))

    @property
    def caption_templates(self) -> tuple[str, ...]:
        return self.captions.templates

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.captions.keywords

    def render(self, params: EventParams, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
        """Stereo float32 audio of shape ``(2, round(seconds * sr))``; peak at most ``PEAK_CEILING``."""
        n = _check_length(seconds, sr)
        dry = np.asarray(self.synth(params, n, sr, rng), dtype=np.float64)
        if dry.shape != (n,):
            raise AssertionError(f"synthesiser of {self.name!r} returned shape {dry.shape}, expected ({n},)")
        return spatialise(dry, params, sr, rng)


def _check_length(seconds: float, sr: int) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not MIN_SR <= sr <= MAX_SR:
        raise InputError(f"sample rate {sr!r} is not supported; use an integer in [{MIN_SR}, {MAX_SR}] Hz")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or not 0.0 < seconds <= MAX_SECONDS:
        raise InputError(f"event duration {seconds!r} s is out of range; use a number in (0, {MAX_SECONDS:g}] s")
    n = round(seconds * sr)
    if n < 16:
        raise InputError(f"event duration {seconds!r} s is shorter than 16 samples at {sr} Hz; make it longer")
    return int(n)


def spatialise(dry: np.ndarray, p: EventParams, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Distance (low-pass, room, narrower image), pan, edge fades and level from intensity and distance.

    The dry source is peak-normalised, so level depends on intensity and distance only (plus the room); the
    result never peaks above ``PEAK_CEILING``.
    """
    n = len(dry)
    d = p.distance
    dry_peak = float(np.max(np.abs(dry)))
    if dry_peak <= 1e-12:
        return np.zeros((2, n), dtype=np.float32)
    x = synth.lowpass(dry / dry_peak, sr, 14_000.0 * (3_000.0 / 14_000.0) ** d)
    tau = 0.04 + 0.3 * d  # room decay time constant (RT60 ~ 6.9 tau)
    ir_len = max(2, int(4.0 * tau * sr))
    env = np.exp(-np.arange(ir_len) / (tau * sr))
    predelay = int((0.004 + 0.03 * d) * sr)
    wet_mix = 0.08 + 0.42 * d
    pan = rng.uniform(-0.5, 0.5) * (1.0 - 0.7 * d)
    angle = (pan + 1.0) * math.pi / 4.0
    irs = rng.standard_normal((2, ir_len)) * env
    irs /= np.sqrt(np.sum(irs * irs, axis=1, keepdims=True))
    wet = np.zeros((2, n))
    if predelay < n:  # the room is rendered in float32: inaudible difference, half the FFT cost
        m = n - predelay
        nfft = sp_fft.next_fast_len(m + ir_len - 1, real=True)
        spec = sp_fft.rfft(x[:m].astype(np.float32), nfft) * sp_fft.rfft(irs.astype(np.float32), nfft, axis=1)
        wet[:, predelay:] = sp_fft.irfft(spec, nfft, axis=1)[:, :m]
    gains = np.array([[math.cos(angle)], [math.sin(angle)]])
    out = math.sqrt(2.0) * gains * (1.0 - wet_mix) * x + wet_mix * wet
    out = synth.fade(out, sr, 0.005, 0.01)  # 5 ms in, 10 ms out: no clicks at event edges
    out *= (0.15 + 0.75 * p.intensity) * (1.0 - 0.5 * d)  # the dry source peaks at 1 before the room
    peak = float(np.max(np.abs(out)))
    if peak > PEAK_CEILING:  # a dense room can add up above the source's peak
        out *= PEAK_CEILING / peak
    return out.astype(np.float32)


def _cls(name: str, title: str, fn: SynthFn, **help_: str) -> SoundClass:
    missing = set(PARAM_NAMES) - set(help_) - {"distance"}
    if missing:
        raise AssertionError(f"class {name!r} does not document parameter(s) {sorted(missing)}")
    help_.setdefault("distance", "close and dry (0) to far, dull and roomy (1)")
    return SoundClass(name=name, title=title, synth=fn, captions=VOCAB[name], param_help=help_)


_CLASS_LIST: tuple[SoundClass, ...] = (
    _cls(
        "rain",
        "rain",
        synth.rain,
        intensity="drop density and wash level: drizzle to downpour",
        tempo="gustiness: an even wash (0) to sweeping gusts (1)",
        pitch="drop size: big low drops (0) to fine high droplets (1)",
        texture="surface: soft leaves (0) to a ringing tin roof (1)",
    ),
    _cls(
        "thunder",
        "thunder",
        synth.thunder,
        intensity="force of the claps",
        tempo="clap rate (one every 10 s to every 2 s) and how quickly the rolls follow",
        pitch="rumble cut-off: very deep (0) to grumbling (1)",
        texture="onset: smooth roll (0) to sharp crack (1)",
    ),
    _cls(
        "footsteps",
        "footsteps",
        synth.footsteps,
        intensity="weight of each step",
        tempo="pace: 1.2 (slow walk) to 3.6 (running) steps per second",
        pitch="resonance of heel and floor",
        texture="surface: crunching gravel (0) to hard heels on tiles (1)",
    ),
    _cls(
        "door_slam",
        "a slamming door",
        synth.door_slam,
        intensity="force of the slam (longer boom)",
        tempo="repeats: one slam (0) to a slam every 1.5 s (1)",
        pitch="door size: heavy deep (0) to light hollow (1)",
        texture="solid wood (0) to a loose rattling frame (1)",
    ),
    _cls(
        "knocking",
        "knocking at the door",
        synth.knocking,
        intensity="force of the knocks",
        tempo="knock spacing and how often a new round of knocks comes",
        pitch="door resonance: deep (0) to light (1)",
        texture="muffled fist (0) to crisp knuckle raps (1)",
    ),
    _cls(
        "car_engine",
        "a car engine",
        synth.car_engine,
        intensity="throttle: level and brightness of the firing pulses",
        tempo="revving: steady idle (0) to revving up and down (1)",
        pitch="idle firing rate, 22 to 52 Hz",
        texture="smooth purr (0) to rough, sputtering growl (1)",
    ),
    _cls(
        "tyre_skid",
        "screeching tyres",
        synth.tyre_skid,
        intensity="force of the skid",
        tempo="skid length: one long skid (0) to short repeated skids (1)",
        pitch="squeal pitch, 700 to 2300 Hz",
        texture="gritty scrape (0) to pure rubber squeal (1)",
    ),
    _cls(
        "siren",
        "a siren",
        synth.siren,
        intensity="level",
        tempo="sweep rate: slow wail (0.12 Hz) to fast yelp (3.6 Hz)",
        pitch="centre frequency, 550 to 1200 Hz",
        texture="pure tone (0) to buzzy odd harmonics (1)",
    ),
    _cls(
        "dog_bark",
        "a barking dog",
        synth.dog_bark,
        intensity="force of the barks",
        tempo="bark rate, 0.5 to 3 barks per second",
        pitch="dog size: big deep dog (0) to small yappy dog (1)",
        texture="clean bark (0) to rough growly bark (1)",
    ),
    _cls(
        "birdsong",
        "birdsong",
        synth.birdsong,
        intensity="number of birds (1 to 3) and level",
        tempo="phrase rate (0.2 to 2.2 per second per bird) and note speed",
        pitch="song register, 2.2 to 4.8 kHz",
        texture="long pure whistled notes (0) to rapid warbled trills (1)",
    ),
    _cls(
        "wind",
        "wind",
        synth.wind,
        intensity="wind strength",
        tempo="gusts: slow, shallow swells (0) to fast, deep buffeting (1)",
        pitch="rustle brightness and howl pitch",
        texture="airy rustle (0) to whistling howl (1)",
    ),
    _cls(
        "glass_break",
        "breaking glass",
        synth.glass_break,
        intensity="size of the break: number of shards",
        tempo="how fast the shards fall: lingering (0) to all at once (1)",
        pitch="shard ring: thick glass (0) to thin glass (1)",
        texture="crunching crash (0) to tinkling shards (1)",
    ),
    _cls(
        "bell",
        "a ringing bell",
        synth.bell,
        intensity="strike force",
        tempo="strike interval: 4 s (0) to 0.8 s (1)",
        pitch="bell size: fundamental 220 to 1100 Hz, big bells ring longer",
        texture="pure chime (0) to clanging inharmonic bell (1)",
    ),
    _cls(
        "clock_ticks",
        "a ticking clock",
        synth.clock_ticks,
        intensity="tick level",
        tempo="tick rate, 1 to 4 per second",
        pitch="click resonance, 1.5 to 4.5 kHz",
        texture="dry wooden tick (0) to ringing metallic tick (1)",
    ),
    _cls(
        "crowd_murmur",
        "a murmuring crowd",
        synth.crowd_murmur,
        intensity="level of the chatter",
        tempo="syllable rate: calm (0) to animated (1)",
        pitch="voice register",
        texture="crowd size: 3 voices (0) to 13 voices (1)",
    ),
    _cls(
        "heartbeat",
        "a beating heart",
        synth.heartbeat,
        intensity="force of the beats",
        tempo="heart rate, 50 to 140 beats per minute",
        pitch="thump pitch, 40 to 110 Hz",
        texture="muffled thumps (0) to sharp thumps with valve clicks (1)",
    ),
    _cls(
        "water_stream",
        "a flowing stream",
        synth.water_stream,
        intensity="level of the flow",
        tempo="flow speed: bubble rate 15 to 415 per second, faster surges",
        pitch="bubble size: deep gurgles (0) to high trickles (1)",
        texture="trickling bubbles (0) to rushing water (1)",
    ),
    _cls(
        "phone_ring",
        "a ringing telephone",
        synth.phone_ring,
        intensity="ringer level",
        tempo="ring cadence: long slow rings (0) to short quick rings (1)",
        pitch="ring tone, 400 to 1200 Hz",
        texture="old mechanical bell ringer (0) to electronic tone (1)",
    ),
    _cls(
        "fire_crackle",
        "a crackling fire",
        synth.fire_crackle,
        intensity="size of the fire",
        tempo="crackle rate, 4 to 44 pops per second",
        pitch="pop brightness",
        texture="soft hiss and roar (0) to sharp snapping pops (1)",
    ),
)

CLASSES: Mapping[str, SoundClass] = {c.name: c for c in _CLASS_LIST}
CLASS_NAMES: tuple[str, ...] = tuple(CLASSES)


def get_class(name: str) -> SoundClass:
    try:
        return CLASSES[name]
    except KeyError:
        raise InputError(f"unknown foley class {name!r}; known classes: {', '.join(CLASS_NAMES)}") from None


def sample_params(rng: np.random.Generator, class_name: str | None = None) -> EventParams:
    """Random parameters, uniform within the class's ranges (all of [0, 1] unless the class narrows them)."""
    ranges = get_class(class_name).param_ranges if class_name is not None else FULL_RANGE
    return EventParams(**{name: float(rng.uniform(*ranges[name])) for name in PARAM_NAMES})


def render_event(class_name: str, params: EventParams, seconds: float, sr: int, seed: int) -> np.ndarray:
    """Render one event: float32 stereo ``(2, round(seconds * sr))``, deterministic in all arguments."""
    sound = get_class(class_name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed {seed!r} is invalid; use a non-negative integer")
    return sound.render(params, seconds, sr, np.random.default_rng(int(seed)))


def caption_for(class_name: str, params: EventParams, rng: np.random.Generator) -> str:
    """A caption describing the event and its parameters in words drawn at random from the class's vocabulary."""
    return fill(get_class(class_name).captions, params.to_dict(), rng)
