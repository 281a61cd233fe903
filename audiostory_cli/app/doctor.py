"""Environment report for `audiostory doctor`."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from .. import __version__
from ..resources import cache_dir
from ..runtime import make_runtime, memory_summary

KEY_PACKAGES = (
    "torch",
    "torchaudio",
    "transformers",
    "diffusers",
    "peft",
    "accelerate",
    "huggingface-hub",
    "safetensors",
    "soundfile",
    "pyloudnorm",
    "typer",
    "rich",
)


def collect_report(device_flag: str = "auto") -> dict[str, Any]:
    runtime = make_runtime(device_flag)
    memory = memory_summary(runtime.device)
    report: dict[str, Any] = {
        "audiostory": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(runtime.device),
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "dtype reason": runtime.reason,
        "vae/t5 dtype": str(runtime.vae_dtype).removeprefix("torch."),
        "memory": _format_memory(memory),
        "versions": {name: _version(name) for name in KEY_PACKAGES},
        "cache": str(cache_dir()),
        "models": _model_state(),
    }
    return report


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _format_memory(memory: dict[str, Any]) -> str:
    if memory.get("total") is None:
        return "unknown"
    gib = 1024**3
    return f"{memory['kind']} {memory['free'] / gib:.1f} GiB free of {memory['total'] / gib:.1f} GiB"


def _model_state() -> dict[str, str]:
    try:
        from ..weights.download import model_status
        from ..weights.registry import list_models
    except ImportError:
        return {}
    return {spec.name: model_status(spec) for spec in list_models()}
