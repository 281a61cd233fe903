"""DSP primitives and the per-class synthesisers of the foley bank.

Every synthesiser has the signature ``synth(params, n, sr, rng) -> np.ndarray`` and returns a dry mono float64
signal of exactly ``n`` samples at ``sr`` Hz. Level does not matter here: ``bank.spatialise`` normalises the
peak, then applies intensity/distance gain, room, pan and fades. All frequencies are given in Hz and clamped
below Nyquist, so the same class sounds the same at 16 kHz and 44.1 kHz (apart from the extra top octave).

Parameters are all in [0, 1]; what each one means for a class is documented in ``bank.CLASSES[...].param_help``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from .params import EventParams

Rng = np.random.Generator

# ---------------------------------------------------------------------------------------------------------------
# primitives


def fmax(sr: int) -> float:
    """Highest frequency a synthesiser may use at ``sr`` (a margin below Nyquist)."""
    return 0.45 * sr


def clamp_hz(freq: float, sr: int) -> float:
    return float(min(max(freq, 20.0), fmax(sr)))


_BUTTER_Q = {2: (1.0 / math.sqrt(2.0),), 4: (0.5411961, 1.3065630)}


def _biquad(kind: str, freq: float, q: float, sr: int) -> np.ndarray:
    """One second-order section (RBJ cookbook, i.e. bilinear with pre-warping) as an sos row."""
    w0 = 2.0 * math.pi * freq / sr
    cos_w, alpha = math.cos(w0), math.sin(w0) / (2.0 * q)
    if kind == "low":
        b = ((1.0 - cos_w) / 2.0, 1.0 - cos_w, (1.0 - cos_w) / 2.0)
    else:
        b = ((1.0 + cos_w) / 2.0, -(1.0 + cos_w), (1.0 + cos_w) / 2.0)
    a0 = 1.0 + alpha
    return np.array([b[0] / a0, b[1] / a0, b[2] / a0, 1.0, -2.0 * cos_w / a0, (1.0 - alpha) / a0])


def _butter_sos(kind: str, freq: float, order: int, sr: int) -> list[np.ndarray]:
    """Butterworth low/high-pass of order 2 or 4 as sos rows (much faster to design than scipy's zpk path)."""
    return [_biquad(kind, freq, q, sr) for q in _BUTTER_Q[order]]


def lowpass(x: np.ndarray, sr: int, freq: float, order: int = 2) -> np.ndarray:
    if freq >= fmax(sr):
        return x
    return signal.sosfilt(np.stack(_butter_sos("low", max(freq, 20.0), order, sr)), x)


def highpass(x: np.ndarray, sr: int, freq: float, order: int = 2) -> np.ndarray:
    return signal.sosfilt(np.stack(_butter_sos("high", min(max(freq, 10.0), 0.4 * sr), order, sr)), x)


def bandpass(x: np.ndarray, sr: int, lo: float, hi: float, order: int = 2) -> np.ndarray:
    """High-pass at ``lo`` cascaded with low-pass at ``hi`` (each Butterworth of ``order``)."""
    hi = min(hi, fmax(sr))
    lo = max(min(lo, 0.7 * hi), 10.0)
    return signal.sosfilt(np.stack(_butter_sos("high", lo, order, sr) + _butter_sos("low", hi, order, sr)), x)


def unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return x / rms if rms > 1e-12 else x


def smooth_random(rng: Rng, n: int, sr: int, rate_hz: float) -> np.ndarray:
    """A slowly varying random curve in [0, 1] with about ``rate_hz`` changes per second (linear between knots)."""
    step = max(1, int(sr / max(rate_hz, 1e-3)))
    knots = rng.uniform(0.0, 1.0, n // step + 3)
    return np.interp(np.arange(n, dtype=np.float64), np.arange(len(knots), dtype=np.float64) * step, knots)


def decaying_sine(freq: float, tau: float, sr: int, *, length: float | None = None, phase: float = 0.0) -> np.ndarray:
    """``exp(-t / tau) * sin(2 pi freq t + phase)``, computed as the impulse response of a two-pole resonator."""
    length = 6.0 * tau if length is None else length
    m = max(1, int(length * sr))
    w = 2.0 * math.pi * clamp_hz(freq, sr) / sr
    r = math.exp(-1.0 / (tau * sr))
    impulse = np.zeros(m)
    impulse[0] = 1.0
    b = [math.sin(phase), r * math.sin(w - phase)]
    return signal.lfilter(b, [1.0, -2.0 * r * math.cos(w), r * r], impulse)


def noise_burst(rng: Rng, tau: float, sr: int, *, length: float | None = None) -> np.ndarray:
    length = 6.0 * tau if length is None else length
    m = max(1, int(length * sr))
    return rng.standard_normal(m) * np.exp(-np.arange(m) / (tau * sr))


def place(n: int, onsets: np.ndarray, amps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of ``kernel`` copies starting at sample ``onsets`` with gains ``amps``, cut to ``n`` samples."""
    onsets = np.asarray(onsets, dtype=np.int64)
    amps = np.asarray(amps, dtype=np.float64)
    keep = (onsets >= 0) & (onsets < n)
    onsets, amps = onsets[keep], amps[keep]
    out = np.zeros(n)
    if len(kernel) * len(onsets) < 4 * n:  # few events: direct adds are cheaper than an FFT
        for o, a in zip(onsets, amps, strict=True):
            m = min(len(kernel), n - o)
            out[o : o + m] += a * kernel[:m]
        return out
    np.add.at(out, onsets, amps)
    return signal.fftconvolve(out, kernel)[:n]


def poisson_onsets(rng: Rng, n: int, sr: int, rate_hz: float, start: float = 0.0) -> np.ndarray:
    first = int(start * sr)
    span = max(n - first, 1)
    count = int(rng.poisson(max(rate_hz, 0.0) * span / sr))
    return np.sort(rng.integers(first, first + span, count)) if count else np.zeros(0, dtype=np.int64)


def regular_onsets(
    rng: Rng, n: int, sr: int, interval: float, *, start: float, jitter: float = 0.0, max_count: int = 100_000
) -> np.ndarray:
    """Onsets every ``interval`` seconds (relative ``jitter``), the first at ``start`` seconds."""
    times: list[float] = []
    t = start
    while t < n / sr and len(times) < max_count:
        times.append(t)
        t += interval * (1.0 + jitter * rng.standard_normal())
        t = max(t, times[-1] + 0.01)
    return (np.asarray(times) * sr).astype(np.int64)


def leaky_brown(rng: Rng, n: int, sr: int, corner_hz: float = 10.0) -> np.ndarray:
    """Brown (1/f^2) noise above ``corner_hz``, flat below: a leaky integrator of white noise, unit RMS."""
    pole = math.exp(-2.0 * math.pi * corner_hz / sr)
    return unit_rms(signal.lfilter([1.0], [1.0, -pole], rng.standard_normal(n)))


def fade(x: np.ndarray, sr: int, attack: float, release: float) -> np.ndarray:
    """Linear fade-in and fade-out along the last axis."""
    n = x.shape[-1]
    env = np.ones(n)
    a = min(n, max(1, int(attack * sr)))
    r = min(n, max(1, int(release * sr)))
    env[:a] *= np.linspace(0.0, 1.0, a)
    env[n - r :] *= np.linspace(1.0, 0.0, r)
    return x * env


def sweep_phase(freq: np.ndarray, sr: int, phase0: float = 0.0) -> np.ndarray:
    return phase0 + 2.0 * np.pi * np.cumsum(freq) / sr


def clip_start(rng: Rng, n: int, sr: int, lo: float = 0.03, hi: float = 0.25) -> float:
    """Time of the first hit of an impulsive class: early, but never after the clip's first fifth."""
    return float(min(rng.uniform(lo, hi), 0.2 * n / sr))


# ---------------------------------------------------------------------------------------------------------------
# synthesisers


def rain(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    wash = highpass(rng.standard_normal(n), sr, 600.0 + 600.0 * p.pitch)  # a bright hiss, unlike a stream
    wash = lowpass(wash, sr, 4000.0 + 4000.0 * p.texture)
    depth = 0.05 + 0.85 * p.tempo
    gust = (1.0 - depth) + depth * smooth_random(rng, n, sr, 0.2 + 2.0 * p.tempo)
    wash *= gust
    drops = np.zeros(n)
    for _ in range(4):
        freq = (1800.0 + 3200.0 * p.pitch) * 2.0 ** rng.uniform(-0.5, 0.5)
        kernel = decaying_sine(freq, 0.0015 + 0.012 * p.texture, sr)
        kernel[: max(1, int(0.0005 * sr))] += rng.standard_normal(max(1, int(0.0005 * sr)))
        onsets = poisson_onsets(rng, n, sr, (50.0 + 900.0 * p.intensity) / 4.0)
        drops += place(n, onsets, rng.lognormal(0.0, 0.6, len(onsets)), kernel)
    return (0.25 + 0.75 * p.intensity) * unit_rms(wash) + (0.5 + 0.5 * p.texture) * unit_rms(drops) * gust


def thunder(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    out = np.zeros(n)
    starts = regular_onsets(rng, n, sr, 10.0 - 8.0 * p.tempo, start=clip_start(rng, n, sr), jitter=0.15)
    for i0 in starts:
        m = min(n - i0, int(rng.uniform(3.5, 6.5) * sr))
        t = np.arange(m) / sr
        rumble = lowpass(highpass(leaky_brown(rng, m, sr), sr, 25.0), sr, 90.0 + 260.0 * p.pitch, order=4)
        env = np.zeros(m)
        tk = rng.uniform(0.0, 0.08)
        amp = 1.0
        while tk < m / sr:
            width = rng.uniform(0.15, 0.45)
            env += amp * np.exp(-0.5 * ((t - tk) / width) ** 2)
            tk += rng.uniform(0.3, 1.0) * (1.3 - 0.7 * p.tempo)
            amp *= rng.uniform(0.55, 0.9)
        env *= np.exp(-t / rng.uniform(1.5, 3.0))
        crack = bandpass(rng.standard_normal(m), sr, 300.0, 6000.0) * np.exp(-t / (0.03 + 0.12 * p.texture))
        crack_gain = 0.3 + 1.5 * p.texture
        out[i0 : i0 + m] += unit_rms(rumble * env) + crack_gain * unit_rms(crack) * 0.5
    return out


def footsteps(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    kernels = []
    for _ in range(4):
        thump = decaying_sine(
            (70.0 + 90.0 * p.pitch) * rng.uniform(0.9, 1.1), 0.02 + 0.02 * p.intensity, sr, length=0.25
        )
        click_f = (1500.0 + 2500.0 * p.pitch) * rng.uniform(0.85, 1.15)
        hard = decaying_sine(click_f, 0.004, sr, length=0.25) + 0.3 * decaying_sine(
            click_f * 1.7, 0.003, sr, length=0.25
        )
        grains = noise_burst(rng, 0.05, sr, length=0.25) * (rng.uniform(0, 1, int(0.25 * sr)) < 0.25)
        crunch = bandpass(grains, sr, 700.0 + 1200.0 * p.pitch, 6000.0)
        scuff = p.texture * unit_rms(hard) + (1.0 - p.texture) * 1.4 * unit_rms(crunch)
        toe_at = int(rng.uniform(0.06, 0.1) * sr)
        toe = np.zeros_like(scuff)
        toe[toe_at:] = 0.5 * scuff[: len(scuff) - toe_at]
        kernels.append((0.4 + 1.2 * p.intensity) * unit_rms(thump) + scuff + toe)
    onsets = regular_onsets(
        rng, n, sr, 1.0 / (1.2 + 2.4 * p.tempo), start=clip_start(rng, n, sr, 0.03, 0.3), jitter=0.04
    )
    out = np.zeros(n)
    for k, kernel in enumerate(kernels):
        sel = onsets[k::4]
        gain = (1.0 if k % 2 == 0 else 0.8) * rng.uniform(0.8, 1.2, len(sel))
        out += place(n, sel, gain, kernel)
    return out


def door_slam(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    length = 1.2
    t = np.arange(int(length * sr)) / sr
    f = (55.0 + 75.0 * p.pitch) * (1.0 + 0.6 * np.exp(-t / 0.02))
    thud = np.sin(sweep_phase(f, sr)) * np.exp(-t / (0.04 + 0.05 * p.intensity))
    impact = lowpass(noise_burst(rng, 0.012, sr, length=length), sr, 2500.0 + 2500.0 * p.texture)
    chatter = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * rng.uniform(22.0, 40.0) * t))
    rattle = bandpass(rng.standard_normal(len(t)), sr, 700.0 + 600.0 * p.pitch, 4000.0) * chatter
    rattle *= np.exp(-t / (0.06 + 0.35 * p.texture))
    panel = decaying_sine((180.0 + 220.0 * p.pitch) * rng.uniform(0.9, 1.1), 0.035, sr, length=length)
    latch = np.zeros_like(t)  # the latch catching a few tens of milliseconds after the impact
    at = int(rng.uniform(0.035, 0.06) * sr)
    click = decaying_sine(rng.uniform(2200.0, 3500.0), 0.004, sr, length=0.03)
    latch[at : at + len(click)] = click[: len(latch) - at]
    kernel = (
        1.6 * unit_rms(thud)
        + 0.8 * unit_rms(impact)
        + 0.8 * unit_rms(panel)
        + 0.5 * unit_rms(latch)
        + (0.05 + 1.5 * p.texture) * unit_rms(rattle) * 0.6
    )
    onsets = regular_onsets(rng, n, sr, 8.0 - 6.5 * p.tempo, start=clip_start(rng, n, sr), jitter=0.1)
    return place(n, onsets, rng.uniform(0.8, 1.0, len(onsets)), kernel)


def knocking(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    body = 150.0 + 250.0 * p.pitch
    hard = p.texture
    kernel = (
        decaying_sine(body, 0.03 + 0.04 * (1.0 - hard), sr, length=0.2)
        + 0.6 * decaying_sine(body * 2.31, 0.02, sr, length=0.2)
        + (0.2 + 0.6 * hard) * decaying_sine(body * 4.13, 0.01, sr, length=0.2)
    )
    click = bandpass(noise_burst(rng, 0.002, sr, length=0.2), sr, 1000.0, 5000.0)
    kernel = unit_rms(kernel) + (0.2 + 0.8 * hard) * unit_rms(click) * 0.3
    spacing = 0.12 + 0.2 * (1.0 - p.tempo)
    group_gap = 3.5 - 2.0 * p.tempo
    onsets: list[int] = []
    t = clip_start(rng, n, sr)
    while t < n / sr:
        for _ in range(int(rng.integers(2, 5))):
            onsets.append(int(t * sr))
            t += spacing * rng.uniform(0.9, 1.1)
        t += group_gap * rng.uniform(0.8, 1.2)
    arr = np.asarray(onsets, dtype=np.int64)
    return place(n, arr, rng.uniform(0.75, 1.0, len(arr)), kernel)


def car_engine(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    rev = smooth_random(rng, n, sr, 0.2 + 0.9 * p.tempo)
    jitter = unit_rms(lowpass(rng.standard_normal(n), sr, 30.0))
    freq = (22.0 + 30.0 * p.pitch) * (1.0 + (0.05 + 1.3 * p.tempo) * rev) * (1.0 + 0.03 * p.texture * jitter)
    phase = sweep_phase(freq, sr, rng.uniform(0, 2 * np.pi))
    sharp = 3.0 + 12.0 * p.intensity
    pulse = (0.5 + 0.5 * np.cos(phase)) ** sharp
    pulse *= 1.0 + 0.35 * np.cos(0.5 * phase + rng.uniform(0, 2 * np.pi))  # uneven cylinders: half orders
    pulse -= pulse.mean()
    roar = bandpass(rng.standard_normal(n), sr, 150.0, 2500.0) * (0.5 + 0.5 * np.cos(phase)) ** 2
    mix = unit_rms(pulse) + (0.15 + 0.9 * p.texture) * unit_rms(roar)
    return lowpass(mix, sr, 3500.0)


def tyre_skid(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    out = np.zeros(n)
    t_start = clip_start(rng, n, sr)
    while t_start < n / sr - 0.05:
        dur = min(n / sr - t_start, (0.6 + 2.6 * (1.0 - p.tempo)) * rng.uniform(0.8, 1.2))
        m = int(dur * sr)
        t = np.arange(m) / sr
        f0 = (700.0 + 1600.0 * p.pitch) * rng.uniform(0.9, 1.1)
        drift = unit_rms(lowpass(rng.standard_normal(m), sr, 25.0))
        wobble = 0.03 * np.sin(2 * np.pi * rng.uniform(5.0, 11.0) * t) + 0.02 * drift
        freq = f0 * (1.0 - 0.2 * t / max(dur, 1e-3)) * (1.0 + wobble)
        ph = sweep_phase(freq, sr)
        squeal = np.sin(ph)
        for k, amp in ((2, 0.35), (3, 0.12)):
            if k * freq.max() < fmax(sr):
                squeal += amp * np.sin(k * ph)
        scrape = bandpass(rng.standard_normal(m), sr, 300.0, 4500.0) * (0.6 + 0.4 * smooth_random(rng, m, sr, 40.0))
        skid = (0.2 + 0.8 * p.texture) * unit_rms(squeal) + (1.1 - 0.8 * p.texture) * unit_rms(scrape)
        env = (
            np.minimum(1.0, t / 0.04) * np.minimum(1.0, (dur - t) / 0.15) * (0.8 + 0.2 * smooth_random(rng, m, sr, 6.0))
        )
        out[int(t_start * sr) : int(t_start * sr) + m] += skid * env
        t_start += dur + rng.uniform(0.3, 1.5)
    return out


def siren(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    t = np.arange(n) / sr
    rate = 0.12 + 3.5 * p.tempo**2
    centre = 550.0 + 650.0 * p.pitch
    freq = centre * (1.0 + 0.3 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    ph = sweep_phase(freq, sr)
    out = np.sin(ph)
    for k in (3, 5, 7, 9):
        if k * centre * 1.3 < fmax(sr):
            out += p.texture * np.sin(k * ph) / k
    return out


def dog_bark(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    out = np.zeros(n)
    t0 = clip_start(rng, n, sr)
    mean_gap = 1.0 / (0.5 + 2.5 * p.tempo)
    formants = np.array([900.0, 1900.0]) * (0.8 + 0.4 * p.pitch)
    while t0 < n / sr - 0.05:
        dur = rng.uniform(0.12, 0.22) * (1.2 - 0.4 * p.pitch)
        m = min(int(dur * sr), n - int(t0 * sr))
        t = np.arange(m) / sr
        f0 = (260.0 + 480.0 * p.pitch) * rng.uniform(0.9, 1.1) * (1.0 + 0.25 * np.sin(np.pi * t / dur))
        ph = sweep_phase(f0, sr)
        src = np.zeros(m)
        for k in range(1, 16):
            if k * f0.max() < fmax(sr):
                src += np.sin(k * ph) / k
        src += 0.5 * p.texture * np.sin(0.5 * ph)
        src = unit_rms(src) + 1.2 * p.texture * unit_rms(rng.standard_normal(m))
        voiced = sum(bandpass(src, sr, f * 0.7, f * 1.4) for f in formants) + 0.3 * src
        env = np.minimum(1.0, t / 0.01) * np.exp(-t / (dur / 2.5))
        i0 = int(t0 * sr)
        out[i0 : i0 + m] += voiced * env
        t0 += 0.25 if rng.uniform() < 0.3 else mean_gap * rng.uniform(0.6, 1.4)
    return out


def birdsong(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    out = np.zeros(n)
    note_len = 0.14 - 0.11 * p.texture  # pure whistles are long notes, trills are rapid short ones
    for _ in range(1 + int(p.intensity * 2.99)):
        base = clamp_hz((2200.0 + 2600.0 * p.pitch) * 2.0 ** rng.uniform(-0.3, 0.3), sr) * 0.9
        t0 = rng.uniform(0.0, 0.4)
        while t0 < n / sr:
            for _ in range(int(rng.integers(3, 9) * (1.0 + 2.0 * p.texture))):
                dur = note_len * rng.uniform(0.7, 1.3) * (1.3 - 0.7 * p.tempo)
                i0 = int(t0 * sr)
                m = min(int(dur * sr), n - i0)
                if m <= 2:
                    break
                t = np.arange(m) / sr
                f = np.linspace(base * rng.uniform(0.8, 1.3), base * rng.uniform(0.7, 1.4), m)
                warble = 1.0 + 0.08 * p.texture * np.sin(2 * np.pi * rng.uniform(25.0, 45.0) * t)
                ph = sweep_phase(np.minimum(f * warble, fmax(sr)), sr)
                second = np.where(2.0 * f * warble < fmax(sr), np.sin(2 * ph), 0.0)  # no aliasing at 16 kHz
                out[i0 : i0 + m] += (np.sin(ph) + 0.3 * p.texture * second) * np.sin(np.pi * t / dur) ** 2
                t0 += dur + note_len * rng.uniform(0.3, 0.8)
            t0 += rng.exponential(1.0 / (0.2 + 2.0 * p.tempo))
    return out + 0.01 * highpass(rng.standard_normal(n), sr, 1500.0)


def wind(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    depth = 0.45 + 0.5 * p.tempo
    gust = (1.0 - depth) + depth * smooth_random(rng, n, sr, 0.1 + 1.4 * p.tempo)
    rustle = lowpass(highpass(rng.standard_normal(n), sr, 40.0), sr, 300.0 + 2200.0 * p.pitch)
    fw = (300.0 + 900.0 * p.pitch) * (1.0 + 0.35 * (gust - 0.6))
    pm = lowpass(rng.standard_normal(n), sr, 6.0)
    howl = np.sin(sweep_phase(fw, sr) + 1.0 * unit_rms(pm))
    return unit_rms(rustle) * gust + 2.5 * p.texture**1.5 * unit_rms(howl) * gust**2


def glass_break(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    t0 = clip_start(rng, n, sr)
    i0 = int(t0 * sr)
    crash = highpass(noise_burst(rng, 0.04 + 0.04 * (1.0 - p.texture), sr, length=0.4), sr, 1200.0)
    out = place(n, np.array([i0]), np.array([3.0 * (1.0 - 0.5 * p.texture)]), crash)
    count = int(25 + 90 * p.intensity)
    spread = 0.15 + 1.2 * (1.0 - p.tempo)
    times = t0 + 0.01 + rng.exponential(spread, count)
    if n / sr - t0 > 3.0:  # debris settling: a few sparse shards over the rest of the clip
        times = np.concatenate([times, rng.uniform(t0 + 1.0, n / sr, int(rng.integers(2, 6)))])
    base = 1800.0 + 4000.0 * p.pitch
    onsets = (times * sr).astype(np.int64)
    amps = rng.uniform(0.2, 1.0, len(onsets)) * np.where(times > t0 + 1.0, 0.3, 1.0)
    variant = rng.integers(0, 8, len(onsets))
    for k in range(8):
        tau = rng.uniform(0.01, 0.06)
        ring = sum(decaying_sine(base * rng.uniform(0.7, 1.4), tau, sr, phase=rng.uniform(0, 6.28)) for _ in range(2))
        grit = highpass(noise_burst(rng, tau * 0.5, sr, length=6 * tau), sr, 2000.0)
        shard = p.texture * ring + (1.0 - p.texture) * 1.5 * grit
        out += place(n, onsets[variant == k], amps[variant == k], shard)
    return out


_BELL_INHARMONIC = (
    (0.5, 0.6),
    (1.0, 1.0),
    (1.19, 0.7),
    (1.5, 0.5),
    (2.0, 0.6),
    (2.52, 0.35),
    (2.98, 0.3),
    (4.1, 0.2),
    (5.4, 0.12),
)
_BELL_HARMONIC = ((1.0, 1.0), (2.0, 0.45), (3.0, 0.2), (4.0, 0.08))


def bell(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    f0 = 220.0 + 880.0 * p.pitch
    ring = 3.0 - 1.8 * p.pitch
    length = min(n / sr, ring * 2.5)
    kernel = np.zeros(max(1, int(length * sr)))
    for ratios, weight in ((_BELL_INHARMONIC, p.texture), (_BELL_HARMONIC, 1.0 - p.texture)):
        for ratio, amp in ratios:
            if f0 * ratio < fmax(sr):
                kernel += (
                    weight
                    * amp
                    * decaying_sine(f0 * ratio, ring / ratio**0.6, sr, length=length, phase=rng.uniform(0, 6.28))
                )
    strike = bandpass(noise_burst(rng, 0.003, sr, length=length), sr, 800.0, 6000.0)
    kernel = unit_rms(kernel) + 0.5 * (0.3 + p.texture) * unit_rms(strike) * 0.3
    onsets = regular_onsets(rng, n, sr, 4.0 - 3.2 * p.tempo, start=clip_start(rng, n, sr, 0.02, 0.15), jitter=0.02)
    return place(n, onsets, rng.uniform(0.85, 1.0, len(onsets)), kernel)


def clock_ticks(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    f = 1500.0 + 3000.0 * p.pitch
    tau = 0.002 + 0.012 * p.texture
    kernels = []
    for scale in (1.0, 0.8):  # tick, tock
        k = decaying_sine(f * scale, tau, sr, length=0.08) + 0.5 * decaying_sine(
            f * scale * 1.63, tau * 0.7, sr, length=0.08
        )
        k[: max(1, int(0.0008 * sr))] += 0.5 * rng.standard_normal(max(1, int(0.0008 * sr)))
        kernels.append(lowpass(k, sr, 3000.0 + 6000.0 * p.texture))
    onsets = regular_onsets(
        rng, n, sr, 1.0 / (1.0 + 3.0 * p.tempo), start=clip_start(rng, n, sr, 0.02, 0.2), jitter=0.002
    )
    out = place(n, onsets[0::2], np.ones(len(onsets[0::2])), kernels[0])
    out += place(n, onsets[1::2], 0.8 * np.ones(len(onsets[1::2])), kernels[1])
    return out


def crowd_murmur(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    voices = 3 + int(10 * p.texture)
    babble = np.zeros(n)
    for _ in range(voices):
        f0 = (85.0 + 170.0 * p.pitch) * rng.uniform(0.75, 1.6) * (1.0 + 0.15 * (smooth_random(rng, n, sr, 3.0) - 0.5))
        buzz = (sweep_phase(f0, sr, rng.uniform(0, 6.28)) / math.pi) % 2.0 - 1.0  # naive sawtooth
        syll = smooth_random(rng, n, sr, (2.0 + 7.0 * p.tempo) * rng.uniform(0.8, 1.2))
        babble += buzz * np.clip(2.5 * syll - 1.0, 0.0, None) * rng.uniform(0.5, 1.0)  # syllables with gaps
    scale = 0.75 + 0.6 * p.pitch
    voiced = sum(
        (
            g * bandpass(babble, sr, f * scale * 0.75, f * scale * 1.3)
            for f, g in ((550, 1.0), (1500, 0.6), (2600, 0.3))
        ),
        np.zeros(n),
    )
    air = bandpass(rng.standard_normal(n), sr, 300.0, 3500.0) * (0.6 + 0.4 * smooth_random(rng, n, sr, 2.0))
    return unit_rms(voiced) + (0.1 + 0.15 * p.texture) * unit_rms(air)


def heartbeat(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    period = 60.0 / (50.0 + 90.0 * p.tempo)
    f = 40.0 + 70.0 * p.pitch
    length = 0.6
    t = np.arange(int(length * sr)) / sr
    dub_at = 0.3 * math.sqrt(period)

    def thump(at: float, freq: float, width: float) -> np.ndarray:
        return np.sin(2 * np.pi * freq * (t - at)) * np.exp(-0.5 * ((t - at - 0.02) / width) ** 2) * (t >= at)

    kernel = thump(0.0, f, 0.025) + 0.7 * thump(dub_at, f * 1.3, 0.02)
    valve = bandpass(noise_burst(rng, 0.006, sr, length=length), sr, 150.0, 900.0)
    valve2 = np.zeros_like(valve)
    shift = int(dub_at * sr)
    valve2[shift:] = valve[: len(valve) - shift]
    kernel = unit_rms(kernel) + p.texture * 0.6 * unit_rms(valve + 0.7 * valve2)
    kernel = lowpass(kernel, sr, 180.0 + 900.0 * p.texture)
    onsets = regular_onsets(rng, n, sr, period, start=clip_start(rng, n, sr, 0.02, 0.2), jitter=0.02)
    return place(n, onsets, rng.uniform(0.9, 1.0, len(onsets)), kernel)


def water_stream(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    bubbles = np.zeros(n)
    groups = 8
    for _ in range(groups):
        f0 = (300.0 + 1000.0 * p.pitch) * 2.0 ** rng.uniform(-0.8, 0.8)
        tau = rng.uniform(0.005, 0.025)
        t = np.arange(int(5 * tau * sr)) / sr
        kernel = np.sin(2 * np.pi * clamp_hz(f0, sr) * t * (1.0 + t / (3 * tau))) * np.exp(-t / tau)
        onsets = poisson_onsets(rng, n, sr, (15.0 + 400.0 * p.tempo) / groups)
        bubbles += place(n, onsets, rng.lognormal(0.0, 0.5, len(onsets)), kernel)
    flow = bandpass(rng.standard_normal(n), sr, 150.0 + 200.0 * p.pitch, 1200.0 + 1500.0 * p.texture)  # low roar
    flow *= 0.6 + 0.4 * smooth_random(rng, n, sr, 0.5 + 5.0 * p.tempo)
    return unit_rms(bubbles) + (0.2 + 0.9 * p.texture) * unit_rms(flow)


def phone_ring(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    t = np.arange(n) / sr
    f1 = 400.0 + 800.0 * p.pitch
    electronic = np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f1 * 1.25 * t)
    electronic *= (0.5 + 0.5 * np.sin(2 * np.pi * 20.0 * t)) ** 2
    strikes = (t * 20.0) % 1.0 / 20.0  # seconds since the last clapper strike
    mechanical = sum(a * np.sin(2 * np.pi * clamp_hz(f1 * r, sr) * t) for r, a in ((1.0, 1.0), (2.76, 0.5), (5.4, 0.3)))
    mechanical = mechanical * np.exp(-strikes / 0.015)
    tone = p.texture * unit_rms(electronic) + (1.0 - p.texture) * unit_rms(mechanical)
    on, off = 2.0 - 1.4 * p.tempo, 3.0 - 2.0 * p.tempo
    start = clip_start(rng, n, sr, 0.02, 0.2)
    phase = (t - start) % (on + off)
    gate = ((t >= start) & (phase < on)).astype(np.float64)
    gate = signal.fftconvolve(gate, np.hanning(max(3, int(0.01 * sr))) / (0.005 * sr), mode="same")
    return tone * gate


def fire_crackle(p: EventParams, n: int, sr: int, rng: Rng) -> np.ndarray:
    roar = lowpass(highpass(leaky_brown(rng, n, sr, 25.0), sr, 30.0), sr, 300.0)
    roar *= 0.7 + 0.3 * smooth_random(rng, n, sr, 3.0)
    hiss = highpass(rng.standard_normal(n), sr, 3000.0) * 0.3
    crackles = np.zeros(n)
    for _ in range(3):
        kernel = highpass(
            noise_burst(rng, rng.uniform(0.0004, 0.002) * (0.5 + p.texture), sr, length=0.02),
            sr,
            800.0 + 2500.0 * p.pitch,
        )
        onsets = poisson_onsets(rng, n, sr, (4.0 + 40.0 * p.tempo) / 3.0)
        bursts = np.concatenate([onsets + rng.integers(0, int(0.05 * sr), len(onsets)) for _ in range(2)])
        bursts = np.concatenate([onsets, bursts[rng.uniform(size=len(bursts)) < 0.5]])
        crackles += place(n, bursts, rng.lognormal(0.0, 0.9, len(bursts)), kernel)
    return (0.3 + 0.5 * (1.0 - p.texture)) * unit_rms(roar + hiss) + (0.6 + 1.4 * p.texture) * unit_rms(crackles)
