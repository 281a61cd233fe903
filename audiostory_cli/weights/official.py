"""Map the released AudioStory checkpoint (and the public files it builds on) onto our modules' keys, strictly.

The official ``pytorch_model.bin`` is a fp32 dump of the whole ``AudioStory_unified`` (DeepSpeed
``zero_to_fp32``) with peft 0.4 names (``AudioStory_unified.from_pretrained`` in
``src/models/mllm/modeling_audiostory_unified.py`` of https://github.com/TencentARC/AudioStory; the full key set is
``tests/data/official-keys-fullsize.json``):

- ``seedx.llm.base_model.model.{model.*, lm_head.weight}``: Qwen2; LoRA as ``<linear>.lora_A.default.weight``
  [r, in] and ``<linear>.lora_B.default.weight`` [out, r] beside the base ``<linear>.weight`` (no ``base_layer``);
  every RMSNorm as ``<norm>.original_module.weight`` (frozen copy) + ``<norm>.modules_to_save.default.weight``
  (the trained one, used in forward);
- ``seedx.projector.*``, ``seedx.audio_projector.*``, ``multihead_attention.*`` → ``bridge.*``;
- ``seedx.whisper_resampler_llava.*`` → ``audio_encoder.resampler.*``;
- ``tangoflux.{transformer,fc,duration_emebdder}.*`` → ``dit.*``; ``tangoflux.text_encoder.*`` → ``text_encoder.*``;
- ``seedx.{input,output}_resampler.*``: built but never used by the official code → ignored, with that reason.

Every key ends up mapped, ignored with a reason, or reported as an error; LoRA is merged into the base weights
(W + (alpha/r)·B@A) so inference needs no peft. ``config.yaml`` is read as plain YAML (hydra ``_target_``
strings stay strings; nothing is instantiated).

torch and yaml are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ModelDims
from ..errors import CheckpointKeyError, WeightsError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

LLM_PREFIX = "seedx.llm.base_model.model."
PREFIX_MAP: tuple[tuple[str, str], ...] = (
    ("seedx.projector.", "bridge.projector."),
    ("seedx.audio_projector.", "bridge.audio_projector."),
    ("multihead_attention.", "bridge.multihead_attention."),
    ("seedx.whisper_resampler_llava.", "audio_encoder.resampler."),
    ("tangoflux.transformer.", "dit.transformer."),
    ("tangoflux.fc.", "dit.fc."),
    ("tangoflux.duration_emebdder.", "dit.duration_emebdder."),
    ("tangoflux.text_encoder.", "text_encoder."),
)
UNUSED_PREFIXES: tuple[tuple[str, str], ...] = (
    (
        "seedx.input_resampler.",
        "input_resampler is built by the official code but used by no forward or generation path",
    ),
    (
        "seedx.output_resampler.",
        "output_resampler is built by the official code but used by no forward or generation path",
    ),
)
REASON_ORIGINAL = "frozen pre-training copy kept by peft modules_to_save; the trained modules_to_save.default is used"
REASON_LM_HEAD = "lm_head is tied to embed_tokens (identical tensors); stored once"
REASON_T5_TIE = "T5 encoder.embed_tokens is tied to shared (identical tensors); stored once"
REASON_SUPERSEDED = "superseded by the AudioStory checkpoint's own copy"
FALLBACK_SEMANTIC, FALLBACK_RESIDUAL, FALLBACK_SCALE = 64, 8, 10.0
FALLBACK_LORA_R, FALLBACK_LORA_ALPHA = 32, 32.0  # configs/audiostory_llm_qwen25_3b_lora.yaml

_LORA_RE = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")
_INTERPOLATION_RE = re.compile(r"^\$\{([A-Za-z0-9_.\[\]]+)\}$")


@dataclass(frozen=True)
class MappedCheckpoint:
    """Tensors under our keys (``llm.``, ``bridge.``, ...), what was ignored and why, and notes for the log."""

    state: dict[str, torch.Tensor]
    ignored: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def parts(self) -> frozenset[str]:
        return frozenset(k.split(".", 1)[0] for k in self.state)

    def part_state(self, part: str) -> dict[str, torch.Tensor]:
        """The tensors of one part, keys without the part prefix (what ``load_state_strict`` takes)."""
        head = part + "."
        return {k[len(head) :]: v for k, v in self.state.items() if k.startswith(head)}


def combine(*mapped: MappedCheckpoint) -> MappedCheckpoint:
    """Join mappings of different sources; the same key from two sources is an error (no silent precedence)."""
    state: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    notes: list[str] = []
    for m in mapped:
        clash = sorted(set(state) & set(m.state))
        if clash:
            raise WeightsError(f"two sources both provide {', '.join(clash[:4])}; pass each source once")
        state.update(m.state)
        ignored.update(m.ignored)
        notes.extend(m.notes)
    return MappedCheckpoint(state=state, ignored=ignored, notes=tuple(notes))


# ---------------------------------------------------------------------------------------------------------------
# pytorch_model.bin


def load_official_bin(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` with ``weights_only=True`` (no pickled code runs), memory-mapped, on the CPU."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} not found; download it with `audiostory models download audiostory-3b`")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path} cannot be read as a weights-only PyTorch checkpoint ({first_line[:160]}); re-download it"
        ) from exc
    if isinstance(state, dict) and "module" in state and isinstance(state["module"], dict):
        state = state["module"]  # a DeepSpeed-style wrapper
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"{path} is not a state dict (a mapping of names to tensors)")
    return state


def map_official_state_dict(
    state: Mapping[str, torch.Tensor],
    dims: ModelDims,
    *,
    lora_alpha: float,
    lora_r: int,
    base_llm: Mapping[str, torch.Tensor] | None = None,
) -> MappedCheckpoint:
    """Official keys → ours, LoRA merged, every key accounted for (see the module docstring).

    ``base_llm`` (stock Qwen2.5 keys ``model.*``) supplies LLM weights the bin does not contain; where the bin has
    its own copy, the base one is ignored as superseded. Unknown keys raise ``CheckpointKeyError``.
    """
    # 1. sort every official key: LLM weight, LoRA half, other part, known-unused or unknown
    keys = _sort_official_keys(state)
    if keys.unknown:
        raise _unknown_error(keys.unknown)
    notes: list[str] = []
    if keys.peft7_names:
        notes.append(f"{keys.peft7_names} LLM keys used peft>=0.7 'base_layer' names; mapped the same way")
    # 2. fill in the LLM weights the bin lacks from the base model
    if base_llm is not None:
        taken = _take_base_llm(keys.llm, base_llm, keys.ignored)
        notes.append(f"took {taken} base LLM tensors that the AudioStory checkpoint does not contain")
    # 3. merge LoRA into the base weights
    merged = _merge_lora(keys.llm, keys.lora, lora_alpha=lora_alpha, lora_r=lora_r)
    if merged:
        notes.append(f"merged LoRA into {merged} linear layers (scale alpha/r = {lora_alpha / lora_r:g})")
    # 4. check the tied weights: the LLM's embeddings and head, T5's shared embeddings
    _check_llm_embeddings(keys.llm, keys.lm_head, dims.reasoner.vocab_size, keys.ignored)
    _drop_t5_alias(keys.out, keys.ignored)
    keys.out.update({f"llm.{k}": v for k, v in keys.llm.items()})
    return MappedCheckpoint(state=keys.out, ignored=keys.ignored, notes=tuple(notes))


@dataclass
class _SortedKeys:
    """The official state dict sorted by where each key goes (``_sort_official_keys``)."""

    llm: dict[str, torch.Tensor] = field(default_factory=dict)  # our Qwen2 names, before LoRA is merged
    lora: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # module → {"A": ..., "B": ...}
    out: dict[str, torch.Tensor] = field(default_factory=dict)  # every other part, our names
    ignored: dict[str, str] = field(default_factory=dict)  # official key → why it is not used
    unknown: list[str] = field(default_factory=list)
    lm_head: torch.Tensor | None = None
    peft7_names: int = 0

    def put_llm(self, key: str, tensor: torch.Tensor, official: str) -> None:
        if key in self.llm:
            self.unknown.append(f"{official} (a second copy of llm.{key})")
        self.llm[key] = tensor


def _sort_official_keys(state: Mapping[str, torch.Tensor]) -> _SortedKeys:
    keys = _SortedKeys()
    for key, tensor in state.items():
        if key.startswith(LLM_PREFIX):
            _sort_llm_key(keys, key, tensor)
            continue
        for old, new in PREFIX_MAP:
            if key.startswith(old):
                keys.out[new + key[len(old) :]] = tensor
                break
        else:
            for old, reason in UNUSED_PREFIXES:
                if key.startswith(old):
                    keys.ignored[key] = reason
                    break
            else:
                keys.unknown.append(key)
    return keys


def _sort_llm_key(keys: _SortedKeys, key: str, tensor: torch.Tensor) -> None:
    """One ``llm.base_model.model.*`` key: peft 0.4 LoRA names (and peft >= 0.7 ``base_layer`` ones)."""
    rest = key[len(LLM_PREFIX) :]
    match = _LORA_RE.match(rest)
    if match:
        if match["adapter"] != "default":
            keys.unknown.append(key)
        else:
            keys.lora.setdefault(match["module"], {})[match["ab"]] = tensor
    elif ".original_module." in rest:
        keys.ignored[key] = REASON_ORIGINAL
    elif ".modules_to_save." in rest:
        head, _, tail = rest.partition(".modules_to_save.")
        adapter, _, param = tail.partition(".")
        if adapter != "default" or not param:
            keys.unknown.append(key)
        else:
            keys.put_llm(f"{head}.{param}", tensor, key)
    elif ".base_layer." in rest:  # peft >= 0.7 names, accepted for checkpoints re-saved with newer peft
        keys.peft7_names += 1
        keys.put_llm(rest.replace(".base_layer.", "."), tensor, key)
    elif rest == "lm_head.weight":
        keys.lm_head = tensor
    elif ".lora_" in rest:
        keys.unknown.append(key)
    else:
        keys.put_llm(rest, tensor, key)


def _take_base_llm(llm: dict[str, torch.Tensor], base_llm: Mapping[str, torch.Tensor], ignored: dict[str, str]) -> int:
    """Add the base model's tensors the bin lacks to ``llm``; returns how many were taken."""
    taken = 0
    for key, tensor in base_llm.items():
        if key in llm or (key == "lm_head.weight"):
            ignored[f"base:{key}"] = REASON_SUPERSEDED if key in llm else REASON_LM_HEAD
        else:
            llm[key] = tensor
            taken += 1
    return taken


