"""The whole model in one container, built from ``ModelDims``: reasoner LLM, bridge, DiT, T5, VAE, audio encoder.

Three ways to get one, all through the same classes:
- ``tiny_random_model()``: toy size, random weights, built in memory (tests, smoke runs);
- ``load_model_folder(path)``: a model folder (``audiostory.json`` + safetensors + tokenizer) — converted
  official weights, the bundled demo, or a training run — built on the meta device and loaded strictly;
- ``load_model(ref)``: resolves a name from the registry (or a folder path) to one of the above.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import CANVAS_FIXED, DEFAULT_JOIN, OFFICIAL_JOIN, PART_NAMES, ModelDims, model_canvas, tiny_dims
from .errors import ModelError, WeightsError
from .progress import ProgressFn, no_progress
from .runtime import Runtime

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderOobleck
    from torch import nn
    from transformers import Qwen2ForCausalLM, T5EncoderModel

    from .generator.codec import Codec
    from .generator.dit import AudioDiT
    from .planner.api import Planner
    from .planner.audio_encoder import AudioEncoder
    from .planner.bridge import Bridge


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide the libraries' construction chatter (deprecated weight_norm, dtype hints) from users' terminals."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


TINY_RANDOM = "tiny-random"


@dataclass
class AudioStoryModel:
    name: str
    dims: ModelDims
    tokenizer: Any
    llm: Qwen2ForCausalLM
    bridge: Bridge
    dit: AudioDiT
    text_encoder: T5EncoderModel
    vae: AutoencoderOobleck | None = None  # None when the dims declare the spectral codec (no weights)
    audio_encoder: AudioEncoder | None = None
    revision: str | None = None
    resampler_trained: bool = False  # whether audio_encoder.resampler holds trained weights
    extra: dict[str, Any] = field(default_factory=dict)
    _planner: Planner | None = field(default=None, repr=False)
    _codec: Codec | None = field(default=None, repr=False)

    def parts(self) -> dict[str, nn.Module]:
        """The parts this model holds, in ``PART_NAMES`` order (no VAE with the spectral codec, no audio encoder
        unless the model listens)."""
        return {name: getattr(self, name) for name in PART_NAMES if getattr(self, name) is not None}

    @property
    def sample_rate(self) -> int:
        return self.dims.sample_rate

    @property
    def codec(self) -> Codec:
        """How the DiT's latents become audio and back: the Oobleck VAE or the spectral codec the dims declare."""
        if self._codec is None:
            from .generator.codec import model_codec

            self._codec = model_codec(self.dims, self.vae)
        return self._codec

    @property
    def repetition_penalty(self) -> float:
        """The planner's repetition penalty by default: the base LLM's generation config (1.05 for the released
        model, as the official ``generate`` applies it even when greedy); 1.0 when the folder records none."""
        value = self.extra.get("generation", {}).get("repetition_penalty", 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ModelError(
                f"model {self.name!r}: generation.repetition_penalty {value!r} must be a positive "
                "number; fix it in its audiostory.json"
            )
        return float(value)

    @property
    def join(self) -> tuple[float, str]:
        """Default crossfade (seconds, shape) between events: the official join for the official checkpoint (each
        non-final clip conditioned on duration + 3 s and joined with a 3 s linear crossfade), else 1.5 s
        equal-power; a folder's ``join`` field says otherwise."""
        official = self.extra.get("converted_from") == "official"
        join = {**(OFFICIAL_JOIN if official else DEFAULT_JOIN), **self.extra.get("join", {})}
        seconds, shape = join.get("crossfade"), join.get("shape")
        valid_seconds = isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 <= seconds <= 10
        if not valid_seconds or shape not in ("linear", "equal-power"):
            raise ModelError(
                f"model {self.name!r}: join {join!r} needs crossfade 0..10 s and shape 'linear' or "
                "'equal-power'; fix it in its audiostory.json"
            )
        return float(seconds), str(shape)  # type: ignore[arg-type]

    @property
    def canvas(self) -> str:
        """The DiT canvas these weights were trained for (``config.CANVASES``)."""
        try:
            return model_canvas(self.extra)
        except ValueError as exc:
            raise ModelError(f"model {self.name!r}: {exc}; fix 'canvas' in its audiostory.json") from exc

    def planner(self) -> Planner:
        """The reasoner and bridge as the planner API (built once)."""
        if self._planner is None:
            from .planner.api import Planner
            from .planner.reasoner import Reasoner

            self._planner = Planner(reasoner=Reasoner(self.llm, self.tokenizer, self.dims.bridge), bridge=self.bridge)
        return self._planner

    def place(self, runtime: Runtime) -> AudioStoryModel:
        """Move every part to the runtime's device: LLM, bridge and DiT in its dtype; VAE and T5 never in fp16."""
        with quiet_libraries():
            self._place(runtime)
        return self

    def _place(self, runtime: Runtime) -> None:
        # Typed as nn.Module: transformers wraps PreTrainedModel.to with functools.wraps, which mypy misreads.
        main: tuple[nn.Module, ...] = (self.llm, self.bridge, self.dit)
        for module in main:
            module.to(device=runtime.device, dtype=runtime.dtype)
        text_encoder: nn.Module = self.text_encoder
        text_encoder.to(device=runtime.device, dtype=runtime.text_encoder_dtype)
        if self.vae is not None:
            self.vae.to(device=runtime.device, dtype=runtime.vae_dtype)
        if self.audio_encoder is not None:
            self.audio_encoder.to(device=runtime.device, dtype=runtime.vae_dtype)
        for part in self.parts().values():
            part.eval()

    def offload_llm(self) -> None:
        """Free accelerator memory before the DiT runs (low-memory mode)."""
        llm: nn.Module = self.llm  # see _place
        llm.to("cpu")


def build_parts(dims: ModelDims, vocab_size: int, *, dtype: torch.dtype | None = None) -> dict[str, nn.Module]:
    """Every part with random weights on the current default device."""
    import torch

    dtype = dtype or torch.float32
    with quiet_libraries():
        return _build_parts(dims, vocab_size, dtype)


def _build_parts(dims: ModelDims, vocab_size: int, dtype: torch.dtype) -> dict[str, nn.Module]:
    from .generator.dit import build_dit
    from .generator.text_encoder import build_text_encoder
    from .generator.vae import build_vae
    from .planner.audio_encoder import build_audio_encoder
    from .planner.bridge import Bridge
    from .planner.reasoner import build_llm

    parts: dict[str, Any] = {
        "llm": build_llm(dims.reasoner, vocab_size, dtype),
        "bridge": Bridge(dims.bridge),
        "dit": build_dit(dims.dit),
        "text_encoder": build_text_encoder(dims.text_encoder),
    }
    if dims.vae is not None:  # a spectral codec has no weights
        parts["vae"] = build_vae(dims.vae)
    if dims.audio_encoder is not None:
        parts["audio_encoder"] = build_audio_encoder(dims.audio_encoder)
    return parts


def meta_parts(dims: ModelDims, vocab_size: int) -> dict[str, nn.Module]:
    """Every part of a model of ``dims`` on the meta device (no weights): what conversion loads onto."""
    return build_model(dims, vocab_size, device="meta").parts()


def build_model(dims: ModelDims, vocab_size: int, *, device: str = "meta", name: str = "unnamed") -> AudioStoryModel:
    """The container with every part; on ``device="meta"`` no weights are allocated (to be loaded strictly)."""
    from .weights.checkpoint import empty_weights

    if device == "meta":
        with empty_weights():
            parts = build_parts(dims, vocab_size)
    else:
        parts = build_parts(dims, vocab_size)
    return AudioStoryModel(name=name, dims=dims, tokenizer=None, **parts)  # type: ignore[arg-type]


def tiny_random_model(seed: int = 0) -> AudioStoryModel:
    """Toy-size model with random weights (fp32, CPU), identical on every build for a given seed."""
    import torch

    from .planner.tokens import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    dims = tiny_dims()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = build_parts(dims, len(tokenizer))
    model = AudioStoryModel(name=TINY_RANDOM, dims=dims, tokenizer=tokenizer, **parts)  # type: ignore[arg-type]
    model.extra["canvas"] = CANVAS_FIXED  # the released architecture's stand-in renders like it
    for module in model.parts().values():
        module.eval()
    return model


def save_model(
    model: AudioStoryModel,
    path: Path,
    *,
    info_extra: dict[str, Any] | None = None,
    base_model: str | None = None,
    force: bool = False,
) -> Path:
    """Write ``model`` as a model folder (weights, sidecar, tokenizer) that ``load_model_folder`` reads back."""
    from .planner.tokens import save_tokenizer
    from .weights.checkpoint import ModelInfo, save_model_folder

    # the model's own flag wins over an ``extra`` copied from the folder it was trained from
    extra = {**model.extra, **(info_extra or {}), "resampler_trained": model.resampler_trained}
    info = ModelInfo(name=model.name, vocab_size=len(model.tokenizer), base_model=base_model, extra=extra)
    save_model_folder(
        Path(path),
        model.parts(),
        model.dims,
        info,
        force=force,
        write_extra=lambda tmp: save_tokenizer(model.tokenizer, tmp / "tokenizer"),
    )
    return Path(path)


def load_model_folder(path: Path, runtime: Runtime, *, name: str | None = None) -> AudioStoryModel:
    """Build on the meta device from the sidecar's dims, then fill every part strictly from the safetensors."""
    from .planner.reasoner import reset_rotary_buffers
    from .planner.tokens import load_tokenizer
    from .weights.checkpoint import load_parts_strict, read_sidecar

    meta = read_sidecar(Path(path))
    if meta.tokenizer_dir is None:
        raise ModelError(f"{path} has no tokenizer/ folder; the model folder is incomplete")
    tokenizer = load_tokenizer(meta.tokenizer_dir)
    dims = meta.dims
    if dims.audio_encoder is not None and "audio_encoder" not in meta.parts:
        from dataclasses import replace

        dims = replace(dims, audio_encoder=None)
    model = build_model(dims, len(tokenizer), name=name or meta.name)
    model.tokenizer = tokenizer
    stray = sorted(set(meta.parts) - set(model.parts()))
    if stray:
        raise WeightsError(
            f"{path} holds weights for {', '.join(stray)}, which its dims do not use (codec: {dims.codec_kind}); "
            "the model folder is inconsistent, export it again"
        )
    dtypes = {part: _part_dtype(part, runtime) for part in model.parts()}
    load_parts_strict(Path(path), model.parts(), device=runtime.device, dtype=dtypes)
    reset_rotary_buffers(model.llm)
    model.revision = meta.sources[0].revision if meta.sources else None
    model.resampler_trained = bool(meta.extra.get("resampler_trained", False))
    model.extra = dict(meta.extra)
    for module in model.parts().values():
        module.eval()
    return model


def _part_dtype(part: str, runtime: Runtime) -> torch.dtype:
    if part in ("vae", "audio_encoder"):
        return runtime.vae_dtype
    if part == "text_encoder":
        return runtime.text_encoder_dtype
    return runtime.dtype


def load_model(ref: str, runtime: Runtime, *, progress: ProgressFn = no_progress) -> AudioStoryModel:
    """A registered model name (``tiny-random``, ``demo``, ``audiostory-3b``) or a model folder path."""
    from .weights.registry import resolve_model_ref

    progress("load", 0, 1)
    resolved = resolve_model_ref(ref)
    if isinstance(resolved, Path):
        model = load_model_folder(resolved, runtime)
    elif resolved.kind == "builtin":
        model = tiny_random_model().place(runtime)
    else:
        model = load_model_folder(_weights_folder(resolved), runtime, name=resolved.name)
    progress("load", 1, 1)
    return model


def _weights_folder(spec: Any) -> Path:
    from .weights.download import converted_path, model_path

    if spec.kind == "bundled":
        return model_path(spec)
    folder = converted_path(spec)
    if not (folder / "audiostory.json").is_file():
        raise ModelError(
            f"model {spec.name!r} is not ready on this machine: run `audiostory models download {spec.name}` "
            "(downloads and converts it once), or try the pipeline offline with --model tiny-random "
            "(random weights: noise, not sound)"
        )
    return folder
