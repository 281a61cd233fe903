"""Training checkpoints (for ``--resume``) and the final output: a model folder the other commands load.

A checkpoint ``<out>/checkpoints/step-000500/`` holds:

* ``adapter_model.safetensors`` + ``adapter_config.json`` (when the trained module's ``llm`` is a peft LoRA
  model, as in the paper's stages): the LoRA adapter and trained norms in peft's format
  (``get_peft_model_state_dict``), usable with ``PeftModel.from_pretrained`` on the base LLM;
* ``trainable.safetensors``: every other trained tensor (embeddings, projectors, fusion, DiT, resampler; the whole
  LLM in planner pretraining; the VAE in VAE pretraining), keyed by the trained module's parameter name;
* ``optimizer.pt`` and ``scheduler.pt``: their state dicts (tensors and numbers only: ``weights_only`` loads);
* ``task_state.pt`` (some tasks): state beyond the trained module, e.g. a discriminator and its optimizer;
* ``state.json``: the kind of training, step, the options a resume must share, data hash. Written last: a
  folder without it is incomplete and ignored.

Every kind of training (``engine.run_task``) writes and resumes this one format.

The final output ``<out>/`` is a model folder (``audiostory.json`` + one safetensors file per part + ``tokenizer/``
+ ``t5_tokenizer/``) written by ``model.save_model`` with the LoRA merged into the base weights, so inference
never needs peft: ``audiostory tell --model <out>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError
from ..fsutil import write_json_atomic
from ..weights.registry import SIDECAR_NAME

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.json"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"  # torch.optim state_dict; under --fsdp the whole state keyed by parameter name
SCHEDULER_FILE = "scheduler.pt"
TASK_STATE_FILE = "task_state.pt"
FORMAT = "audiostory-train-checkpoint"
FORMAT_VERSION = 2  # 2: one format for every kind of training (the adapter files only with a LoRA LLM)
_STEP_RE = re.compile(r"^step-(\d{6,})$")


def checkpoint_dir(out: Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (with ``state.json``), oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def _adapter_state(llm: Any, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {
        k: v.detach().to("cpu").contiguous()
        for k, v in get_peft_model_state_dict(llm, state_dict=state_dict, save_embedding_layers=False).items()
    }


def peft_llm(module: torch.nn.Module) -> Any | None:
    """The module's LLM when it is a peft (LoRA) model, else None."""
    llm = getattr(module, "llm", None)
    return llm if hasattr(llm, "peft_config") else None


