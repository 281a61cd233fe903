"""An independent event classifier: says which foley class a rendered event sounds like.

It is trained only on fresh draws from the sound bank (never on model outputs), with simple spectral features
computed with numpy/scipy, and a multinomial logistic regression on standardised features. ``audiostory eval``
uses it to check that an event rendered by a model is of the class the plan asked for.

    clf = train_classifier(sr=16_000, n_per_class=30, seed=0)
    name, confidence = clf.predict(audio, sr)
    clf.save(path); EventClassifier.load(path)

Features (at 16 kHz, bins up to 6.5 kHz, 32 ms frames, 10 ms hop, over frames within 45 dB of the loudest):
level-normalised log-mel band means and standard deviations; spectral centroid, bandwidth, roll-off and
flatness statistics; spectral peakiness and dominant-frequency movement (tones, sweeps); zero-crossing rate;
envelope dynamics and the active fraction; onset rate; periodicity of the onset envelope (autocorrelation peak
and its lag); modulation-spectrum band shares; crest factor; harmonicity (the frame autocorrelation peak at
80-400 Hz lags). Bins above 6.5 kHz are left out so that renders at 16 and 44.1 kHz give the same features.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import optimize, signal

from ..errors import InputError, ModelError
from ..fsutil import write_json_atomic
from ..progress import ProgressFn, no_progress
from ..resources import cache_dir
from .bank import CLASS_NAMES, render_event, sample_params

FEATURE_SR = 16_000
N_FFT = 512
HOP = 160  # 10 ms
N_MELS = 32
F_MAX = 6_500.0  # Hz; above this, filters and resamplers differ between 16 and 44.1 kHz renders
ACTIVE_DB = 45.0
FORMAT = "audiostory-foley-classifier"
FORMAT_VERSION = 1
_EPS = 1e-10
_SCALARS = (
    "centroid_mean",
    "centroid_std",
    "bandwidth_mean",
    "bandwidth_std",
    "rolloff_mean",
    "rolloff_std",
    "flatness_mean",
    "flatness_std",
    "peakiness_mean",
    "peakiness_std",
    "dominant_mean",
    "dominant_std",
    "sweep_mean",
    "sweep_std",
    "zcr_mean",
    "zcr_std",
    "env_std",
    "env_range",
    "active_frac",
    "loud_frac",
    "onset_rate",
    "flux_mean",
    "flux_std",
    "ac_flux",
    "lag_flux",
    "ac_env",
    "lag_env",
    "mod_depth",
    "crest",
    "harmonicity_mean",
    "harmonicity_std",
)
_PITCH_LAGS = (FEATURE_SR // 400, FEATURE_SR // 80)  # voice/engine-like periodicity: 80 to 400 Hz
_MOD_BANDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # Hz, edges of the modulation-spectrum bands


# ---------------------------------------------------------------------------------------------------------------
# features


def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 40.0, fmax: float | None = None) -> np.ndarray:
    fmax = fmax or sr / 2.0

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges_mel = np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
    return fb / np.maximum(fb.sum(axis=1, keepdims=True), 1e-9)


_N_BINS = int(F_MAX * N_FFT / FEATURE_SR) + 1
_FB = _mel_filterbank(FEATURE_SR, N_FFT, N_MELS, fmax=F_MAX)[:, :_N_BINS]
# each triangle's non-zero bins: band-wise dot products avoid a threaded BLAS matmul, which is ~40x slower
# than this on a busy 2-core machine
_FB_SPANS = tuple((int(nz[0]), int(nz[-1]) + 1) for nz in (np.nonzero(row)[0] for row in _FB))
_FREQS = np.fft.rfftfreq(N_FFT, 1.0 / FEATURE_SR)[:_N_BINS]
_WINDOW = np.hanning(N_FFT).astype(np.float32)


FEATURE_NAMES: tuple[str, ...] = (
    *(f"mel_shape_{i:02d}" for i in range(N_MELS)),
    *(f"mel_std_{i:02d}" for i in range(N_MELS)),
    *(f"mod_share_{lo:g}_{hi:g}hz" for lo, hi in zip(_MOD_BANDS[:-1], _MOD_BANDS[1:], strict=True)),
    *_SCALARS,
)
"""Name of each entry of ``extract_features``'s vector, in order."""


