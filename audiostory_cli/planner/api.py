"""The planner's Python API: ``plan(prompt, duration) → plan`` and ``bridge(plan) → DiT tokens``.

    planner = build_tiny_planner()                      # or Planner(Reasoner(llm, tokenizer, dims.bridge), bridge)
    out = planner.plan("a dog barks in the rain", 20.0)   # ReasonerOutput: reasoning, events, states
    tokens = planner.fuse(out)                           # (N, S, out_dim) for the DiT, no extra forward
    tokens = planner.bridge_tokens(instruction, reasoning, edited_events)  # after an edit: one forward

A continuation (``continue``) plans from its own instruction (``plan_instruction``) and, when the model has a
trained resampler, with the input audio's tokens in the prompt (``audio_embeds``, see ``reasoner``). Its story's
source event (event 0, the input itself) is not part of the plan the LLM sees: ``bridge_story`` skips it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from transformers import LogitsProcessor

from ..config import ModelDims, tiny_dims
from ..progress import ProgressFn, no_progress
from .bridge import Bridge
from .layout import EventLike, ParsedPlan
from .prompt import build_instruction
from .reasoner import Reasoner, ReasonerOutput, SamplingOptions, build_llm
from .script import demo_plan, scripted_plan
from .tokens import build_tiny_tokenizer


class StoryLike(Protocol):
    """What ``bridge_story`` reads from a ``story.plan.Story``."""

    prompt: str
    total_duration: float
    instruction: str
    reasoning: str

    @property
    def events(self) -> Sequence[EventLike]: ...

    @property
    def generated(self) -> Any: ...  # story.plan.GeneratedPlan | None: token_ids, event_blocks

    def unedited_events(self) -> int: ...


@dataclass
class Planner:
    reasoner: Reasoner
    bridge: Bridge

    def plan(
        self,
        prompt: str,
        total_duration: float,
        *,
        lead: str | int | None = None,
        sampling: SamplingOptions = SamplingOptions(),  # noqa: B008 - frozen, immutable default
        progress: ProgressFn = no_progress,
        processors: Sequence[LogitsProcessor] = (),
        method: Literal["fast", "reference"] = "fast",
    ) -> ReasonerOutput:
        """Plan a story (see ``Reasoner.plan``)."""
        return self.reasoner.plan(
            prompt,
            total_duration,
            lead=lead,
            sampling=sampling,
            progress=progress,
            processors=processors,
            method=method,
        )

    def plan_instruction(
        self,
        instruction: str,
        total_duration: float,
        *,
        sampling: SamplingOptions = SamplingOptions(),  # noqa: B008 - frozen, immutable default
        progress: ProgressFn = no_progress,
        processors: Sequence[LogitsProcessor] = (),
        audio_embeds: torch.Tensor | None = None,
    ) -> ReasonerOutput:
        """Plan from a ready instruction, optionally hearing an input audio (see ``Reasoner.plan_instruction``)."""
        return self.reasoner.plan_instruction(
            instruction,
            total_duration,
            sampling=sampling,
            progress=progress,
            processors=processors,
            audio_embeds=audio_embeds,
        )

    def rewrite(
        self,
        instruction: str,
        *,
        sampling: SamplingOptions = SamplingOptions(),  # noqa: B008 - frozen, immutable default
        progress: ProgressFn = no_progress,
        processors: Sequence[LogitsProcessor] = (),
        adapter: bool = True,
    ) -> ParsedPlan:
        """Rewrite a plan from an edit's user turn (see ``Reasoner.rewrite``).

        ``adapter=False`` decodes with a peft LoRA adapter switched off: the instruction-tuned base model
        (the released checkpoint's LoRA was trained to plan from a prompt, never to edit), still constrained to
        the plan layout. The bridge and render path are unchanged: they run with the adapter on.
        """
        with torch.inference_mode(), _adapter_disabled(self.reasoner.llm, not adapter):
            return self.reasoner.rewrite(instruction, sampling=sampling, progress=progress, processors=processors)

    @torch.inference_mode()
    def fuse(self, output: ReasonerOutput) -> torch.Tensor:
        """DiT tokens (N, S, out_dim) from a plan's own states (no LLM pass)."""
        return self._fuse(output.semantic_states, output.residual_states)

    @torch.inference_mode()
    def bridge_tokens(
        self,
        instruction: str,
        reasoning: str,
        events: Sequence[EventLike],
        *,
        progress: ProgressFn = no_progress,
        audio_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DiT tokens (N, S, out_dim) for a (possibly edited) plan: one teacher-forced LLM pass, then fusion."""
        semantic, residual = self.reasoner.bridge_states(
            instruction, reasoning, events, progress=progress, audio_embeds=audio_embeds
        )
        return self._fuse(semantic, residual)

    def bridge_story(
        self, story: StoryLike, *, progress: ProgressFn = no_progress, audio_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """DiT tokens for a ``Story``: the leading events the user left unedited (``story.unedited_events()``) are
        conditioned on the tokens the model generated (``story.generated``), as in the official inference; from the
        first edited event on, on one teacher-forced pass over the re-serialised plan (``bridge_tokens``). An
        empty instruction is rebuilt from prompt and total (default lead).

        Source events (a continuation's input audio, status "source") are skipped: row i of the result belongs
        to the i-th planned event, i.e. to event index i + 1 in both kinds of story.
        """
        instruction = story.instruction or build_instruction(story.prompt, story.total_duration)
        events = [e for e in story.events if getattr(e, "status", "planned") != "source"]
        keep = min(story.unedited_events(), len(events)) if story.generated is not None else 0
        parts = []
        with torch.inference_mode():
            if keep:
                generated = story.generated
                semantic, residual = self.reasoner.generated_states(
                    instruction,
                    generated.token_ids,
                    generated.event_blocks[:keep],
                    progress=progress,
                    audio_embeds=audio_embeds,
                )
                parts.append(self._fuse(semantic, residual))
        if keep < len(events):
            parts.append(
                self.bridge_tokens(instruction, story.reasoning, events, progress=progress, audio_embeds=audio_embeds)[
                    keep:
                ]
            )
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _fuse(self, semantic: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        device = next(self.bridge.parameters()).device
        fused: torch.Tensor = self.bridge(semantic.to(device), residual.to(device))
        return fused


@contextlib.contextmanager
def _adapter_disabled(llm: Any, disable: bool) -> Iterator[None]:
    """Switch a peft model's adapter off for the block; a plain model (no adapter) is left as it is."""
    if disable and hasattr(llm, "disable_adapter"):
        with llm.disable_adapter():
            yield
    else:
        yield


def build_tiny_planner(seed: int = 0, dims: ModelDims | None = None) -> Planner:
    """The ``tiny-random`` planner: tiny tokenizer, random tiny Qwen2 and bridge, fp32 on CPU, deterministic."""
    dims = dims or tiny_dims()
    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        llm = build_llm(dims.reasoner, len(tokenizer), torch.float32)
        bridge = Bridge(dims.bridge).eval()
    return Planner(reasoner=Reasoner(llm, tokenizer, dims.bridge), bridge=bridge)


def demo_sampling(planner: Planner, prompt: str, total_duration: float) -> tuple[SamplingOptions, Any]:
    """Sampling options and a script processor that make ``planner`` plan ``demo_plan(prompt, total)``.

    For ``--model tiny-random``: a random model then yields readable captions taken from the prompt.
    """
    reasoning, events = demo_plan(prompt, total_duration)
    scripted = scripted_plan(planner.reasoner, reasoning, events)
    sampling = SamplingOptions(max_new_tokens=max(scripted.num_tokens + 8, SamplingOptions().max_new_tokens))
    return sampling, scripted.processor()
