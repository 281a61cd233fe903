"""Device and dtype, chosen once and passed down explicitly. Nothing here runs at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class Runtime:
    """The compute placement for one run: where models live and in which precision.

    ``dtype`` is for the LLM and the DiT; ``vae_dtype`` and ``text_encoder_dtype`` never use fp16, which
    overflows in Oobleck and T5.
    """

    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    text_encoder_dtype: torch.dtype
    reason: str

    def describe(self) -> str:
        return f"{self.device} {str(self.dtype).removeprefix('torch.')} ({self.reason})"


def resolve_device(flag: str = "auto") -> torch.device:
    """cuda, then mps, then cpu; an explicit flag must be available or we say why not."""
    import torch

    flag = (flag or "auto").lower()
    if flag not in DEVICE_CHOICES and not flag.startswith("cuda:"):
        raise UsageError(f"--device {flag!r} is not one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if flag == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if flag.startswith("cuda"):
        if not torch.cuda.is_available():
            if torch.version.cuda:  # a CUDA build: the GPU (or its driver) is what is missing
                raise DeviceError(
                    f"--device {flag} asked for CUDA, but no CUDA GPU was found (torch is built for CUDA "
                    f"{torch.version.cuda}; check `nvidia-smi` and CUDA_VISIBLE_DEVICES); use --device cpu (or auto)"
                )
            raise DeviceError(
                f"--device {flag} asked for CUDA, but this torch build has no CUDA support; "
                "use --device cpu (or auto), or install a CUDA build of torch"
            )
        return torch.device(flag)
    if flag == "mps":
        if not _mps_available():
            raise DeviceError("--device mps asked for Apple MPS, which is not available here; use --device cpu")
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_dtype(device: torch.device, override: str | None = None) -> tuple[torch.dtype, str]:
    """The compute dtype for ``device`` and the reason for it."""
    import torch

    if override:
        table = {
            "fp32": torch.float32,
            "float32": torch.float32,
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
            "fp16": torch.float16,
            "float16": torch.float16,
        }
        if override not in table:
            raise UsageError(f"--dtype {override!r} is not one of fp32, bf16, fp16")
        return table[override], f"--dtype {override}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "CUDA with bf16 support"
        return torch.float16, "CUDA without bf16; fp16 for LLM and DiT, VAE and T5 stay fp32"
    if device.type == "mps":
        return torch.float16, "Apple MPS: fp16 for LLM and DiT, VAE and T5 stay fp32"
    return torch.float32, "CPU: fp32 (half precision is slow or unsupported on CPUs)"


def make_runtime(device_flag: str = "auto", dtype_override: str | None = None) -> Runtime:
    import torch

    device = resolve_device(device_flag)
    dtype, reason = pick_dtype(device, dtype_override)
    safe = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    return Runtime(device=device, dtype=dtype, vae_dtype=safe, text_encoder_dtype=safe, reason=reason)


def cpu_runtime() -> Runtime:
    """fp32 on CPU: what tests and the bundled demo use."""
    return make_runtime("cpu")


def memory_summary(device: torch.device) -> dict[str, Any]:
    """Total and free memory for ``device`` in bytes (system RAM for cpu and mps)."""
    import torch

    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return {"kind": "vram", "total": int(total), "free": int(free)}
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        avail = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
        return {"kind": "ram", "total": int(pages * size), "free": int(avail * size)}
    except (ValueError, OSError, AttributeError):
        return {"kind": "ram", "total": None, "free": None}
