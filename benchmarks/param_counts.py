"""Parameter counts of every part of the full-size AudioStory stack, built on the ``meta`` device (no memory, no
weights, a few seconds).

    .venv/bin/python benchmarks/param_counts.py [--out benchmarks/param_counts.json] [--parts dit,vae,...]

Prints a table on stdout and writes the counts as JSON. Expected: DiT ≈ 518.0 M (FluxTransformer2DModel
516.7 M + fc + duration embedder), VAE ≈ 156.1 M, Whisper-large-v3 encoder ≈ 635 M, flan-t5-large encoder
≈ 341 M, Qwen2.5-3B ≈ 3.09 B (tied embeddings counted once, 152277 rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audiostory_cli.config import ModelDims, full_dims  # noqa: E402

PARTS = ("dit", "vae", "audio_encoder", "text_encoder", "llm", "bridge")


def count(module: nn.Module) -> int:
    """Unique parameters (tied weights once)."""
    return sum(p.numel() for p in module.parameters())


def _dit(dims: ModelDims) -> dict[str, int]:
    from audiostory_cli.generator.dit import AudioDiT

    model = AudioDiT(dims.dit)
    return {
        "dit": count(model),
        "dit.transformer": count(model.transformer),
        "dit.fc": count(model.fc),
        "dit.duration_emebdder": count(model.duration_emebdder),
    }


def _vae(dims: ModelDims) -> dict[str, int]:
    from audiostory_cli.generator.vae import build_vae

    model = build_vae(dims.vae)
    return {"vae": count(model), "vae.encoder": count(model.encoder), "vae.decoder": count(model.decoder)}


def _audio_encoder(dims: ModelDims) -> dict[str, int]:
    from audiostory_cli.planner.audio_encoder import AudioEncoder

    if dims.audio_encoder is None:
        return {}
    model = AudioEncoder(dims.audio_encoder)
    return {"audio_encoder.whisper": count(model.whisper), "audio_encoder.resampler": count(model.resampler)}


def _text_encoder(dims: ModelDims) -> dict[str, int]:
    from audiostory_cli.generator.text_encoder import build_text_encoder

    return {"text_encoder": count(build_text_encoder(dims.text_encoder))}


def _llm(dims: ModelDims) -> dict[str, int]:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    r = dims.reasoner
    config = Qwen2Config(
        hidden_size=r.hidden_size,
        num_hidden_layers=r.num_layers,
        num_attention_heads=r.num_heads,
        num_key_value_heads=r.num_kv_heads,
        intermediate_size=r.intermediate_size,
        vocab_size=r.vocab_size,
        rope_theta=r.rope_theta,
        rms_norm_eps=r.rms_norm_eps,
        max_position_embeddings=r.max_position_embeddings,
        tie_word_embeddings=r.tie_word_embeddings,
    )
    return {"llm": count(Qwen2ForCausalLM(config))}


def _bridge(dims: ModelDims) -> dict[str, int]:
    """Official shapes: two Linear-GELU-Linear projectors and the fusion MultiheadAttention."""
    b = dims.bridge
    projector = nn.Sequential(
        nn.Linear(b.llm_dim, b.projector_hidden), nn.GELU(), nn.Linear(b.projector_hidden, b.out_dim)
    )
    fusion = nn.MultiheadAttention(b.out_dim, b.fusion_heads)
    return {"bridge.projectors": 2 * count(projector), "bridge.fusion": count(fusion)}


# Rows that break a part down further; they are not added to the total.
DETAIL = {"dit.transformer", "dit.fc", "dit.duration_emebdder", "vae.encoder", "vae.decoder"}

BUILDERS: dict[str, Callable[[ModelDims], dict[str, int]]] = {
    "dit": _dit,
    "vae": _vae,
    "audio_encoder": _audio_encoder,
    "text_encoder": _text_encoder,
    "llm": _llm,
    "bridge": _bridge,
}


def count_parts(parts: tuple[str, ...] = PARTS, dims: ModelDims | None = None) -> dict[str, int]:
    """``{name: parameters}`` for the chosen parts of the full model, built on the meta device."""
    dims = dims or full_dims()
    unknown = set(parts) - set(BUILDERS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    counts: dict[str, int] = {}
    with torch.device("meta"):
        for part in parts:
            counts.update(BUILDERS[part](dims))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "param_counts.json")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = count_parts(tuple(p for p in args.parts.split(",") if p))
    elapsed = time.perf_counter() - started
    width = max(len(k) for k in counts)
    print(f"{'part':<{width}}  {'parameters':>15}  {'millions':>9}")
    for name, n in counts.items():
        print(f"{name:<{width}}  {n:>15,}  {n / 1e6:>9.2f}")
    top = sum(n for name, n in counts.items() if name not in DETAIL)
    print(f"{'total':<{width}}  {top:>15,}  {top / 1e6:>9.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "dims": "full_dims()",
        "device": "meta",
        "seconds": round(elapsed, 2),
        "parameters": counts,
        "total": top,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
