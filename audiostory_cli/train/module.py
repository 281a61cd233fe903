"""``TrainModule``: the trainable model (LLM with LoRA, bridge, DiT, audio resampler) and its losses.

Generation batch (one sequence per clip or story, any number of events per sequence):

1. one forward of the LLM over prompt + serialised plan; final-norm hidden states ``h`` (as at inference);
2. ``L_lm``: cross-entropy of ``lm_head(h[i-1])`` against ``ids[i]`` at the positions of the stage's scope;
3. ``S = projector(h[<t5_k>])`` for every event of every sequence; ``L_bridge = MSE(S, s · T5(caption))``;
4. ``fused = (S + MHA(S, R, R)) / s`` with ``R = audio_projector(h[<aud_k>])`` (divided ONCE, like inference;
   the released training code divides twice: ``get_last_hidden_states`` returns ``projector(h)/s`` and
   ``AudioStory_unified.forward`` divides the fused tokens by ``s`` again, https://github.com/TencentARC/AudioStory
   ``src/models/mllm/``; the two agree only for ``s = 1``);
5. ``L_flow``: σ from the official grid (``u ~ logit-normal``, ``σ = 1 − ⌊1000u⌋/1000``),
   ``x_σ = (1−σ)x₀ + σ·ε``, target ``v = ε − x₀``; the DiT is conditioned exactly as at inference (fused tokens +
   duration token, pooled = fc(mean)); with probability ``cond_dropout`` an event's tokens are replaced by the
   T5("") tokens of the CFG branch. The squared error is averaged over each event's real frames (padding of
   shorter events in the batch is masked), then over events.

Understanding batch: the resampler's tokens (from cached Whisper states) replace the embeddings of the
``<aud_k>`` tokens in the question; ``L_und`` is the cross-entropy of the answer, weighted like ``L_lm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from .stages import LossWeights, Stage

if TYPE_CHECKING:
    from peft import PeftModel

    from ..generator.dit import AudioDiT
    from ..planner.audio_encoder import WhisperResampler
    from ..planner.bridge import Bridge

SIGMA_GRID = 1000  # the official scheduler's num_train_timesteps


@dataclass(frozen=True)
class FlowOptions:
    cond_dropout: float = 0.1
    logit_mean: float = 0.0
    logit_std: float = 1.0


class TrainModule(nn.Module):
    uncond: torch.Tensor  # a buffer

    def __init__(
        self,
        llm: PeftModel,
        bridge: Bridge,
        dit: AudioDiT,
        resampler: WhisperResampler | None,
        uncond: torch.Tensor,
        *,
        stage: Stage,
        weights: LossWeights,
        flow: FlowOptions,
    ) -> None:
        super().__init__()
        self.llm = llm  # a peft PeftModel around the Qwen2ForCausalLM
        self.bridge = bridge
        self.dit = dit
        self.resampler = resampler
        self.register_buffer("uncond", uncond, persistent=False)  # T5("") tokens (S, D): the CFG branch
        self.stage = stage
        self.weights = weights
        self.flow_options = flow

    def causal_lm(self) -> Any:
        """The Qwen2ForCausalLM inside the peft wrapper."""
        return self.llm.get_base_model()

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        if batch["kind"] == "und":
            return self._understanding(batch)
        return self._generation(batch, generator)

    # -- generation ------------------------------------------------------------------------------------------

    def _generation(self, batch: dict[str, Any], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        flat = self._final_hidden(batch)
        losses: dict[str, torch.Tensor] = {}
        if self.stage.uses_lm and self.weights.lm > 0 and batch["lm_from"].numel():
            logits = self.causal_lm().lm_head(flat[batch["lm_from"]]).float()
            losses["lm"] = F.cross_entropy(logits, batch["lm_target"])
        semantic = self.bridge.project_semantic(flat[batch["semantic_index"]])
        target = batch["t5"].float() * self.bridge.t5_feature_scale
        losses["bridge"] = F.mse_loss(semantic.float(), target)
        if self.stage.flow and self.weights.flow > 0:  # --w-flow 0 trains the planner without paying for the DiT
            losses["flow"] = self.flow_loss(self._fuse(flat, semantic, batch), batch, generator)
        weights = {"lm": self.weights.lm, "bridge": self.weights.bridge, "flow": self.weights.flow}
        losses["loss"] = sum((weights[k] * v for k, v in losses.items()), torch.zeros((), device=flat.device))
        return losses

    def fused_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """The DiT tokens (events, S, D) of a generation batch, exactly as the flow loss is conditioned on them."""
        flat = self._final_hidden(batch)
        return self._fuse(flat, self.bridge.project_semantic(flat[batch["semantic_index"]]), batch)

    def _final_hidden(self, batch: dict[str, Any]) -> torch.Tensor:
        """The LLM's final-norm hidden states of every token of the batch, flattened to (B·T, H)."""
        hidden = (
            self.causal_lm()
            .model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            .last_hidden_state
        )
        return hidden.reshape(-1, hidden.shape[-1])

    def _fuse(self, flat: torch.Tensor, semantic: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return self.bridge.fuse(semantic, self.bridge.project_residual(flat[batch["residual_index"]]))

    def sample_sigma(self, count: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """Logit-normal u on the official 1/1000 grid: σ = 1 − ⌊1000u⌋/1000 ∈ [0.001, 1]."""
        options = self.flow_options
        normal = torch.randn(count, generator=generator, device=device) * options.logit_std + options.logit_mean
        index = (torch.sigmoid(normal) * SIGMA_GRID).long().clamp(max=SIGMA_GRID - 1)
        return (SIGMA_GRID - index).float() / SIGMA_GRID

    def flow_loss(
        self,
        fused: torch.Tensor,
        batch: dict[str, Any],
        generator: torch.Generator | None,
        sigma: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``L_flow`` of ``batch`` conditioned on ``fused``; ``sigma`` (events,) fixes the noise levels instead of
        drawing them (``benchmarks/conditioning_use.py``). Condition dropout applies in training mode only."""
        x0 = batch["latents"].float()
        mask = batch["latent_mask"]
        device = x0.device
        noise = torch.randn(x0.shape, generator=generator, device=device)
        if sigma is None:
            sigma = self.sample_sigma(x0.shape[0], device, generator)
        context = fused
        if self.training and self.flow_options.cond_dropout > 0:
            drop = torch.rand(x0.shape[0], generator=generator, device=device) < self.flow_options.cond_dropout
            context = torch.where(drop[:, None, None], self.uncond[None].to(fused.dtype), fused)
        s = sigma[:, None, None]
        noisy = (1.0 - s) * x0 + s * noise
        velocity = noise - x0
        latent_mask = None if bool(mask.all()) else mask
        predicted = self.dit(noisy, context, batch["durations"], sigma, latent_mask)
        error = (predicted.float() - velocity) ** 2 * mask[..., None]
        per_event = error.sum(dim=(1, 2)) / (mask.sum(dim=1) * x0.shape[2])
        return per_event.mean()

    # -- understanding ---------------------------------------------------------------------------------------

    def _understanding(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.resampler is None:
            raise RuntimeError("an understanding batch needs the audio resampler")
        causal_lm = self.causal_lm()
        ids = batch["input_ids"]
        embeds = causal_lm.model.embed_tokens(ids)
        width = embeds.shape[-1]
        weight = self.resampler.input_weight
        audio = self.resampler(batch["whisper"].to(weight.dtype))  # (M, N, H)
        flat = embeds.reshape(-1, width).index_copy(
            0, batch["audio_index"].reshape(-1), audio.reshape(-1, width).to(embeds.dtype)
        )
        hidden = causal_lm.model(
            inputs_embeds=flat.view_as(embeds), attention_mask=batch["attention_mask"], use_cache=False
        ).last_hidden_state
        logits = causal_lm.lm_head(hidden.reshape(-1, width)[batch["lm_from"]]).float()
        loss = F.cross_entropy(logits, batch["lm_target"])
        return {"und": loss, "loss": self.weights.lm * loss}


# -- trainable sets ------------------------------------------------------------------------------------------


def part_of(name: str) -> str:
    """The reporting part of a ``TrainModule`` parameter name."""
    if name.startswith("llm."):
        if "lora_" in name:
            return "llm.lora"
        if "modules_to_save" in name:
            return "llm.norms"
        if "embed_tokens" in name or "lm_head" in name:
            return "llm.embeddings"
        return "llm.base"
    if name.startswith("bridge."):
        sub = name.split(".")[1]
        return {
            "projector": "bridge.semantic_projector",
            "audio_projector": "bridge.residual_projector",
            "multihead_attention": "bridge.fusion",
        }.get(sub, f"bridge.{sub}")
    if name.startswith("dit."):
        return "dit"
    if name.startswith("resampler."):
        return "audio_resampler"
    return name.split(".")[0]


def lr_group(part: str) -> str:
    if part.startswith("llm."):
        return "llm"
    if part == "dit":
        return "dit"
    return "bridge"


def configure_trainable(module: TrainModule, *, understanding: bool) -> None:
    """Freeze and unfreeze by stage. The LLM keeps peft's own marks (LoRA, norms) plus its embeddings."""
    stage = module.stage
    module.bridge.requires_grad_(False)
    module.bridge.projector.requires_grad_(True)
    module.bridge.audio_projector.requires_grad_(stage.train_residual)
    module.bridge.multihead_attention.requires_grad_(stage.train_fusion)
    module.dit.requires_grad_(stage.train_dit)
    if module.resampler is not None:
        module.resampler.requires_grad_(understanding)


@dataclass(frozen=True)
class PartCount:
    part: str
    trainable: int
    total: int


PART_ORDER = (
    "llm.base",
    "llm.lora",
    "llm.norms",
    "llm.embeddings",
    "bridge.semantic_projector",
    "bridge.residual_projector",
    "bridge.fusion",
    "dit",
    "audio_resampler",
)


def parameter_counts(module: nn.Module, frozen_parts: dict[str, nn.Module] | None = None) -> list[PartCount]:
    """Trainable and total parameters per part (tied tensors counted once), plus whole frozen parts."""
    trainable: dict[str, int] = {}
    total: dict[str, int] = {}
    for name, param in module.named_parameters():
        part = part_of(name)
        total[part] = total.get(part, 0) + param.numel()
        if param.requires_grad:
            trainable[part] = trainable.get(part, 0) + param.numel()
    counts = [PartCount(p, trainable.get(p, 0), total[p]) for p in sorted(total, key=_part_rank)]
    for part, frozen in (frozen_parts or {}).items():
        counts.append(PartCount(part, 0, sum(p.numel() for p in frozen.parameters())))
    return counts


def _part_rank(part: str) -> tuple[int, str]:
    return (PART_ORDER.index(part) if part in PART_ORDER else len(PART_ORDER), part)
