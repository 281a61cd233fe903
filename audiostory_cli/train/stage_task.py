"""The paper's stages as a training task: ``train(config)`` runs a stage end to end through ``engine.run_task``;
``dry_run(stage)`` counts trainable parameters.

``train`` is written for ``accelerate``: run it as is on one device, or with ``accelerate launch`` on several GPUs
or nodes (DDP; each process takes its own slice of every global batch, only the main process writes files).
With ``--fsdp`` the processes shard weights, gradients and optimizer state instead of replicating them
(``sharding``); the data, the losses and the files written are the same.

Determinism: flow noise, σ, condition dropout and LoRA dropout of a micro-batch come from the engine's seed for
(seed, micro-batch, rank), and the example order from (seed, batch number).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError, UsageError
from ..planner.tokens import FULL_VOCAB_SIZE
from ..progress import ProgressFn, no_progress
from .config import TrainConfig
from .data import (
    GEN_STREAM,
    UND_STREAM,
    BatchOrder,
    build_examples,
    collate_generation,
    collate_understanding,
    micro_batch_kind,
    to_device,
)
from .engine import RunContext, RunInfo, StepReport, TrainResult, fp32_runtime, run_task
from .features import FeatureCache, Featurizer
from .manifest import TrainingData, load_manifests
from .module import FlowOptions, PartCount, TrainModule, configure_trainable, lr_group, parameter_counts, part_of
from .sequences import SCOPE_CLASSES
from .stages import Stage

Log = Callable[[str], None]


def check_stage_data(stage: Stage, data: TrainingData, model: Any) -> bool:
    """Raise when the data does not fit the stage; returns whether understanding (QA) batches are used."""
    if not data.generation:
        raise UsageError(f"stage {stage.name} needs generation data (clips or stories); the manifests hold none")
    if stage.needs_stories and not data.stories:
        raise UsageError(f"stage {stage.name} trains multi-event stories; add a stories manifest (--stories FILE)")
    if stage.understanding == "no" and data.qa:
        raise UsageError(f"stage {stage.name} does not use QA data (from stage 2 on); drop the QA manifest")
    if stage.understanding == "yes" and not data.qa:
        raise UsageError(f"stage {stage.name} adds audio understanding; add a QA manifest (--qa FILE)")
    use = bool(data.qa) and stage.understanding != "no"
    if use and model.audio_encoder is None:
        raise UsageError(f"model {model.name} has no audio encoder (Whisper), so it cannot learn QA data")
    return use


def stage_param_groups(module: TrainModule, config: TrainConfig) -> list[dict[str, Any]]:
    """The LLM (LoRA, norms, embeddings), bridge and DiT groups with their learning rates."""
    groups: dict[str, list[torch.nn.Parameter]] = {"llm": [], "bridge": [], "dit": []}
    for name, param in module.named_parameters():
        if param.requires_grad:
            groups[lr_group(part_of(name))].append(param)
    rates = {"llm": config.lr_llm, "bridge": config.bridge_lr, "dit": config.lr_dit}
    return [{"params": params, "lr": rates[name], "name": name} for name, params in groups.items() if params]


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters a stage trains, in module order (what ``--ema-decay`` averages)."""
    return [p for p in module.parameters() if p.requires_grad]


def build_train_module(model: Any, config: TrainConfig, *, understanding: bool) -> TrainModule:
    """Wrap the LLM with LoRA (seeded), gather the trainable parts and freeze by stage."""
    from ..generator.text_encoder import unconditional_tokens
    from ..planner.reasoner import apply_lora

    torch.manual_seed(config.seed)
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        llm = apply_lora(model.llm, model.dims.reasoner)
    uncond = unconditional_tokens(model.text_encoder, model.dims.bridge.num_semantic_tokens).float()
    resampler = model.audio_encoder.resampler if understanding else None
    module = TrainModule(
        llm,
        model.bridge,
        model.dit,
        resampler,
        uncond,
        stage=config.stage_spec,
        weights=config.loss_weights,
        flow=FlowOptions(config.cond_dropout, config.logit_mean, config.logit_std),
    )
    configure_trainable(module, understanding=understanding)
    if config.gradient_checkpointing:
        llm.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.dit.transformer.enable_gradient_checkpointing()
    return module.train()