def _check_llm_embeddings(
    llm: Mapping[str, torch.Tensor], lm_head: torch.Tensor | None, vocab: int, ignored: dict[str, str]
) -> None:
    """The embeddings match the tokenizer, and the bin's ``lm_head`` is the tied copy our Qwen2 expects."""
    embed = llm.get("model.embed_tokens.weight")
    if embed is not None and vocab > 0 and embed.shape[0] != vocab:
        raise CheckpointKeyError(
            f"{LLM_PREFIX}model.embed_tokens.weight has {embed.shape[0]} rows but the tokenizer has {vocab} "
            "tokens; this is not the AudioStory-3B checkpoint the registry describes"
        )
    if lm_head is not None:
        if embed is not None and _identical(lm_head, embed):
            ignored[f"{LLM_PREFIX}lm_head.weight"] = REASON_LM_HEAD
        else:
            raise CheckpointKeyError(
                f"{LLM_PREFIX}lm_head.weight differs from embed_tokens.weight, but our Qwen2 ties them (as the "
                "official model does); the checkpoint is not the one expected"
            )


def _drop_t5_alias(out: dict[str, torch.Tensor], ignored: dict[str, str]) -> None:
    """T5 ties ``encoder.embed_tokens`` to ``shared``: keep one copy, after checking they are the same."""
    shared, alias = "text_encoder.shared.weight", "text_encoder.encoder.embed_tokens.weight"
    if shared in out and alias in out:
        if _identical(out[shared], out[alias]):
            del out[alias]
            ignored["tangoflux." + alias] = REASON_T5_TIE
        else:
            raise CheckpointKeyError(
                f"tangoflux.{alias} differs from tangoflux.{shared}, but T5 ties them; the checkpoint is corrupt"
            )