def to_feature_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float64 at ``FEATURE_SR``: channels averaged (``(channels, n)`` or ``(n,)``), polyphase-resampled."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1 or x.size == 0:
        raise InputError(f"audio of shape {np.shape(audio)} cannot be classified; pass (channels, n) or (n,)")
    if not np.isfinite(x).all():
        raise InputError("audio contains NaN or infinite samples; it cannot be classified")
    if sr != FEATURE_SR:
        g = math.gcd(int(sr), FEATURE_SR)
        x = signal.resample_poly(x, FEATURE_SR // g, int(sr) // g)
    return x


def _stats(v: np.ndarray) -> tuple[float, float]:
    return (float(v.mean()), float(v.std())) if v.size else (0.0, 0.0)


def _autocorr_peak(env: np.ndarray, lo: int, hi: int) -> tuple[float, float]:
    """Highest normalised autocorrelation of ``env`` for lags in [lo, hi) frames, and that lag (log seconds)."""
    e = env - env.mean()
    hi = min(hi, len(e) - 1)
    if hi <= lo or not np.any(e):
        return 0.0, math.log(lo * HOP / FEATURE_SR)
    nfft = 1 << int(math.ceil(math.log2(2 * len(e))))
    spec = np.fft.rfft(e, nfft)
    ac = np.fft.irfft(spec * np.conj(spec), nfft)[:hi]
    ac = ac / max(ac[0], _EPS)
    lag = lo + int(np.argmax(ac[lo:hi]))
    return float(ac[lag]), math.log(lag * HOP / FEATURE_SR)


def extract_features(audio: np.ndarray, sr: int) -> np.ndarray:
    """The classifier's feature vector of one event (any rate, mono or ``(channels, n)``)."""
    x = to_feature_rate(audio, sr)
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    spec = sp_fft.rfft(frames.astype(np.float32) * _WINDOW, axis=1)[:, :_N_BINS]  # float32: 3x faster
    power = (spec.real**2 + spec.imag**2).astype(np.float64)
    energy = power.sum(axis=1)
    e_db = 10.0 * np.log10(energy + _EPS)
    active = e_db > e_db.max() - ACTIVE_DB
    pa = power[active]
    mel = np.stack([power[:, a:b] @ _FB[m, a:b] for m, (a, b) in enumerate(_FB_SPANS)], axis=1)
    logmel = 10.0 * np.log10(mel + _EPS)
    lm = logmel[active]
    shape = (lm - e_db[active, None]).mean(axis=0)  # spectral shape, independent of level
    spread = lm.std(axis=0)

    total = pa.sum(axis=1) + _EPS
    centroid = (pa @ _FREQS) / total
    bandwidth = np.sqrt(np.maximum((pa @ _FREQS**2) / total - centroid**2, 0.0))
    cum = np.cumsum(pa, axis=1)
    rolloff = _FREQS[np.argmax(cum >= 0.85 * cum[:, -1:], axis=1)]
    flatness = np.exp(np.mean(np.log(pa + _EPS), axis=1)) / (pa.mean(axis=1) + _EPS)
    peakiness = np.log(pa.max(axis=1) / (pa.mean(axis=1) + _EPS) + _EPS)
    dominant = np.log2(_FREQS[np.argmax(pa, axis=1)] + 20.0)
    sweep = np.abs(np.diff(dominant)) if len(dominant) > 1 else np.zeros(1)

    # harmonicity: the frame autocorrelation (inverse FFT of the power spectrum) peak over 80-400 Hz lags
    ac = sp_fft.irfft(pa, N_FFT, axis=1)
    harmonicity = ac[:, _PITCH_LAGS[0] : _PITCH_LAGS[1]].max(axis=1) / np.maximum(ac[:, 0], _EPS)

    crossings = np.concatenate([[0], np.cumsum(np.signbit(x[1:]) != np.signbit(x[:-1]))])
    starts = np.arange(len(frames))[active] * HOP
    zcr = (crossings[starts + N_FFT - 1] - crossings[starts]) / (N_FFT - 1)

    flux = np.maximum(np.diff(logmel, axis=0), 0.0).mean(axis=1) if len(logmel) > 1 else np.zeros(1)
    thresh = flux.mean() + 2.0 * flux.std()
    peaks = (flux[1:-1] > thresh) & (flux[1:-1] >= flux[:-2]) & (flux[1:-1] > flux[2:]) if len(flux) > 2 else []
    seconds = len(x) / FEATURE_SR
    onset_rate = math.log1p(float(np.sum(peaks)) / seconds)
    ac_flux, lag_flux = _autocorr_peak(flux, 8, 250)
    ac_env, lag_env = _autocorr_peak(np.maximum(e_db, e_db.max() - ACTIVE_DB), 8, 250)

    amp = np.sqrt(energy)
    mod = np.abs(np.fft.rfft(amp - amp.mean())) ** 2
    mod_freqs = np.fft.rfftfreq(len(amp), HOP / FEATURE_SR)
    band_power = np.array(
        [
            mod[(mod_freqs >= lo) & (mod_freqs < hi)].sum()
            for lo, hi in zip(_MOD_BANDS[:-1], _MOD_BANDS[1:], strict=True)
        ]
    )
    mod_share = np.log(band_power / (band_power.sum() + _EPS) + 1e-4)
    mod_depth = math.log(amp.std() / (amp.mean() + _EPS) + 1e-4)

    e_act = e_db[active]
    crest = math.log(np.abs(x).max() / (np.sqrt(np.mean(x * x)) + _EPS) + _EPS)
    scalars = [
        *_stats(np.log(centroid + 20.0)),
        *_stats(np.log(bandwidth + 20.0)),
        *_stats(np.log(rolloff + 20.0)),
        *_stats(np.log(flatness + _EPS)),
        *_stats(peakiness),
        *_stats(dominant),
        *_stats(sweep),
        *_stats(zcr),
        float(e_act.std()),
        float(np.percentile(e_act, 90) - np.percentile(e_act, 10)),
        float(active.mean()),
        float(np.mean(e_db > e_db.max() - 15.0)),
        onset_rate,
        float(np.log(flux.mean() + 1e-3)),
        float(np.log(flux.std() + 1e-3)),
        ac_flux,
        lag_flux,
        ac_env,
        lag_env,
        mod_depth,
        crest,
        *_stats(harmonicity),
    ]
    return np.concatenate([shape, spread, mod_share, np.asarray(scalars)])


# ---------------------------------------------------------------------------------------------------------------
# model


@dataclass(frozen=True)
class EventClassifier:
    """Standardised features -> multinomial logistic regression. Saved as JSON (no pickle)."""

    classes: tuple[str, ...]
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F, C)
    bias: np.ndarray  # (C,)
    info: dict[str, Any]  # how it was trained: sr, n_per_class, seed, train accuracy

    def predict_proba(self, audio: np.ndarray, sr: int) -> np.ndarray:
        """Probabilities over ``self.classes`` for one event."""
        return self.proba_from_features(extract_features(audio, sr)[None, :])[0]

    def predict(self, audio: np.ndarray, sr: int) -> tuple[str, float]:
        """The most likely class name and its probability."""
        proba = self.predict_proba(audio, sr)
        k = int(np.argmax(proba))
        return self.classes[k], float(proba[k])

    def proba_from_features(self, feats: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of feature vectors ``(N, F)`` from ``extract_features``."""
        return _softmax(((feats - self.mean) / self.scale) @ self.weights + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "feature_sr": FEATURE_SR,
            "n_features": int(self.mean.size),
            "classes": list(self.classes),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "info": self.info,
        }

    def save(self, path: Path) -> Path:
        return write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path) -> EventClassifier:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"classifier file {path} not found; train one with train_classifier()") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"classifier file {path} is unreadable ({exc}); delete it and train again") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "classifier") -> EventClassifier:
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ModelError(f"{source} is not a version-{FORMAT_VERSION} foley classifier; train it again")
        n_features = len(extract_features(np.zeros(N_FFT), FEATURE_SR))
        classes = tuple(data["classes"])
        mean = np.asarray(data["mean"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        weights = np.asarray(data["weights"], dtype=np.float64)
        bias = np.asarray(data["bias"], dtype=np.float64)
        if (
            data.get("feature_sr") != FEATURE_SR
            or mean.shape != (n_features,)
            or scale.shape != (n_features,)
            or weights.shape != (n_features, len(classes))
            or bias.shape != (len(classes),)
        ):
            raise ModelError(f"{source} does not match this version's features ({n_features}); train it again")
        return cls(classes, mean, scale, weights, bias, dict(data.get("info", {})))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (mean cross-entropy + ``l2``·|W|²) fitted with L-BFGS."""
    n, f = x.shape
    onehot = np.eye(n_classes)[y]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: f * n_classes].reshape(f, n_classes)
        b = theta[f * n_classes :]
        z = x @ w + b
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        value = -np.sum(onehot * logp) / n + l2 * np.sum(w * w)
        grad_z = (np.exp(logp) - onehot) / n
        grad_w = x.T @ grad_z + 2.0 * l2 * w
        return float(value), np.concatenate([grad_w.ravel(), grad_z.sum(axis=0)])

    theta0 = np.zeros(f * n_classes + n_classes)
    res = optimize.minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 100})
    return res.x[: f * n_classes].reshape(f, n_classes), res.x[f * n_classes :]