def trainable_state(
    module: torch.nn.Module, gathered: dict[str, torch.Tensor] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(adapter state in peft's format, every other trainable tensor by parameter name).

    ``gathered``: the whole trainable tensors by parameter name when the module itself holds shards (``--fsdp``).
    """
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    tensors = gathered if gathered is not None else dict(module.named_parameters())
    llm_state = None
    if gathered is not None:
        llm_state = {name.removeprefix("llm."): t for name, t in gathered.items() if name.startswith("llm.")}
    lora = peft_llm(module)
    adapter = _adapter_state(lora, llm_state) if lora is not None else {}
    managed = _peft_managed if lora is not None else (lambda _name: False)
    rest = {name: tensors[name].detach().to("cpu").contiguous() for name in names if not managed(name)}
    return adapter, rest


def _peft_managed(name: str) -> bool:
    return "lora_" in name or "modules_to_save" in name


def save_checkpoint(
    folder: Path,
    module: torch.nn.Module,
    optimizer_state: dict[str, Any],
    scheduler_state: dict[str, Any],
    state: dict[str, Any],
    *,
    keep: int = 0,
    gathered: dict[str, torch.Tensor] | None = None,
    task_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary sibling folder, then rename); keep the newest ``keep`` (0: all).

    ``gathered``: the whole trainable tensors when ``module`` holds shards (see ``trainable_state``).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        adapter, rest = trainable_state(module, gathered)
        lora = peft_llm(module)
        if lora is not None:
            save_file(adapter, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
            write_json_atomic(tmp / ADAPTER_CONFIG, _jsonable(lora.peft_config["default"].to_dict()))
        save_file(rest, str(tmp / TRAINABLE_FILE), metadata={"format": "pt"})
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        torch.save(scheduler_state, tmp / SCHEDULER_FILE)
        if task_state is not None:
            torch.save(task_state, tmp / TASK_STATE_FILE)
        write_json_atomic(tmp / STATE_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION, **state})
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep > 0:
        for _, old in list_checkpoints(folder.parent.parent)[:-keep]:
            shutil.rmtree(old)
    return folder


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def read_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read {path} ({exc}); delete that checkpoint folder and resume again") from exc
    if state.get("format") != FORMAT or not isinstance(state.get("step"), int):
        raise TrainingError(f"{path} is not an audiostory training checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise TrainingError(f"{folder} was written by a newer audiostory; upgrade to resume it")
    if state.get("format_version", 0) < FORMAT_VERSION:
        raise TrainingError(
            f"{folder} was written by an earlier audiostory (checkpoint format {state.get('format_version')}); "
            "finish that run with the version that started it, or start it over in a new --out"
        )
    return dict(state)


def load_weights(folder: Path, module: torch.nn.Module) -> dict[str, Any]:
    """Restore the trainable weights of an unsharded ``module`` from ``folder`` strictly; returns its state."""
    folder = Path(folder)
    state = read_state(folder)
    with unreadable_as_error(folder):
        _load_trained(folder, module)
    return state


def _load_trained(folder: Path, module: torch.nn.Module) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    device = next(module.parameters()).device
    expected_adapter, expected_rest = trainable_state(module)
    lora = peft_llm(module)
    if lora is not None:
        adapter = load_file(str(folder / ADAPTER_FILE), device=str(device))
        _same_keys(set(expected_adapter), set(adapter), folder / ADAPTER_FILE)
        result = set_peft_model_state_dict(lora, adapter)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise TrainingError(f"{folder / ADAPTER_FILE} has keys the model lacks: {unexpected[:5]}")
    elif (folder / ADAPTER_FILE).exists():
        raise TrainingError(f"{folder} holds a LoRA adapter, but this run trains no LoRA; resume with the same command")
    rest = load_file(str(folder / TRAINABLE_FILE), device=str(device))
    _same_keys(set(expected_rest), set(rest), folder / TRAINABLE_FILE)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, tensor in rest.items():
            if params[name].shape != tensor.shape:
                raise TrainingError(
                    f"{folder}: {name} is {list(tensor.shape)}, the model has {list(params[name].shape)}"
                )
            params[name].copy_(tensor)


def read_optimizer_state(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimizer state, scheduler state) of a checkpoint, on the CPU."""
    folder = Path(folder)
    with unreadable_as_error(folder):
        return (
            torch.load(folder / OPTIMIZER_FILE, map_location="cpu", weights_only=True),
            torch.load(folder / SCHEDULER_FILE, weights_only=True),
        )


@contextlib.contextmanager
def unreadable_as_error(folder: Path) -> Iterator[None]:
    """A damaged or missing checkpoint file becomes one line that says what to do (torch, safetensors and zip
    raise many kinds of errors for a truncated file)."""
    try:
        yield
    except TrainingError:
        raise
    except Exception as error:
        raise TrainingError(
            f"cannot resume from {folder}: a file in it is unreadable ({type(error).__name__}); delete that "
            "checkpoint folder to resume from the one before, or start the run over"
        ) from error


def read_task_state(folder: Path) -> dict[str, Any] | None:
    """A checkpoint's ``task_state.pt`` (on the CPU), or None when its task keeps none."""
    path = Path(folder) / TASK_STATE_FILE
    if not path.is_file():
        return None
    with unreadable_as_error(Path(folder)):
        return torch.load(path, map_location="cpu", weights_only=True)


def _same_keys(expected: set[str], found: set[str], where: Path) -> None:
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise TrainingError(
            f"{where} does not match this run's trainable set (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "resume with the same --stage, --model and data kinds"
        )


# -- the final model folder ----------------------------------------------------------------------------------


def export_model(
    out: Path,
    model: Any,
    t5_tokenizer: Any,
    *,
    base_model: str,
    info_extra: dict[str, Any],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` (LoRA already merged) as a model folder INTO ``out``, beside the run's other files.

    ``save_model`` writes a whole folder atomically, so it writes a hidden sibling inside ``out`` whose files are
    then moved in, ``audiostory.json`` last (a folder is only a model once its sidecar is there). Files of an
    earlier export in ``out`` are replaced.
    """
    from ..model import save_model
    from .t5_tokenizer import T5_TOKENIZER_DIR, save_t5_tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        for part in (model.llm, model.bridge, model.dit):
            part.to(dtype)
    staging = out / f".export-{uuid.uuid4().hex[:8]}"
    try:
        save_model(model, staging, info_extra=info_extra, base_model=base_model)
        save_t5_tokenizer(t5_tokenizer, staging / T5_TOKENIZER_DIR)
        _remove_previous_export(out)
        names = sorted((p.name for p in staging.iterdir()), key=lambda n: n == SIDECAR_NAME)
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _remove_previous_export(out: Path) -> None:
    from ..weights.checkpoint import TOKENIZER_DIR
    from .t5_tokenizer import T5_TOKENIZER_DIR

    sidecar = out / SIDECAR_NAME
    if not sidecar.is_file():
        return
    try:
        parts = json.loads(sidecar.read_text(encoding="utf-8")).get("parts", {})
    except json.JSONDecodeError:
        parts = {}
    sidecar.unlink()  # first: a half-replaced folder must not look like a model
    for entry in parts.values():
        name = Path(str(entry.get("file", ""))).name
        if name.endswith(".safetensors"):
            (out / name).unlink(missing_ok=True)
    for folder in (TOKENIZER_DIR, T5_TOKENIZER_DIR):
        if (out / folder).is_dir():
            shutil.rmtree(out / folder)
