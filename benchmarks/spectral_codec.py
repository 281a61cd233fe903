"""Choose the demo's spectral codec by measurement: recognisability of round trips and their speed.

For each candidate (mel bands, hop, FFT size, Griffin-Lim iterations), on N fresh foley clips from the sound bank
(16 kHz, 1-5 s, classes in turn; seed 1234, never the classifier's own training draws):

- the eval classifier (``foley.classifier``, the one ``audiostory eval`` uses) recognises the round trip;
- a second, independent classifier (MFCC statistics + envelope modulation spectrum, logistic regression trained
  here on other fresh draws) recognises the round trip: the eval classifier reads log-mel features, so it is
  lenient towards a mel codec;
- the wall time of one encode + decode of a 20 s clip (the best of 5, and its CPU time: the machine is shared,
  so the best run is the closest to a quiet machine; the median is in the JSON lines).

It also prints the mean and standard deviation of ``ln(max(mel, floor))`` over the clips: the normalisation the
codec records in its dims.

    python -m benchmarks.spectral_codec --clips 200
    python -m benchmarks.spectral_codec --clips 40 --candidates 64:256:1024:32,64:512:1024:32
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

SR = 16_000
DEFAULT_CANDIDATES = "64:256:1024:32,64:256:1024:16,64:512:1024:32"


def draws(n: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """``n`` fresh clips (label, (2, samples)): classes in turn, random params, 1-5 s, random seeds."""
    from audiostory_cli.foley.bank import CLASS_NAMES, render_event, sample_params

    rng = np.random.default_rng([seed, 0xC0DEC])
    out = []
    for i in range(n):
        label = i % len(CLASS_NAMES)
        name = CLASS_NAMES[label]
        seconds = round(float(rng.uniform(1.0, 5.0)), 2)
        out.append((label, render_event(name, sample_params(rng, name), seconds, SR, int(rng.integers(2**31)))))
    return out


# -- the second classifier: MFCC statistics + envelope modulation, nothing shared with the eval classifier ----


def _mel_fb(n_fft: int, n_mels: int) -> np.ndarray:
    def hz2mel(f: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(f / 700.0)

    edges = 700.0 * np.expm1(np.linspace(hz2mel(np.array(60.0)), hz2mel(np.array(7600.0)), n_mels + 2) / 1127.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SR)
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m : m + 3]
        fb[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0.0, None)
    return fb


_FB2 = _mel_fb(1024, 40)
_WIN2 = signal.get_window("hamming", 1024)


def mfcc_features(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64).mean(axis=0)
    x = np.pad(x, (0, max(0, 1024 - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::320]  # 20 ms hop, 64 ms frames
    power = np.abs(np.fft.rfft(frames * _WIN2, axis=1)) ** 2
    logmel = np.log(power @ _FB2.T + 1e-9)
    mfcc = sp_fft.dct(logmel, type=2, norm="ortho", axis=1)[:, 1:14]  # c0 (level) left out
    delta = np.diff(mfcc, axis=0) if len(mfcc) > 1 else np.zeros_like(mfcc)
    env = np.log(power.sum(axis=1) + 1e-9)
    env = env - env.max()
    spec = np.abs(np.fft.rfft(np.exp(env / 2) - np.exp(env / 2).mean())) ** 2
    freqs = np.fft.rfftfreq(len(env), 320 / SR)
    bands = [(0.25, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 25)]
    mod = np.array([spec[(freqs >= a) & (freqs < b)].sum() for a, b in bands])
    mod = np.log(mod / (mod.sum() + 1e-12) + 1e-4)
    return np.concatenate(
        [
            mfcc.mean(0),
            mfcc.std(0),
            np.abs(delta).mean(0),
            mod,
            [np.percentile(env, 90) - np.percentile(env, 10), np.mean(env > -20)],
        ]
    )


class SecondClassifier:
    def __init__(self, n_per_class: int = 20, seed: int = 99) -> None:
        from audiostory_cli.foley.bank import CLASS_NAMES
        from audiostory_cli.foley.classifier import fit_logistic

        clips = draws(n_per_class * len(CLASS_NAMES), seed)
        x = np.stack([mfcc_features(a) for _, a in clips])
        y = np.array([label for label, _ in clips])
        self.mean, self.scale = x.mean(0), np.maximum(x.std(0), 1e-6)
        self.w, self.b = fit_logistic((x - self.mean) / self.scale, y, len(CLASS_NAMES), l2=1e-3)

    def predict(self, audio: np.ndarray) -> int:
        return int(np.argmax(((mfcc_features(audio) - self.mean) / self.scale) @ self.w + self.b))


# -- the measurement ----------------------------------------------------------------------------------------


def parse_candidate(text: str) -> tuple[int, int, int, int]:
    mels, hop, n_fft, iters = (int(v) for v in text.split(":"))
    return mels, hop, n_fft, iters


def measure(
    candidate: tuple[int, int, int, int], clips: list[tuple[int, np.ndarray]], eval_clf, second, long_clip: np.ndarray
) -> dict[str, object]:
    import torch

    from audiostory_cli.config import SpectralCodecDims
    from audiostory_cli.generator.codec import SpectralCodec, spectral_stats

    mels, hop, n_fft, iters = candidate
    codec = SpectralCodec(SpectralCodecDims(n_mels=mels, hop_length=hop, n_fft=n_fft, griffin_lim_iters=iters))
    mean, std = spectral_stats(codec, [a for _, a in clips[:50]])
    codec = SpectralCodec(replace(codec.dims, mean=round(mean, 2), scale=round(std, 2)))
    ok_eval = ok_second = 0
    for label, audio in clips:
        x = torch.from_numpy(audio)
        back = codec.decode(codec.encode(x), num_samples=x.shape[1]).numpy()
        ok_eval += eval_clf.classes.index(eval_clf.predict(back, SR)[0]) == label
        ok_second += second.predict(back) == label
    times, cpu = [], []
    x = torch.from_numpy(long_clip)
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        codec.decode(codec.encode(x), num_samples=x.shape[1])
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "n_mels": mels,
        "hop": hop,
        "n_fft": n_fft,
        "gl_iters": iters,
        "clips": len(clips),
        "eval_classifier": ok_eval / len(clips),
        "second_classifier": ok_second / len(clips),
        "roundtrip_20s_s": min(times),
        "roundtrip_20s_median_s": statistics.median(times),
        "roundtrip_20s_cpu_s": min(cpu),
        "log_mel_mean": mean,
        "log_mel_std": std,
    }


def main(argv: list[str] | None = None) -> int:
    import torch

    from audiostory_cli.foley.bank import render_event, sample_params
    from audiostory_cli.foley.classifier import load_or_train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help="n_mels:hop:n_fft:iters,...")
    parser.add_argument("--json", action="store_true", help="one JSON line per candidate")
    args = parser.parse_args(argv)
    # One thread: on a machine shared with other jobs, torch's second thread mostly waits for a core (a first run
    # with two threads got through under 2 % of the work in 20 minutes); the times are then those of one core.
    torch.set_num_threads(1)
    eval_clf = load_or_train()
    second = SecondClassifier()
    clips = draws(args.clips, 1234)
    base_eval = np.mean([eval_clf.classes.index(eval_clf.predict(a, SR)[0]) == y for y, a in clips])
    base_second = np.mean([second.predict(a) == y for y, a in clips])
    rng = np.random.default_rng(7)
    long_clip = render_event("rain", sample_params(rng, "rain"), 20.0, SR, 7)
    print(
        f"originals: eval classifier {base_eval:.1%}, second classifier {base_second:.1%} ({args.clips} clips)",
        file=sys.stderr,
    )
    print("| mels | hop | n_fft | GL iters | eval clf | second clf | 20 s round trip (CPU time) | ln-mel mean / std |")
    print("|---|---|---|---|---|---|---|---|")
    for text in args.candidates.split(","):
        row = measure(parse_candidate(text), clips, eval_clf, second, long_clip)
        if args.json:
            print(json.dumps(row), file=sys.stderr)
        print(
            f"| {row['n_mels']} | {row['hop']} | {row['n_fft']} | {row['gl_iters']} | "
            f"{row['eval_classifier']:.1%} | {row['second_classifier']:.1%} | "
            f"{row['roundtrip_20s_s']:.2f} s ({row['roundtrip_20s_cpu_s']:.2f} s) | "
            f"{row['log_mel_mean']:.2f} / {row['log_mel_std']:.2f} |",
            flush=True,
        )
    return 0 if math.isfinite(base_eval) else 1


if __name__ == "__main__":
    raise SystemExit(main())
