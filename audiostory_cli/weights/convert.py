"""Turn the official AudioStory checkpoint and the files it builds on into one of our model folders, once.

Inputs (one folder each; ``classify_source`` tells them apart by their files):

- ``audiostory``: ``config.yaml`` + ``pytorch_model.bin`` (TencentARC/AudioStory-3B)
- ``qwen``: Qwen2.5-3B-Instruct (tokenizer; base weights if the bin lacks them)
- ``tangoflux``: ``vae.safetensors`` (declare-lab/TangoFlux) or an official ``Flux_detokenizer`` folder whose
  ``model.safetensors`` is the VAE
- ``flan-t5`` (optional): google/flan-t5-large, used only if the bin has no ``tangoflux.text_encoder.*``
- ``whisper`` (optional): openai/whisper-large-v3; without it the model has no audio input (``continue``)

Output: a model folder (``checkpoint.py``) with the LoRA merged, every key accounted for, the tokenizer (ids
asserted), and a sidecar naming the source repos, revisions and sha256 of the files used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import CANVAS_FIXED, OFFICIAL_JOIN, ModelDims, full_dims
from ..errors import CheckpointKeyError, InputError, ModelError, UsageError, WeightsError
from ..progress import ProgressFn, no_progress
from .checkpoint import ModelFolderMeta, ModelInfo, SourceRef, load_state_strict, merge_key_errors, save_model_folder
from .download import PART_MANIFEST, converted_path, model_path, read_part_manifest, sha256_file
from .official import (
    LLM_PREFIX,
    MappedCheckpoint,
    OfficialConfig,
    combine,
    load_official_bin,
    map_official_state_dict,
    map_t5_state_dict,
    map_vae_state_dict,
    map_whisper_state_dict,
    read_official_config,
)
from .registry import ModelSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

SOURCE_KINDS = ("audiostory", "qwen", "tangoflux", "flan-t5", "whisper")
REQUIRED_SOURCES = ("audiostory", "qwen", "tangoflux")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
NEVER_FP16 = ("vae", "text_encoder")  # Oobleck and T5 overflow in fp16: stored in fp32 when fp16 is asked

RESAMPLER_PREFIX = "seedx.whisper_resampler_llava."
NOTE_NO_RESAMPLER = (
    "the AudioStory checkpoint has no whisper_resampler_llava weights, so the Whisper source is not used and the "
    "model has no audio input: `continue` plans from its INSTRUCTION alone (the released inference never reads "
    "audio either)"
)

BuildParts = Callable[[ModelDims, int], Mapping[str, "nn.Module"]]
BuildTokenizer = Callable[[Path], Any]


def classify_source(folder: Path) -> str:
    """Which kind of source a folder is, from the files it holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--source {folder} is not a folder")
    if (folder / "pytorch_model.bin").is_file() and (folder / "config.yaml").is_file():
        return "audiostory"
    if (folder / "vae.safetensors").is_file():
        return "tangoflux"
    config = _read_json(folder / "config.json")
    model_type = str(config.get("model_type", ""))
    if model_type == "qwen2":
        return "qwen"
    if model_type == "t5":
        return "flan-t5"
    if model_type == "whisper":
        return "whisper"
    if "num_single_layers" in config and (folder / "model.safetensors").is_file():
        return "tangoflux"  # the official Flux_detokenizer folder: model.safetensors is the VAE
    raise InputError(
        f"--source {folder} is not recognised: expected an AudioStory folder (config.yaml + pytorch_model.bin), "
        "TangoFlux (vae.safetensors), or a Qwen2 / T5 / Whisper model folder (config.json)"
    )


