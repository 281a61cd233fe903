"""Frozen-model features computed once and cached on disk, keyed by content, so epochs never recompute them.

* ``latents``: the codec's latents of an audio segment (the Oobleck posterior mean, or the spectral codec's
  normalised log-mel frames), (frames, C) fp32. Key: sha256 of the audio file's bytes, the segment, the sample
  rate and a fingerprint of the codec (the VAE's weights, or the spectral codec's numbers).
* ``t5``: the flan-T5 encoder output of a caption padded/truncated to S tokens, (S, D) fp32, NOT yet multiplied
  by ``t5_feature_scale``. Key: caption, S, T5 weights and tokenizer fingerprints.
* ``whisper``: the frozen Whisper encoder's last hidden state of a clip, (frames, d_model) fp32. Key: audio
  bytes, mel bins and Whisper weights.

Each entry is one safetensors file ``<cache>/<kind>/<key[:2]>/<key>.safetensors``, written atomically, so
parallel runs and several processes of one ``accelerate launch`` can share a cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import TrainingError
from ..fsutil import write_with_atomic
from ..generator.codec import module_fingerprint
from ..progress import ProgressFn, no_progress
from .manifest import Segment

T5_BATCH = 32


class FeatureCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def load(self, kind: str, key: str) -> torch.Tensor:
        from safetensors.torch import load_file

        path = self.path(kind, key)
        if not path.is_file():
            raise TrainingError(f"feature {kind}/{key} is not in the cache {self.root}; it was removed while training")
        return load_file(str(path))["value"]

    def store(self, kind: str, key: str, tensor: torch.Tensor) -> None:
        from safetensors.torch import save_file

        value = tensor.detach().float().cpu().contiguous()
        write_with_atomic(self.path(kind, key), lambda tmp: save_file({"value": value}, str(tmp)))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(*parts: object) -> str:
    return sha256_bytes(json.dumps([str(p) for p in parts]).encode("utf-8"))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what maps text to ids (the padding/truncation state a call leaves behind is not part of it)."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    for transient in ("padding", "truncation"):
        state.pop(transient, None)
    return sha256_bytes(json.dumps(state, sort_keys=True).encode("utf-8"))


class FileHashes:
    """sha256 of files, each read once per run."""

    def __init__(self) -> None:
        self._seen: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        path = Path(path).resolve()
        if path not in self._seen:
            sha = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(chunk)
            self._seen[path] = sha.hexdigest()
        return self._seen[path]

    def items(self) -> list[tuple[str, str]]:
        return sorted((str(p), h) for p, h in self._seen.items())


class Featurizer:
    """Computes (and caches) the features of a model's frozen parts: VAE, T5 and the Whisper encoder."""

    def __init__(
        self, model: Any, t5_tokenizer: Any, cache: FeatureCache, *, progress: ProgressFn = no_progress
    ) -> None:
        self.model = model
        self.t5_tokenizer = t5_tokenizer
        self.cache = cache
        self.progress = progress
        self.hashes = FileHashes()
        self._fingerprints: dict[str, str] = {}

    def _fingerprint(self, part: str) -> str:
        if part not in self._fingerprints:
            module = getattr(self.model, part)
            if module is None:
                raise TrainingError(f"model {self.model.name} has no {part}")
            self._fingerprints[part] = module_fingerprint(module)
        return self._fingerprints[part]

    # -- latents ---------------------------------------------------------------------------------------------

    def latent_key(self, segment: Segment) -> str:
        dims = self.model.dims
        codec = self.model.codec
        parts: list[object] = [
            self.hashes(segment.path),
            f"{segment.start:.6f}",
            f"{segment.duration:.6f}",
            dims.sample_rate,
            dims.audio_channels,
            codec.fingerprint(),
        ]
        if codec.kind != "oobleck":  # Oobleck keys stay as they were, so existing caches are still used
            parts.insert(0, codec.kind)
        return _digest("latents", *parts)

    def ensure_latents(self, segments: Sequence[Segment]) -> list[str]:
        """Cache keys of each segment's latents, encoding the ones not cached yet."""
        keys = [self.latent_key(s) for s in segments]
        todo = {k: s for k, s in zip(keys, segments, strict=True) if not self.cache.has("latents", k)}
        reader = _AudioReader(self.model.dims.sample_rate, self.model.dims.audio_channels)
        codec = self.model.codec
        for n, (key, segment) in enumerate(sorted(todo.items(), key=lambda kv: str(kv[1].path)), start=1):
            audio = reader.segment(segment)
            latents = codec.encode(torch.from_numpy(audio))
            self.cache.store("latents", key, latents)
            self.progress("cache latents", n, len(todo))
        return keys

    # -- T5 targets ------------------------------------------------------------------------------------------

    def t5_key(self, caption: str) -> str:
        tokens = self.model.dims.bridge.num_semantic_tokens
        return _digest(
            "t5", caption, tokens, self._fingerprint("text_encoder"), tokenizer_fingerprint(self.t5_tokenizer)
        )

    def ensure_t5(self, captions: Iterable[str]) -> dict[str, str]:
        unique = sorted(set(captions))
        keys = {c: self.t5_key(c) for c in unique}
        todo = [c for c in unique if not self.cache.has("t5", keys[c])]
        encoder = self.model.text_encoder
        device = encoder.get_input_embeddings().weight.device
        tokens = self.model.dims.bridge.num_semantic_tokens
        for start in range(0, len(todo), T5_BATCH):
            batch = todo[start : start + T5_BATCH]
            enc = self.t5_tokenizer(
                batch, max_length=tokens, padding="max_length", truncation=True, return_tensors="pt"
            )
            with torch.no_grad():
                hidden = encoder(
                    input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)
                ).last_hidden_state
            for caption, value in zip(batch, hidden, strict=True):
                self.cache.store("t5", keys[caption], value)
            self.progress("cache t5", min(start + T5_BATCH, len(todo)), len(todo))
        return keys

    # -- Whisper states --------------------------------------------------------------------------------------

    def whisper_key(self, path: Path) -> str:
        encoder = self.model.audio_encoder
        if encoder is None:
            raise TrainingError(f"model {self.model.name} has no audio encoder (Whisper); it cannot learn QA data")
        return _digest("whisper", self.hashes(path), encoder.dims.num_mel_bins, self._fingerprint("audio_encoder"))

    def ensure_whisper(self, paths: Sequence[Path]) -> dict[Path, str]:
        from ..audio.io import read_audio

        keys = {p: self.whisper_key(p) for p in paths}
        todo = sorted({p for p, k in keys.items() if not self.cache.has("whisper", k)}, key=str)
        encoder = self.model.audio_encoder
        for n, path in enumerate(todo, start=1):
            audio, rate = read_audio(path, what="training audio")
            features = encoder.features(audio.mean(axis=0), rate)
            weight = encoder.resampler.input_weight
            with torch.no_grad():
                hidden = encoder.whisper(features.to(device=weight.device, dtype=weight.dtype)).last_hidden_state
            self.cache.store("whisper", keys[path], hidden[0])
            self.progress("cache whisper", n, len(todo))
        return keys

    def data_hash(self, manifests: Sequence[Path]) -> str:
        """sha256 over the manifests' bytes and every audio file used (by content)."""
        parts = [("audio", h) for _, h in self.hashes.items()]
        parts += [("manifest", self.hashes(p)) for p in manifests]
        return sha256_bytes(json.dumps(sorted(set(parts))).encode("utf-8"))


class _AudioReader:
    """Reads segments at the VAE's rate and channel count; the last file read is kept (stories share one)."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self._last: tuple[Path, np.ndarray] | None = None

    def _file(self, path: Path) -> np.ndarray:
        from ..audio.io import read_audio, resample

        if self._last is None or self._last[0] != path:
            audio, rate = read_audio(path, what="training audio")
            if rate != self.sample_rate:
                audio = resample(audio, rate, self.sample_rate)
            if audio.shape[0] != self.channels:
                audio = np.repeat(audio.mean(axis=0, keepdims=True), self.channels, axis=0)
            self._last = (path, np.ascontiguousarray(audio, dtype=np.float32))
        return self._last[1]

    def segment(self, segment: Segment) -> np.ndarray:
        audio = self._file(segment.path)
        first = int(round(segment.start * self.sample_rate))
        count = int(round(segment.duration * self.sample_rate))
        piece = audio[:, first : first + count]
        if piece.shape[1] < count:  # within the manifest's length tolerance: pad the last few ms with silence
            piece = np.pad(piece, ((0, 0), (0, count - piece.shape[1])))
        return np.ascontiguousarray(piece)