@dataclass(frozen=True)
class DrawSpec:
    """How fresh bank draws are made for training or evaluating the classifier."""

    min_seconds: float = 1.0
    max_seconds: float = 5.0


def bank_draws(
    sr: int,
    n_per_class: int,
    seed: int,
    *,
    classes: Sequence[str] = CLASS_NAMES,
    spec: DrawSpec = DrawSpec(),
    progress: ProgressFn = no_progress,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``n_per_class`` fresh renders per class (random params, durations and seeds)."""
    if n_per_class < 1:
        raise InputError(f"n_per_class={n_per_class} must be at least 1")
    rng = np.random.default_rng([seed, 0xF01E])
    feats, labels = [], []
    total = n_per_class * len(classes)
    for _ in range(n_per_class):
        for label, name in enumerate(classes):
            seconds = round(float(rng.uniform(spec.min_seconds, spec.max_seconds)), 2)
            audio = render_event(name, sample_params(rng, name), seconds, sr, int(rng.integers(2**31)))
            feats.append(extract_features(audio, sr))
            labels.append(label)
            progress("classifier-draws", len(labels), total)
    return np.stack(feats), np.asarray(labels)


def train_classifier(
    sr: int = FEATURE_SR,
    n_per_class: int = 30,
    seed: int = 0,
    *,
    spec: DrawSpec = DrawSpec(),
    l2: float = 1e-3,
    progress: ProgressFn = no_progress,
) -> EventClassifier:
    """Train on fresh bank draws rendered at ``sr``; deterministic in all arguments."""
    x, y = bank_draws(sr, n_per_class, seed, spec=spec, progress=progress)
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)
    weights, bias = fit_logistic((x - mean) / scale, y, len(CLASS_NAMES), l2=l2)
    clf = EventClassifier(CLASS_NAMES, mean, scale, weights, bias, {})
    train_acc = float(np.mean(np.argmax(clf.proba_from_features(x), axis=1) == y))
    info = {
        "sr": sr,
        "n_per_class": n_per_class,
        "seed": seed,
        "min_seconds": spec.min_seconds,
        "max_seconds": spec.max_seconds,
        "l2": l2,
        "train_accuracy": train_acc,
        "bank": bank_fingerprint(),
    }
    return EventClassifier(CLASS_NAMES, mean, scale, weights, bias, info)


def accuracy_per_class(clf: EventClassifier, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Share of correct predictions per class on precomputed features (``bank_draws`` output)."""
    pred = np.argmax(clf.proba_from_features(x), axis=1)
    return {name: float(np.mean(pred[y == k] == k)) for k, name in enumerate(clf.classes) if np.any(y == k)}


def bank_fingerprint() -> str:
    """Short hash of the synthesis, bank and feature code (``synth.py``, ``bank.py``, ``classifier.py``): a
    cached classifier is reused only while the sounds it was trained on and its features are unchanged."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in ("synth.py", "bank.py", "classifier.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


def default_classifier_path() -> Path:
    return cache_dir() / "foley" / f"classifier-v{FORMAT_VERSION}-{bank_fingerprint()}.json"


def load_or_train(
    path: Path | None = None, *, n_per_class: int = 30, seed: int = 0, progress: ProgressFn = no_progress
) -> EventClassifier:
    """The cached classifier at ``path`` (default: the weight cache, keyed by ``bank_fingerprint``), trained
    and saved there first if it is not there yet. A file from other settings or other bank code is retrained."""
    path = default_classifier_path() if path is None else Path(path)
    if path.exists():
        clf = EventClassifier.load(path)
        info = clf.info
        if (info.get("bank"), info.get("n_per_class"), info.get("seed")) == (bank_fingerprint(), n_per_class, seed):
            return clf
    clf = train_classifier(FEATURE_SR, n_per_class, seed, progress=progress)
    clf.save(path)
    return clf