def classify_sources(folders: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in folders:
        kind = classify_source(folder)
        if kind in found:
            raise UsageError(f"two --source folders are {kind}: {found[kind]} and {folder}; pass one of each")
        found[kind] = Path(folder)
    return found


def sources_from_download(spec: ModelSpec) -> dict[str, Path]:
    """The downloaded part folders of a registered model, by source kind."""
    kinds = {
        "audiostory": "audiostory",
        "qwen": "qwen",
        "tangoflux": "tangoflux",
        "flan-t5": "flan-t5",
        "whisper": "whisper",
    }
    found = {}
    for part in spec.parts:
        if part.name in kinds:
            found[kinds[part.name]] = model_path(spec) / part.name
    return found


def convert_model(
    spec: ModelSpec,
    *,
    build_parts: BuildParts,
    dtype: str = "bf16",
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> ModelFolderMeta:
    """Convert a downloaded registered model into ``converted_path(spec)``; ``build_parts`` builds our modules
    on the meta device (``model.meta_parts``: passed in, so that the weights room never imports the model)."""
    if spec.kind != "hub":
        raise ModelError(f"model {spec.name!r} is {spec.kind}; only downloaded hub models are converted")
    from .download import model_status

    if model_status(spec) != "present":
        raise WeightsError(f"{spec.name} is not fully downloaded; run `audiostory models download {spec.name}` first")
    return convert_official(
        sources_from_download(spec),
        converted_path(spec),
        build_parts=build_parts,
        dtype=dtype,
        force=force,
        name=spec.name,
        progress=progress,
    )


def convert_official(
    sources: Mapping[str, Path],
    out_dir: Path,
    *,
    build_parts: BuildParts,
    dtype: str = "bf16",
    force: bool = False,
    name: str = "audiostory-3b",
    progress: ProgressFn = no_progress,
    base_dims: ModelDims | None = None,
    build_tokenizer: BuildTokenizer | None = None,
) -> ModelFolderMeta:
    """Map, load strictly and write (see the module docstring). ``build_parts(dims, vocab)`` builds our modules
    on the meta device (``audiostory_cli.model.meta_parts``); ``base_dims`` and ``build_tokenizer`` default to the
    released architecture and ``planner.tokens.build_full_tokenizer``; tests pass tiny ones."""
    import torch

    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r} must be one of {', '.join(DTYPES)}")
    lacking = [k for k in REQUIRED_SOURCES if k not in sources]
    if lacking:
        raise UsageError(f"missing --source for {', '.join(lacking)} (need: {', '.join(REQUIRED_SOURCES)})")
    unknown = sorted(set(sources) - set(SOURCE_KINDS))
    if unknown:
        raise UsageError(f"unknown source kind(s) {', '.join(unknown)}; known: {', '.join(SOURCE_KINDS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise UsageError(f"{out_dir} already exists; pass --force to replace it")
    steps = 6
    progress("convert", 0, steps)

    # 1. config.yaml → dims (token counts, scale, LoRA rank)
    audiostory = Path(sources["audiostory"])
    config = read_official_config(audiostory / "config.yaml")
    official = load_official_bin(audiostory / "pytorch_model.bin")
    has_resampler = any(key.startswith(RESAMPLER_PREFIX) for key in official)
    dims = _dims_for(config, base_dims or full_dims(), whisper="whisper" in sources and has_resampler)

    # 2. tokenizer, ids asserted; the decoding defaults the official inference inherits from Qwen's folder
    generation = read_generation_config(Path(sources["qwen"]))
    tokenizer = (build_tokenizer or _full_tokenizer)(Path(sources["qwen"]))
    vocab_size = len(tokenizer)
    if dims.reasoner.vocab_size and vocab_size != dims.reasoner.vocab_size:
        raise ModelError(f"the tokenizer has {vocab_size} tokens but the model expects {dims.reasoner.vocab_size}")
    progress("convert", 1, steps)

    # 3. map the official bin (+ base LLM weights when the bin has only the trained tensors)
    base_llm = None if _has_base_llm(official) else _read_safetensors_dir(Path(sources["qwen"]))
    mapped = map_official_state_dict(
        official, dims, lora_alpha=config.lora_alpha, lora_r=config.lora_r, base_llm=base_llm
    )
    progress("convert", 2, steps)

    # 4. the public parts
    extra_maps: list[MappedCheckpoint] = [map_vae_state_dict(_read_vae(Path(sources["tangoflux"])))]
    if "text_encoder" not in mapped.parts:
        if "flan-t5" not in sources:
            raise UsageError("the AudioStory checkpoint has no T5 encoder; add --source <google/flan-t5-large folder>")
        extra_maps.append(map_t5_state_dict(_read_safetensors_dir(Path(sources["flan-t5"]))))
    if "whisper" in sources and has_resampler:  # present: the resampler and Whisper load strictly
        extra_maps.append(map_whisper_state_dict(_read_safetensors_dir(Path(sources["whisper"]))))
    elif "whisper" in sources:
        mapped = _with_note(mapped, NOTE_NO_RESAMPLER)
        log.warning(NOTE_NO_RESAMPLER)
    else:
        mapped = _drop_part(mapped, "audio_encoder", "no Whisper source given: the model has no audio input")
    mapped = combine(mapped, *extra_maps)
    progress("convert", 3, steps)

    # 5. build on meta and load strictly: every key used, or ignored with its reason
    parts = build_parts(dims, vocab_size)
    load_mapped_strict(parts, mapped)
    progress("convert", 4, steps)

    # 6. write the folder
    torch_dtype = getattr(torch, DTYPES[dtype])
    part_dtypes = {p: torch.float32 for p in NEVER_FP16} if dtype == "fp16" else {}
    info = ModelInfo(
        name=name,
        vocab_size=vocab_size,
        sources=tuple(_source_ref(k, Path(v)) for k, v in sources.items()),
        extra={
            "converted_from": "official",
            "canvas": CANVAS_FIXED,
            "generation": generation,
            "join": dict(OFFICIAL_JOIN),
            "official_config": _config_summary(config),
            "ignored": dict(mapped.ignored),
            "notes": list(mapped.notes),
        },
    )
    progress("convert", 5, steps)
    meta = save_model_folder(
        out_dir,
        parts,
        dims,
        info,
        dtype=torch_dtype,
        part_dtypes=part_dtypes,
        force=force,
        write_extra=lambda tmp: _save_tokenizer(tokenizer, tmp),
    )
    progress("convert", 6, steps)
    for note in mapped.notes:
        log.info(note)
    return meta


def load_mapped_strict(
    parts: Mapping[str, nn.Module], mapped: MappedCheckpoint, *, key_check_only: bool = False
) -> None:
    """Load every part strictly; a mapped part the model lacks (or the reverse) is an error too.
    ``key_check_only``: the mapped tensors are on the meta device (names and shapes only)."""
    errors: list[CheckpointKeyError] = []
    extra = sorted(mapped.parts - set(parts))
    if extra:
        errors.append(
            CheckpointKeyError(
                f"the checkpoint has weights for {', '.join(extra)}, which the model being built does not have",
                unexpected=[f"{p}.*" for p in extra],
            )
        )
    for name, module in parts.items():
        try:
            load_state_strict(module, mapped.part_state(name), prefix=f"{name}.", key_check_only=key_check_only)
        except CheckpointKeyError as exc:
            errors.append(exc)
    if errors:
        raise merge_key_errors(errors) if len(errors) > 1 else errors[0]


def _dims_for(config: OfficialConfig, base: ModelDims, *, whisper: bool) -> ModelDims:
    dims = config.apply(base)
    if config.vocab_size is not None and dims.reasoner.vocab_size and config.vocab_size != dims.reasoner.vocab_size:
        raise WeightsError(
            f"config.yaml says vocab_size {config.vocab_size}, the model expects {dims.reasoner.vocab_size}"
        )
    if config.llm_dim is not None and config.llm_dim != dims.reasoner.hidden_size:
        raise WeightsError(
            f"config.yaml says agent_model.model_dims {config.llm_dim}, but the LLM hidden size is "
            f"{dims.reasoner.hidden_size}"
        )
    audio = dims.audio_encoder
    if audio is not None:
        for value, want, label in (
            (config.resampler_in_dim, audio.d_model, "ori_embed_dim"),
            (config.resampler_out_dim, audio.llm_dim, "tgt_embed_dim"),
        ):
            if value is not None and value != want:
                raise WeightsError(f"config.yaml: whisper_resampler_llava.{label} = {value}, expected {want}")
    if not whisper:
        dims = dataclasses.replace(dims, audio_encoder=None)
    return dims


def read_generation_config(qwen_dir: Path) -> dict[str, Any]:
    """What the official inference's ``generate`` inherits from the Qwen folder's ``generation_config.json``:
    ``repetition_penalty`` (1.05 for Qwen2.5-3B-Instruct), which transformers applies even to greedy decoding.
    Without the file transformers uses 1.0, and so do we."""
    config = _read_json(qwen_dir / "generation_config.json")
    penalty = config.get("repetition_penalty", 1.0)
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not penalty > 0:
        raise WeightsError(
            f"{qwen_dir / 'generation_config.json'}: repetition_penalty {penalty!r} must be a positive number"
        )
    return {"repetition_penalty": float(penalty)}


def _has_base_llm(state: Mapping[str, Any]) -> bool:
    probe = f"{LLM_PREFIX}model.layers.0.self_attn.q_proj"
    return f"{probe}.weight" in state or f"{probe}.base_layer.weight" in state


def _with_note(mapped: MappedCheckpoint, note: str) -> MappedCheckpoint:
    return MappedCheckpoint(state=mapped.state, ignored=mapped.ignored, notes=(*mapped.notes, note))


def _drop_part(mapped: MappedCheckpoint, part: str, reason: str) -> MappedCheckpoint:
    head = part + "."
    ignored = dict(mapped.ignored)
    ignored.update({k: reason for k in mapped.state if k.startswith(head)})
    return MappedCheckpoint(
        state={k: v for k, v in mapped.state.items() if not k.startswith(head)}, ignored=ignored, notes=mapped.notes
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc.msg})") from exc
    return data if isinstance(data, dict) else {}


def _read_safetensors_dir(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a hub model folder: ``model.safetensors`` or the shards named by its index."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not shards:
            raise WeightsError(f"{index} lists no weight files")
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise WeightsError(f"{folder} has no model.safetensors (or index); safetensors weights are required")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = folder / shard
        if Path(shard).name != shard or not path.is_file():
            raise WeightsError(f"{path} is missing; download the model again")
        state.update(load_file(str(path)))
    return state


def _read_vae(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    for name in ("vae.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            return load_file(str(folder / name))
    raise WeightsError(f"{folder} has no vae.safetensors")


def _full_tokenizer(qwen_dir: Path) -> Any:
    from ..planner.tokens import build_full_tokenizer

    return build_full_tokenizer(qwen_dir)


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    from ..planner.tokens import save_tokenizer
    from .checkpoint import TOKENIZER_DIR

    save_tokenizer(tokenizer, folder / TOKENIZER_DIR)


def _source_ref(kind: str, folder: Path) -> SourceRef:
    """Repo, revision and sha256 of the files used: from the download manifest when the sizes still match."""
    manifest = read_part_manifest(folder) if (folder / PART_MANIFEST).is_file() else {}
    recorded = manifest.get("files", {})
    files: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(folder).as_posix()
        if not rel.endswith((".bin", ".safetensors", ".yaml", ".json", ".txt", ".model")):
            continue
        entry = recorded.get(rel, {})
        if entry.get("sha256") and entry.get("size") == path.stat().st_size:
            files[rel] = entry["sha256"]
        else:
            files[rel] = sha256_file(path)
    return SourceRef(
        repo=str(manifest.get("repo", f"local:{folder.resolve()}")),
        revision=str(manifest.get("revision", "local")),
        commit=manifest.get("commit"),
        files=files,
    )


def _config_summary(config: OfficialConfig) -> dict[str, Any]:
    return {
        "num_semantic": config.num_semantic,
        "num_residual": config.num_residual,
        "t5_feature_scale": config.t5_feature_scale,
        "lora_r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "warnings": list(config.warnings),
    }