class StageTask:
    """One of the paper's stages on JSONL manifests, from a model folder (or registered model)."""

    supports_fsdp = True

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.title = f"stage {config.stage}"

    # 1. model, tokenizers, data and features
    def prepare(self, context: RunContext) -> None:
        from ..model import load_model
        from ..planner.tokens import resolve_special_token_ids
        from ..resources import cache_dir
        from .t5_tokenizer import resolve_t5_tokenizer

        config = self.config
        self.model = load_model(config.model, fp32_runtime(context.device))
        self.t5_tokenizer, self.t5_source = resolve_t5_tokenizer(
            config.model, self.model.dims.text_encoder.vocab_size, config.t5_tokenizer
        )
        data = load_manifests(config.data, max_event_seconds=self.model.dims.window_seconds)
        for warning in data.warnings:
            context.log(str(warning))
        self.understanding = check_stage_data(config.stage_spec, data, self.model)
        self.special = resolve_special_token_ids(self.model.tokenizer)
        self.cache = FeatureCache(config.cache_dir or cache_dir() / "train-features")
        featurizer = Featurizer(self.model, self.t5_tokenizer, self.cache, progress=context.progress)
        with context.main_process_first():
            self.gen, self.und = build_examples(
                data,
                featurizer,
                self.model.tokenizer,
                self.special,
                use_understanding=self.understanding,
                max_tokens=config.max_tokens,
            )
        self._data_hash = featurizer.data_hash(data.manifests)
        scope = config.effective_lm_scope
        self.lm_classes = SCOPE_CLASSES[scope] if scope else frozenset()
        self.gen_order = BatchOrder(len(self.gen), config.seed, GEN_STREAM)
        self.und_order = BatchOrder(max(1, len(self.und)), config.seed, UND_STREAM)
        # 2. the trainable module; the frozen parts' features are cached, so they leave the accelerator
        self._module = build_train_module(self.model, config, understanding=self.understanding)
        frozen: dict[str, torch.nn.Module] = {"text_encoder": self.model.text_encoder}
        if self.model.vae is not None:  # a spectral codec has no weights
            frozen["vae"] = self.model.vae
        if self.model.audio_encoder is not None:
            frozen["audio_encoder.whisper"] = self.model.audio_encoder.whisper
        self._counts = parameter_counts(self._module, frozen)
        self._ema = None
        if config.ema_decay:
            from diffusers.training_utils import EMAModel

            self._ema = EMAModel(trainable_parameters(self._module), decay=config.ema_decay)
        if context.device.type != "cpu":
            for part in frozen.values():
                part.to("cpu")

    def module(self) -> torch.nn.Module:
        return self._module

    def param_groups(self) -> list[dict[str, Any]]:
        return stage_param_groups(self._module, self.config)

    def counts(self) -> list[PartCount]:
        return self._counts

    def examples(self) -> dict[str, int]:
        return {"generation": len(self.gen), "understanding": len(self.und)}

    def resume_options(self) -> dict[str, Any]:
        from .config import RESUMABLE_CHANGES

        return {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES}

    def data_hash(self) -> str:
        return self._data_hash

    def describe(self) -> dict[str, Any]:
        config, model = self.config, self.model
        return {
            "stage": config.stage,
            "base_model": {"ref": config.model, "name": model.name, "revision": model.revision},
            "config": config.to_dict(),
            "t5_tokenizer": self.t5_source,
        }

    # 3. batches
    def batch(self, micro: int, world: int, rank: int, device: torch.device) -> dict[str, Any]:
        config = self.config
        kind, number = micro_batch_kind(micro, config.gen_und_ratio, self.understanding)
        pad = self.special.endoftext
        if kind == "und":
            rows = self.und_order.indices(number, config.batch_size, world, rank)
            batch = collate_understanding([self.und[i] for i in rows], self.cache, pad)
        else:
            rows = self.gen_order.indices(number, config.batch_size, world, rank)
            batch = collate_generation([self.gen[i] for i in rows], self.cache, pad, self.lm_classes)
        return to_device(batch, device)

    def evaluate(self, module: torch.nn.Module, generator: torch.Generator, device: torch.device) -> dict[str, float]:
        """Losses on the first ``eval_examples`` generation examples."""
        config = self.config
        examples = self.gen[: config.eval_examples]
        sums: dict[str, float] = {}
        for first in range(0, len(examples), config.batch_size):
            chunk = examples[first : first + config.batch_size]
            batch = to_device(collate_generation(chunk, self.cache, self.special.endoftext, self.lm_classes), device)
            losses = module(batch, generator)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(chunk) / len(examples)
        return sums

    def extra_state(self) -> dict[str, Any] | None:
        """The moving average of the weights (``--ema-decay``), the one state beyond the module and optimizer."""
        return {"ema": self._ema.state_dict()} if self._ema is not None else None

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self._ema is None or "ema" not in state:
            raise TrainingError(
                "the checkpoint's moving average (--ema-decay) does not match this run; resume with the same options"
            )
        self._ema.load_state_dict(state["ema"])

    def after_step(self) -> None:
        if self._ema is not None:
            self._ema.step(trainable_parameters(self._module))

    def unsharded(self, whole: dict[str, torch.Tensor]) -> torch.nn.Module:
        from ..model import load_model
        from ..weights.checkpoint import load_state_strict

        self.model = load_model(self.config.model, fp32_runtime(torch.device("cpu")))
        module = build_train_module(self.model, self.config, understanding=self.understanding)
        load_state_strict(module, whole)
        return module

    # 4. the model folder
    def export(self, module: torch.nn.Module, info: dict[str, Any], mixed_precision: str) -> dict[str, Any]:
        from ..config import CANVAS_SIZED
        from ..model import AudioStoryModel
        from .checkpoint import export_model

        assert isinstance(module, TrainModule)
        base, config = self.model, self.config
        if self._ema is not None:  # the averaged weights become the model (the module is not trained further)
            self._ema.copy_to(trainable_parameters(module))
        merged = module.llm.merge_and_unload()
        history = [*base.extra.get("training_history", []), info]
        extra = {k: v for k, v in base.extra.items() if k not in ("training", "training_history")}
        # the flow loss trains on latents sized to each clip (masked), so a DiT trained here expects that canvas
        extra["canvas"] = CANVAS_SIZED if config.stage_spec.train_dit else base.canvas
        final = AudioStoryModel(
            name=config.out.name,
            dims=base.dims,
            tokenizer=base.tokenizer,
            llm=merged,
            bridge=module.bridge,
            dit=module.dit,
            text_encoder=base.text_encoder,
            vae=base.vae,
            audio_encoder=base.audio_encoder,
            revision=None,
            resampler_trained=base.resampler_trained or self.understanding,
            extra=extra,
        )
        revision = f"@{base.revision}" if base.revision else ""
        export_model(
            config.out,
            final,
            self.t5_tokenizer,
            base_model=f"{config.model}{revision}",
            info_extra={"training": info, "training_history": history},
            dtype=torch.bfloat16 if mixed_precision == "bf16" else None,
        )
        return {}


