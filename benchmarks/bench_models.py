"""The models the benchmark runs: registered ones through ``load_model``, and random full-architecture ones.

``audiostory-3b-random`` is our model classes at the released AudioStory-3B dimensions with random weights (speed
does not depend on the weight values), built in memory with no download:

- ``--scale full``: ``config.full_dims()`` (Qwen2.5-3B, TangoFlux DiT, flan-t5-large, Oobleck), vocab 152277;
- ``--scale small``: full DiT, T5 and VAE; the LLM at Qwen2.5-0.5B dims (hidden 896, 24 layers);
- ``--scale mid``: real widths and latent geometry (64 latent channels, 645-frame window, 2048 hop, 64 + 8
  bridge tokens, 1024-wide DiT and T5) but fewer layers and a narrower VAE decoder, so that the baseline
  finishes in minutes on a 2-core CPU. What each part keeps is in ``SCALE_NOTES``.

Random models use the tiny byte-level tokenizer (same special-token layout, more tokens per word than Qwen's) and
a scripted plan (``model.extra["random_weights"]``), so every run plans the same story. The Whisper audio encoder
is left out: ``tell`` never uses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from audiostory_cli.config import (
    BridgeDims,
    DiTDims,
    ModelDims,
    ReasonerDims,
    TextEncoderDims,
    VAEDims,
    full_dims,
)
from audiostory_cli.model import OFFICIAL_JOIN, AudioStoryModel, build_parts, load_model
from audiostory_cli.runtime import Runtime

RANDOM_FULL = "audiostory-3b-random"
MODEL_CHOICES = ("tiny-random", "demo", RANDOM_FULL)
SCALES = ("full", "small", "mid")
FULL_VOCAB = 152277
SCALE_NOTES = {
    "full": "AudioStory-3B dims: Qwen2.5-3B (36 x 2048), DiT 6+18 blocks x 1024, flan-t5-large, Oobleck 128 ch",
    "small": "full DiT (6+18 x 1024), flan-t5-large, Oobleck 128 ch; LLM at Qwen2.5-0.5B dims (24 x 896)",
    "mid": (
        "real widths and geometry (DiT 1024 = 8 x 128 heads, 64 latent ch, 645-frame window, 64+8 bridge tokens, "
        "vocab 152277) with DiT 1+3 blocks (of 6+18), T5 6 x 1024 (of 24), Oobleck decoder 32 ch (of 128, "
        "~1/16 of its FLOPs), LLM 8 x 512"
    ),
}


@dataclass(frozen=True)
class LoadedModel:
    model: AudioStoryModel
    label: str  # e.g. "audiostory-3b-random-mid"
    seconds: float  # build or load time, placement included
    notes: str


def bench_dims(scale: str) -> ModelDims:
    """The dims for ``audiostory-3b-random`` at ``scale`` (see the module docstring)."""
    full = replace(full_dims(), audio_encoder=None)
    if scale == "full":
        return full
    if scale == "small":
        llm = ReasonerDims(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2, intermediate_size=4864)
        return replace(full, reasoner=llm, bridge=replace(full.bridge, llm_dim=896))
    if scale == "mid":
        return replace(
            full,
            reasoner=ReasonerDims(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=2, intermediate_size=1536),
            bridge=BridgeDims(llm_dim=512),
            dit=DiTDims(num_layers=1, num_single_layers=3),
            text_encoder=TextEncoderDims(num_layers=6),
            vae=VAEDims(decoder_channels=32),
        )
    raise ValueError(f"--scale {scale!r} is not one of {', '.join(SCALES)}")


def random_model(dims: ModelDims, *, name: str, seed: int = 0) -> AudioStoryModel:
    """Our model classes at ``dims`` with seeded random weights (fp32, CPU) and the tiny tokenizer."""
    from audiostory_cli.planner.tokens import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    vocab = dims.reasoner.vocab_size or len(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parts = build_parts(dims, vocab)
    model = AudioStoryModel(name=name, dims=dims, tokenizer=tokenizer, **parts)  # type: ignore[arg-type]
    model.extra["random_weights"] = True  # plan_story then scripts the plan from the prompt
    # it stands in for the converted official checkpoint: render and plan with its defaults
    model.extra.update(canvas="fixed", join=dict(OFFICIAL_JOIN), generation={"repetition_penalty": 1.05})
    for module in model.parts().values():
        module.eval()
    return model


def load_bench_model(name: str, scale: str, runtime: Runtime) -> LoadedModel:
    """Build or load ``name`` and place it on ``runtime``; the time includes placement."""
    start = time.perf_counter()
    if name == RANDOM_FULL:
        model = random_model(bench_dims(scale), name=f"{RANDOM_FULL}-{scale}").place(runtime)
        label, notes = f"{RANDOM_FULL}-{scale}", SCALE_NOTES[scale]
    else:  # a registered name or a model folder, loaded as `tell` loads it
        model = load_model(name, runtime)
        if name in MODEL_CHOICES:
            label, notes = name, "registered model, loaded through audiostory_cli.model.load_model"
        else:
            label = f"folder-{Path(name).name}"
            notes = f"model folder {name} (dims {model.name}), loaded through audiostory_cli.model.load_model"
    if runtime.device.type == "cuda":
        torch.cuda.synchronize(runtime.device)
    return LoadedModel(model=model, label=label, seconds=time.perf_counter() - start, notes=notes)


def count_parameters(model: AudioStoryModel) -> dict[str, int]:
    return {name: sum(p.numel() for p in part.parameters()) for name, part in model.parts().items()}