def _identical(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape and values; on the meta device (key checks without weights) only the shapes can be compared."""
    import torch

    if a.shape != b.shape:
        return False
    return a.device.type == "meta" or b.device.type == "meta" or torch.equal(a, b)


def _merge_lora(
    llm: dict[str, torch.Tensor], lora: Mapping[str, Mapping[str, torch.Tensor]], *, lora_alpha: float, lora_r: int
) -> int:
    """W ← W + (alpha/r)·B@A for every LoRA pair, in fp32, stored back in W's dtype."""
    scale = lora_alpha / lora_r
    for module, pair in sorted(lora.items()):
        official = f"{LLM_PREFIX}{module}"
        if set(pair) != {"A", "B"}:
            have = "lora_A" if "A" in pair else "lora_B"
            raise CheckpointKeyError(f"{official} has only {have}; both lora_A and lora_B are needed")
        a, b = pair["A"], pair["B"]
        weight = llm.get(f"{module}.weight")
        if weight is None:
            raise CheckpointKeyError(
                f"{official}.weight (the base weight its LoRA applies to) is missing; pass the Qwen2.5 base "
                "weights (the registry's 'qwen' part)"
            )
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != lora_r or b.shape[1] != lora_r:
            raise CheckpointKeyError(
                f"{official}.lora_A/B have shapes {list(a.shape)}/{list(b.shape)}, not rank {lora_r} "
                "(config.yaml's r); the config and the weights disagree"
            )
        if (b.shape[0], a.shape[1]) != tuple(weight.shape):
            raise CheckpointKeyError(
                f"{official}: LoRA B@A is {[b.shape[0], a.shape[1]]} but the weight is {list(weight.shape)}"
            )
        delta = b.float() @ a.float()
        llm[f"{module}.weight"] = (weight.float() + scale * delta).to(weight.dtype)
    return len(lora)


def _unknown_error(keys: list[str]) -> CheckpointKeyError:
    shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    return CheckpointKeyError(
        f"{len(keys)} key(s) in the AudioStory checkpoint are neither mapped nor known to be unused: {shown}",
        unexpected=keys,
    )


# ---------------------------------------------------------------------------------------------------------------
# The public files it builds on


def map_prefixed(
    state: Mapping[str, torch.Tensor],
    mapping: Mapping[str, str],
    *,
    ignore: Mapping[str, str] | None = None,
    source: str,
) -> MappedCheckpoint:
    """Generic: ``old_prefix → new_prefix``; keys matching an ``ignore`` prefix are dropped with their reason;
    anything else is an error naming ``source``."""
    out: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        for old, new in mapping.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = tensor
                break
        else:
            for old, reason in (ignore or {}).items():
                if key.startswith(old) or key == old:
                    ignored[f"{source}:{key}"] = reason
                    break
            else:
                unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        raise CheckpointKeyError(f"{len(unknown)} unexpected key(s) in {source}: {shown}", unexpected=unknown)
    return MappedCheckpoint(state=out, ignored=ignored)


def map_vae_state_dict(state: Mapping[str, torch.Tensor]) -> MappedCheckpoint:
    """TangoFlux ``vae.safetensors`` (diffusers ``AutoencoderOobleck``, weight_g/weight_v) → ``vae.*``."""
    return map_prefixed(state, {"": "vae."}, source="vae.safetensors")


def map_whisper_state_dict(state: Mapping[str, torch.Tensor]) -> MappedCheckpoint:
    """openai/whisper-large-v3 ``model.safetensors``: the encoder → ``audio_encoder.whisper.*``."""
    return map_prefixed(
        state,
        {"model.encoder.": "audio_encoder.whisper."},
        ignore={
            "model.decoder.": "Whisper's text decoder is not used (only the encoder feeds the resampler)",
            "proj_out.": "Whisper's output projection belongs to the unused decoder",
        },
        source="whisper model.safetensors",
    )


def map_t5_state_dict(state: Mapping[str, torch.Tensor]) -> MappedCheckpoint:
    """google/flan-t5-large ``model.safetensors``: ``shared`` + the encoder → ``text_encoder.*``."""
    mapped = map_prefixed(
        state,
        {"shared.": "text_encoder.shared.", "encoder.": "text_encoder.encoder."},
        ignore={"decoder.": "only the T5 encoder is used", "lm_head.": "only the T5 encoder is used"},
        source="flan-t5 model.safetensors",
    )
    shared, alias = "text_encoder.shared.weight", "text_encoder.encoder.embed_tokens.weight"
    if shared in mapped.state and alias in mapped.state:
        if not _identical(mapped.state[shared], mapped.state[alias]):
            raise CheckpointKeyError("flan-t5 encoder.embed_tokens differs from shared, but T5 ties them")
        del mapped.state[alias]
        mapped.ignored["flan-t5:encoder.embed_tokens.weight"] = REASON_T5_TIE
    return mapped


def map_tangoflux_state_dict(state: Mapping[str, torch.Tensor]) -> MappedCheckpoint:
    """TangoFlux ``tangoflux.safetensors`` (DiT init for training) → ``dit.*`` + ``text_encoder.*``."""
    return map_prefixed(
        state,
        {
            "transformer.": "dit.transformer.",
            "fc.": "dit.fc.",
            "duration_emebdder.": "dit.duration_emebdder.",
            "text_encoder.": "text_encoder.",
        },
        source="tangoflux.safetensors",
    )


# ---------------------------------------------------------------------------------------------------------------
# config.yaml


@dataclass(frozen=True)
class OfficialConfig:
    """What our modules need from the checkpoint's ``config.yaml`` (read as data, never instantiated)."""

    num_semantic: int
    num_residual: int
    t5_feature_scale: float
    lora_r: int
    lora_alpha: float
    vocab_size: int | None = None
    llm_dim: int | None = None  # agent_model.model_dims
    resampler_tokens: int | None = None  # whisper_resampler_llava.token_num
    resampler_in_dim: int | None = None
    resampler_out_dim: int | None = None
    warnings: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def apply(self, dims: ModelDims) -> ModelDims:
        """``dims`` with the token counts, scale, LoRA rank and resampler size from this config."""
        import dataclasses

        bridge = dataclasses.replace(
            dims.bridge,
            num_semantic_tokens=self.num_semantic,
            num_residual_tokens=self.num_residual,
            t5_feature_scale=self.t5_feature_scale,
        )
        reasoner = dataclasses.replace(dims.reasoner, lora_r=self.lora_r, lora_alpha=int(self.lora_alpha))
        audio = dims.audio_encoder
        if audio is not None and self.resampler_tokens is not None:
            audio = dataclasses.replace(audio, num_tokens=self.resampler_tokens)
        return dataclasses.replace(dims, bridge=bridge, reasoner=reasoner, audio_encoder=audio)


def read_official_config(path: Path) -> OfficialConfig:
    """Parse ``config.yaml`` with ``yaml.safe_load``; fall back to 64/8/10 (and LoRA r32/α32) with a warning
    only for fields that are missing."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} not found; it ships with the AudioStory checkpoint (config.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise WeightsError(f"{path} is not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise WeightsError(f"{path} does not hold a mapping at the top level")
    warnings: list[str] = []

    def pick(paths: tuple[str, ...], kind: type, fallback: Any, label: str) -> Any:
        for dotted in paths:
            value = _lookup(raw, dotted)
            if value is not None:
                try:
                    return kind(value)
                except (TypeError, ValueError) as exc:
                    raise WeightsError(f"{path}: {dotted} = {value!r} is not a {kind.__name__}") from exc
        if fallback is not None:
            message = f"{path.name} has no {label}; using {fallback} (the official code's default)"
            warnings.append(message)
            log.warning(message)
        return fallback

    lora = _find_target(raw.get("llm_model"), "LoraConfig") or {}
    resampler = _lookup(raw, "agent_model.whisper_resampler_llava") or {}
    config = OfficialConfig(
        num_semantic=pick(
            ("train_dataset.datapipes.0.num_t5_out_tokens",),
            int,
            FALLBACK_SEMANTIC,
            "train_dataset.datapipes[0].num_t5_out_tokens",
        ),
        num_residual=pick(
            ("train_dataset.datapipes.0.num_aud_out_tokens",),
            int,
            FALLBACK_RESIDUAL,
            "train_dataset.datapipes[0].num_aud_out_tokens",
        ),
        t5_feature_scale=pick(("agent_model.t5_feature_scale",), float, FALLBACK_SCALE, "agent_model.t5_feature_scale"),
        lora_r=int(_number(lora.get("r"), FALLBACK_LORA_R, "llm_model LoRA r", warnings)),
        lora_alpha=_number(lora.get("lora_alpha"), FALLBACK_LORA_ALPHA, "llm_model LoRA alpha", warnings),
        vocab_size=pick(("llm_model.vocab_size",), int, None, "llm_model.vocab_size"),
        llm_dim=pick(("agent_model.model_dims",), int, None, "agent_model.model_dims"),
        resampler_tokens=_opt_int(resampler, "token_num"),
        resampler_in_dim=_opt_int(resampler, "ori_embed_dim"),
        resampler_out_dim=_opt_int(resampler, "tgt_embed_dim"),
        warnings=tuple(warnings),
        raw=raw,
    )
    return config


def _lookup(root: Any, dotted: str) -> Any:
    """``a.b.0.c`` through dicts and lists; ``${a.b}`` interpolations (OmegaConf style) are followed."""
    node = root
    for piece in dotted.split("."):
        node = _resolve(root, node)
        if isinstance(node, dict):
            node = node.get(piece)
        elif isinstance(node, list) and piece.isdigit() and int(piece) < len(node):
            node = node[int(piece)]
        else:
            return None
        if node is None:
            return None
    return _resolve(root, node)


def _resolve(root: Any, value: Any, depth: int = 0) -> Any:
    if isinstance(value, str) and depth < 8:
        match = _INTERPOLATION_RE.match(value.strip())
        if match:
            target = match.group(1).replace("[", ".").replace("]", "")
            return _resolve(root, _lookup(root, target), depth + 1)
    return value


def _find_target(node: Any, suffix: str) -> dict[str, Any] | None:
    """The first mapping whose ``_target_`` ends with ``suffix`` (e.g. peft's ``LoraConfig``), searched as data."""
    if isinstance(node, dict):
        if str(node.get("_target_", "")).endswith(suffix):
            return node
        for value in node.values():
            found = _find_target(value, suffix)
            if found is not None:
                return found
    if isinstance(node, list):
        for value in node:
            found = _find_target(value, suffix)
            if found is not None:
                return found
    return None


def _number(value: Any, fallback: float, label: str, warnings: list[str]) -> float:
    if value is None:
        message = f"config.yaml has no {label}; using {fallback} (configs/audiostory_llm_qwen25_3b_lora.yaml)"
        warnings.append(message)
        log.warning(message)
        return float(fallback)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"config.yaml: {label} = {value!r} is not a number") from exc
    if number <= 0:
        raise WeightsError(f"config.yaml: {label} = {value!r} must be positive")
    return number


def _opt_int(node: Any, key: str) -> int | None:
    if not isinstance(node, dict) or node.get(key) is None:
        return None
    try:
        return int(node[key])
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"config.yaml: whisper_resampler_llava.{key} = {node[key]!r} is not an integer") from exc
