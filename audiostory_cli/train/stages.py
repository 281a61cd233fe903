"""The training stages of the paper, what each trains, which losses it uses, and the loss-weight presets.

Stage I (single-audio generation) is split in two like the paper's figure: ``1-warm`` first aligns the LLM with
the frozen T5 space, ``1`` then trains end to end. Stage II adds audio understanding, Stage III interleaved
multi-event stories with the storyline reasoning. Every stage keeps what the earlier ones train.

Loss mapping (``total = w_lm·L_lm + w_bridge·L_bridge + w_flow·L_flow``):

* ``L_lm``: next-token cross-entropy on the plan tokens selected by the stage's ``lm_scope`` (and on the answer
  of an understanding example). The official ``lm_loss_scale``.
* ``L_bridge``: MSE between the semantic projector output and ``t5_feature_scale · T5(caption)`` (padded to S
  tokens). The official ``rec_loss_scale``.
* ``L_flow``: flow matching of the DiT on the event's VAE latents. The official ``dit_loss_scale``.

The paper's λ1, λ2, λ3 are read as (λ_lm, λ_bridge, λ_flow) in the order the paper introduces the losses:
``paper`` = 1 / 0.2 / 0.4, ``appendix`` = 5 / 2 / 1. The public material does not state the mapping outright;
pass ``--w-lm/--w-bridge/--w-flow`` to set any weight explicitly.

Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import UsageError

LmScope = Literal["boundary", "plan", "full"]
LM_SCOPES: tuple[str, ...] = ("boundary", "plan", "full")
STAGE_NAMES: tuple[str, ...] = ("1-warm", "1", "2", "3")


@dataclass(frozen=True)
class Stage:
    """What a stage trains and optimises.

    ``lm_scope`` picks the plan tokens the LM loss covers: ``boundary`` = the layout tokens the model must emit
    (``<|/think|>``, ``<|gen|>``, ``<timestamp>``, ``</timestamp>``, ``<t5>``, ``<aud>``, ``<|/gen|>``,
    ``<|im_end|>``); ``plan`` adds the caption and duration text of every event; ``full`` adds the storyline
    reasoning. ``None``: no LM loss.
    """

    name: str
    title: str
    train_residual: bool  # residual projector (audio_projector)
    train_fusion: bool  # the semantic/residual fusion attention
    train_dit: bool  # transformer + pooled fc + duration embedder
    lm_scope: LmScope | None
    flow: bool
    understanding: Literal["no", "yes", "optional"]  # QA data: rejected / required / used when given
    needs_stories: bool

    @property
    def uses_lm(self) -> bool:
        return self.lm_scope is not None


STAGES: dict[str, Stage] = {
    "1-warm": Stage(
        name="1-warm",
        title="Stage I warm-up: LoRA + semantic projector, MSE to s·T5(caption)",
        train_residual=False,
        train_fusion=False,
        train_dit=False,
        lm_scope=None,
        flow=False,
        understanding="no",
        needs_stories=False,
    ),
    "1": Stage(
        name="1",
        title="Stage I: + residual projector, fusion, DiT; MSE + boundary CE + flow",
        train_residual=True,
        train_fusion=True,
        train_dit=True,
        lm_scope="boundary",
        flow=True,
        understanding="no",
        needs_stories=False,
    ),
    "2": Stage(
        name="2",
        title="Stage II: + audio understanding (Whisper frozen, resampler trained), text CE",
        train_residual=True,
        train_fusion=True,
        train_dit=True,
        lm_scope="plan",
        flow=True,
        understanding="yes",
        needs_stories=False,
    ),
    "3": Stage(
        name="3",
        title="Stage III: interleaved multi-event stories with the reasoning loss",
        train_residual=True,
        train_fusion=True,
        train_dit=True,
        lm_scope="full",
        flow=True,
        understanding="optional",
        needs_stories=True,
    ),
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise UsageError(f"--stage {name!r} is not one of {', '.join(STAGE_NAMES)}")
    return STAGES[name]


@dataclass(frozen=True)
class LossWeights:
    lm: float
    bridge: float
    flow: float

    def check(self) -> None:
        for name, value in (("--w-lm", self.lm), ("--w-bridge", self.bridge), ("--w-flow", self.flow)):
            if not (value >= 0 and value < float("inf")):
                raise UsageError(f"{name} {value} must be a finite number >= 0")


LOSS_PRESETS: dict[str, LossWeights] = {
    "paper": LossWeights(lm=1.0, bridge=0.2, flow=0.4),
    "appendix": LossWeights(lm=5.0, bridge=2.0, flow=1.0),
}


def resolve_loss_weights(
    preset: str, *, lm: float | None = None, bridge: float | None = None, flow: float | None = None
) -> LossWeights:
    """A named preset with any explicitly given weight on top."""
    if preset not in LOSS_PRESETS:
        raise UsageError(f"--loss-weights {preset!r} is not one of {', '.join(LOSS_PRESETS)}")
    base = LOSS_PRESETS[preset]
    weights = LossWeights(
        lm=base.lm if lm is None else lm,
        bridge=base.bridge if bridge is None else bridge,
        flow=base.flow if flow is None else flow,
    )
    weights.check()
    return weights