def train(
    config: TrainConfig,
    *,
    progress: ProgressFn = no_progress,
    on_step: Callable[[StepReport], None] | None = None,
    on_start: Callable[[RunInfo], None] | None = None,
    log: Log = lambda _m: None,
) -> TrainResult:
    """Train ``config.stage`` on ``config.data`` starting from ``config.model``; write checkpoints and the model."""
    return run_task(StageTask(config), config.loop(), progress=progress, on_step=on_step, on_start=on_start, log=log)


# -- dry run -------------------------------------------------------------------------------------------------


def dry_run(stage: str, model_ref: str = "audiostory-3b", *, understanding: bool | None = None) -> list[PartCount]:
    """Trainable and total parameters per part for ``stage``, built on the meta device (no weights, no data).

    ``understanding``: whether the audio resampler trains (default: stages 2 and 3).
    """
    from ..model import build_model, quiet_libraries
    from ..planner.reasoner import apply_lora
    from .stages import get_stage

    spec = get_stage(stage)
    dims, vocab = _dims_of(model_ref)
    use_understanding = spec.understanding != "no" if understanding is None else understanding
    config = TrainConfig(stage=stage, data=(), out=Path("."), model=model_ref)
    with quiet_libraries(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = build_model(dims, vocab, device="meta")
        with torch.device("meta"):
            llm = apply_lora(model.llm, dims.reasoner)
            uncond = torch.zeros(dims.bridge.num_semantic_tokens, dims.bridge.out_dim)
    resampler = model.audio_encoder.resampler if (use_understanding and model.audio_encoder is not None) else None
    module = TrainModule(
        llm, model.bridge, model.dit, resampler, uncond, stage=spec, weights=config.loss_weights, flow=FlowOptions()
    )
    configure_trainable(module, understanding=resampler is not None)
    frozen: dict[str, torch.nn.Module] = {"text_encoder": model.text_encoder}
    if model.vae is not None:
        frozen["vae"] = model.vae
    if model.audio_encoder is not None:
        frozen["audio_encoder.whisper"] = model.audio_encoder.whisper
        if resampler is None:
            frozen["audio_resampler"] = model.audio_encoder.resampler
    return parameter_counts(module, frozen)


def _dims_of(model_ref: str) -> tuple[Any, int]:
    """Model dims and vocabulary size of a model reference, read from its sidecar (nothing is loaded)."""
    from ..config import full_dims
    from ..weights.checkpoint import read_sidecar
    from ..weights.download import converted_path, model_path
    from ..weights.registry import resolve_model_ref

    resolved = resolve_model_ref(model_ref)
    if isinstance(resolved, Path):
        folder = resolved
    elif resolved.kind == "builtin":
        from ..config import tiny_dims
        from ..planner.tokens import build_tiny_tokenizer

        return tiny_dims(), len(build_tiny_tokenizer())
    elif resolved.kind == "bundled":
        folder = model_path(resolved)
    else:
        folder = converted_path(resolved)
        if not (folder / "audiostory.json").is_file():
            return full_dims(), FULL_VOCAB_SIZE
    meta = read_sidecar(folder)
    return meta.dims, int(meta.vocab_size or meta.dims.reasoner.vocab_size)
