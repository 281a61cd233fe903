"""The reasoner: a Qwen2 causal LM that plans the story, and the teacher-forced pass that yields bridge states.

``Reasoner.plan`` builds the instruction and chat prompt, decodes under the layout grammar (``constraints.py``),
parses and repairs the output (``layout.py``) and returns the plan with its semantic and residual states.
``Reasoner.bridge_states`` re-serialises a (possibly edited) plan and runs ONE forward pass over prompt + plan
to take the final-norm hidden states at the S semantic and R residual placeholder positions.

Audio input (``continue`` with a trained resampler): ``audio_embeds`` (T, H) are placed SEED-X style, as in the
official ``get_last_hidden_states``: the user turn starts with ``<aud><aud_00000>…<aud_{T-1}></aud>`` and the
input embeddings at those T placeholder positions are replaced by the resampler tokens (``AudioPromptDecoder``).
The official code never fixed which placeholders (``get_last_hidden_states`` in
``src/models/mllm/modeling_audiostory_llm.py`` of https://github.com/TencentARC/AudioStory); this layout is our
documented choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn
from transformers import LogitsProcessor, Qwen2Config, Qwen2ForCausalLM

from ..config import BridgeDims, ReasonerDims
from ..errors import InputError, ModelError, UsageError
from ..progress import ProgressFn, no_progress
from .constraints import DecodeLimits, TokenClasses, build_token_classes
from .decoding import (
    DecodeEngine,
    Generation,
    Sampler,
    fast_generate,
    placeholder_positions,
    reference_generate,
)
from .layout import (
    EventLike,
    ParsedPlan,
    PlannedEvent,
    find_special_token,
    parse,
    parse_with_sources,
    serialise_ids,
)
from .prompt import build_chat_prompt, build_instruction
from .tokens import (
    AUD_CLOSE,
    AUD_OPEN,
    NUM_AUD_PLACEHOLDERS,
    SpecialTokenIds,
    aud_placeholder,
    decode_ids,
    encode_text,
    resolve_special_token_ids,
)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_MODULES_TO_SAVE = ("input_layernorm", "post_attention_layernorm", "norm")  # "norm" matches every RMSNorm
MAX_TOTAL_SECONDS = 3600.0


# -- building -----------------------------------------------------------------------------------------------


def qwen2_config(dims: ReasonerDims, vocab_size: int) -> Qwen2Config:
    if vocab_size <= 0:
        raise ModelError(f"vocab_size must be positive, got {vocab_size}; take it from the tokenizer")
    if dims.vocab_size not in (0, vocab_size):
        raise ModelError(
            f"the reasoner dims say vocab_size {dims.vocab_size} but the tokenizer has {vocab_size} tokens; "
            "use the tokenizer the model was trained with"
        )
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=dims.hidden_size,
        intermediate_size=dims.intermediate_size,
        num_hidden_layers=dims.num_layers,
        num_attention_heads=dims.num_heads,
        num_key_value_heads=dims.num_kv_heads,
        max_position_embeddings=dims.max_position_embeddings,
        rms_norm_eps=dims.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": dims.rope_theta},
        tie_word_embeddings=dims.tie_word_embeddings,
        use_sliding_window=False,
        hidden_act="silu",
    )


def build_llm(
    dims: ReasonerDims, vocab_size: int, dtype: torch.dtype, *, device: torch.device | str = "cpu"
) -> Qwen2ForCausalLM:
    """A plain HF ``Qwen2ForCausalLM`` (sdpa attention), randomly initialised, in eval mode.

    With ``device="meta"`` nothing is allocated: the loader must ``to_empty()``, load every weight strictly and
    then call ``reset_rotary_buffers`` (``to_empty`` leaves the rotary ``inv_freq`` buffer as garbage).
    """
    config = qwen2_config(dims, vocab_size)
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return cast(Qwen2ForCausalLM, model.eval())


def reset_rotary_buffers(llm: Qwen2ForCausalLM) -> None:
    """Rebuild the non-persistent rotary buffers (needed after ``to_empty`` from the meta device)."""
    decoder = llm.model
    device = decoder.embed_tokens.weight.device
    with torch.device(device):
        decoder.rotary_emb = type(decoder.rotary_emb)(config=llm.config)


def apply_lora(llm: Qwen2ForCausalLM, dims: ReasonerDims) -> Any:
    """Wrap ``llm`` in a peft ``PeftModel`` like the official ``get_peft_model_with_resize_embedding``.

    LoRA r/alpha/dropout from ``dims`` on q/k/v/o/gate/up/down_proj; every RMSNorm a trained copy
    (``modules_to_save``); the (resized, tied) embedding matrix fully trainable. Mutates ``llm`` in place.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=dims.lora_r,
        lora_alpha=dims.lora_alpha,
        lora_dropout=dims.lora_dropout,
        target_modules=list(LORA_TARGETS),
        modules_to_save=list(LORA_MODULES_TO_SAVE),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(llm, config)
    model.get_input_embeddings().requires_grad_(True)
    model.get_output_embeddings().requires_grad_(True)
    return model


# -- options and results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingOptions:
    """How the plan is decoded. The default is greedy like the official inference.

    ``temperature > 0`` samples (with ``top_p`` and ``seed``). ``repetition_penalty`` is explicit here (1.0 = none);
    ``pipeline.plan_story`` sets it from the model's generation config, i.e. the 1.05 that the stock Qwen2.5
    ``generation_config.json`` adds to the official greedy decoding, unless ``--repetition-penalty`` says otherwise.
    The ``max_*`` budgets bound the output so that decoding always ends with a complete plan.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_new_tokens: int = 1600
    repetition_penalty: float = 1.0
    max_reasoning_tokens: int = 1200
    max_caption_tokens: int = 96
    max_events: int | None = None

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0 and self.temperature < float("inf")):
            raise UsageError(f"temperature {self.temperature} must be 0 (greedy) or a positive number")
        if not 0.0 < self.top_p <= 1.0:
            raise UsageError(f"top_p {self.top_p} must be in (0, 1]")
        if not (self.repetition_penalty > 0.0 and self.repetition_penalty < float("inf")):
            raise UsageError(f"repetition_penalty {self.repetition_penalty} must be positive")
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"seed {self.seed} must be in 0..2^63-1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_new_tokens=self.max_new_tokens,
            max_reasoning_tokens=self.max_reasoning_tokens,
            max_caption_tokens=self.max_caption_tokens,
            max_events=self.max_events,
        )

    def sampler(self) -> Sampler:
        return Sampler(
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
        )


@dataclass(frozen=True)
class ReasonerOutput:
    """A plan and its bridge states.

    The states are those the model computed while writing ``token_ids`` (as in the official inference), taken at
    the placeholder blocks ``event_blocks`` of the kept events, even when parsing repaired the text around them
    (timestamps rounded, durations rescaled, reasoning lines rewritten): ``states_source == "generation"``. Only
    when a kept event has no complete placeholder block in the output are they recomputed by one teacher-forced
    pass over the re-serialised plan (``"teacher_forced"``).
    """

    instruction: str
    reasoning: str  # storyline text (the per-event reasoning lines are regenerated from events)
    events: list[PlannedEvent]  # durations sum to the requested total
    warnings: list[str]  # repairs made while parsing; empty for a clean output
    text: str  # the raw generated text, from after <|think|> to <|im_end|>
    semantic_states: torch.Tensor  # (N, S, H) final-norm hidden states at <t5_k>
    residual_states: torch.Tensor  # (N, R, H) at <aud_k>
    token_ids: list[int]  # the generated ids
    states_source: Literal["generation", "teacher_forced"]  # teacher forced when a kept block is incomplete
    event_blocks: tuple[int, ...] = ()  # per kept event, its 0-based <|gen|> block in token_ids


def gather_bridge_states(
    hidden: torch.Tensor,
    ids: Sequence[int],
    special: SpecialTokenIds,
    num_semantic: int,
    num_residual: int,
    start: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """From final-norm states ``hidden`` (L, H) over ``ids`` (L,), the (N, S, H) and (N, R, H) bridge states.

    Only ``ids[start:]`` is searched (pass the prompt length). Works with gradients (for training).
    """
    blocks = placeholder_positions(list(ids[start:]), special, num_semantic, num_residual)
    if not blocks:
        raise ModelError("no <|gen|> block to take bridge states from; the plan has no events")
    sem = torch.tensor([[start + p for p in s] for s, _ in blocks], device=hidden.device)
    res = torch.tensor([[start + p for p in r] for _, r in blocks], device=hidden.device)
    return hidden[sem], hidden[res]


def audio_prompt_block(num_tokens: int) -> str:
    """``<aud><aud_00000>…<aud_{T-1}></aud>``: where the resampler tokens go in the user turn."""
    if not 1 <= num_tokens <= NUM_AUD_PLACEHOLDERS:
        raise ModelError(
            f"{num_tokens} audio tokens do not fit the {NUM_AUD_PLACEHOLDERS} <aud_k> placeholders of the tokenizer"
        )
    return AUD_OPEN + "".join(aud_placeholder(k) for k in range(num_tokens)) + AUD_CLOSE


class AudioPromptDecoder(nn.Module):
    """The LLM decoder with audio tokens in place of the input embeddings at given (absolute) positions.

    Call it like the decoder (``input_ids``, optional ``past_key_values``); a call that continues a KV cache is
    offset by the cache length, so positions always count from the start of the prompt.
    """

    def __init__(self, decoder: Any, audio_embeds: torch.Tensor, positions: Sequence[int]) -> None:
        super().__init__()
        if audio_embeds.ndim != 2 or audio_embeds.shape[0] != len(positions):
            raise ModelError(
                f"audio tokens are {tuple(audio_embeds.shape)} for {len(positions)} placeholder positions; "
                "expected (T, hidden) with one row per <aud_k> of the prompt"
            )
        if audio_embeds.shape[1] != decoder.config.hidden_size:
            raise ModelError(
                f"audio tokens have width {audio_embeds.shape[1]} but the LLM's hidden size is "
                f"{decoder.config.hidden_size}; the audio encoder and the LLM come from different models"
            )
        self.decoder = decoder
        self.config = decoder.config
        self.audio_embeds = audio_embeds
        self.positions = [int(p) for p in positions]

    def forward(self, input_ids: torch.Tensor, past_key_values: Any = None, use_cache: bool | None = None) -> Any:
        offset = past_key_values.get_seq_length() if past_key_values is not None else 0
        embeds = self.decoder.embed_tokens(input_ids)
        length = int(input_ids.shape[1])
        hits = [(p - offset, k) for k, p in enumerate(self.positions) if offset <= p < offset + length]
        if hits:
            rows = torch.tensor([row for row, _ in hits], device=embeds.device)
            which = torch.tensor([k for _, k in hits], device=self.audio_embeds.device)
            embeds = embeds.clone()
            embeds[:, rows] = self.audio_embeds[which].to(device=embeds.device, dtype=embeds.dtype)
        return self.decoder(inputs_embeds=embeds, past_key_values=past_key_values, use_cache=use_cache)


def _decoder_and_head(llm: nn.Module) -> tuple[Any, Any, Any]:
    base: Any = llm
    if hasattr(base, "get_base_model"):  # a peft PeftModel
        base = base.get_base_model()
    if not hasattr(base, "model") or not hasattr(base, "lm_head"):
        raise ModelError(f"{type(base).__name__} is not a causal LM with .model and .lm_head (Qwen2ForCausalLM)")
    return base.model, base.lm_head, base.config


# -- the reasoner -------------------------------------------------------------------------------------------


class Reasoner:
    """An LLM (plain ``Qwen2ForCausalLM`` or a peft ``PeftModel`` around one) with its tokenizer."""

    def __init__(
        self, llm: nn.Module, tokenizer: Any, bridge_dims: BridgeDims, ids: SpecialTokenIds | None = None
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.ids = ids or resolve_special_token_ids(tokenizer)
        self.num_semantic = bridge_dims.num_semantic_tokens
        self.num_residual = bridge_dims.num_residual_tokens
        self.decoder, self.lm_head, config = _decoder_and_head(llm)
        if config.hidden_size != bridge_dims.llm_dim:
            raise ModelError(
                f"the LLM hidden size is {config.hidden_size} but the bridge expects {bridge_dims.llm_dim}; "
                "the model dims do not match"
            )
        logits_size = int(self.lm_head.weight.shape[0])
        self.classes: TokenClasses = build_token_classes(
            tokenizer, self.ids, self.num_semantic, self.num_residual, logits_size
        )
        self.engine = DecodeEngine()  # how the fast decoder runs the LLM (static cache, compiled step: opt-in)

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    def prompt_ids(self, instruction: str, audio_tokens: int = 0) -> list[int]:
        """The chat prompt's ids; with ``audio_tokens`` the user turn opens with the audio placeholder block."""
        if (token := find_special_token(instruction)) is not None:
            raise InputError(f"the instruction contains the special token {token}; remove it from the prompt")
        block = audio_prompt_block(audio_tokens) if audio_tokens else ""
        return encode_text(self.tokenizer, build_chat_prompt(block + instruction))

    def decoder_for(self, prompt_ids: Sequence[int], audio_embeds: torch.Tensor | None) -> Any:
        """The plain decoder, or an ``AudioPromptDecoder`` feeding ``audio_embeds`` at the prompt's ``<aud_k>``."""
        if audio_embeds is None:
            return self.decoder
        positions = [i for i, token in enumerate(prompt_ids) if self.ids.is_aud_placeholder(token)]
        return AudioPromptDecoder(self.decoder, audio_embeds, positions)

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
        """Plan a story: instruction → constrained decoding → parsed, repaired plan + bridge states.

        ``processors`` are extra ``LogitsProcessor``s applied before the grammar (e.g. ``ScriptProcessor``).
        ``method="reference"`` decodes with transformers ``generate`` instead of the fast loop.
        """
        instruction = build_instruction(prompt, total_duration, lead)
        return self.plan_instruction(
            instruction,
            total_duration,
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
        method: Literal["fast", "reference"] = "fast",
        audio_embeds: torch.Tensor | None = None,
    ) -> ReasonerOutput:
        """``plan`` with a ready instruction (e.g. an evaluation set's ``whole_caption``).

        ``audio_embeds`` (T, H): resampler tokens of an input audio, placed in the user turn (fast decoder only).
        """
        if not (0.5 <= total_duration <= MAX_TOTAL_SECONDS):
            raise InputError(f"total duration {total_duration} s must be in 0.5..{MAX_TOTAL_SECONDS:g} s")
        if audio_embeds is not None and method != "fast":
            raise UsageError("audio input is supported by the fast decoder only; use method='fast'")
        limits = sampling.limits()
        limits.check(self.num_semantic, self.num_residual)
        prompt_ids = self.prompt_ids(instruction, 0 if audio_embeds is None else int(audio_embeds.shape[0]))
        total = limits.max_new_tokens

        def on_step(generated: int) -> None:
            progress("plan", min(generated, total), total)

        progress("plan", 0, total)
        if method == "fast":
            generation = fast_generate(
                self.decoder_for(prompt_ids, audio_embeds),
                self.lm_head,
                prompt_ids,
                self.classes,
                limits,
                sampling.sampler(),
                processors,
                on_step,
                engine=self.engine,
            )
        elif method == "reference":
            generation = reference_generate(
                self.llm, prompt_ids, self.classes, limits, sampling.sampler(), processors, on_step
            )
        else:
            raise UsageError(f"method {method!r} must be 'fast' or 'reference'")
        progress("plan", total, total)
        return self._finish(instruction, total_duration, generation, progress, audio_embeds)

    def rewrite(
        self,
        instruction: str,
        *,
        sampling: SamplingOptions = SamplingOptions(),  # noqa: B008 - frozen, immutable default
        progress: ProgressFn = no_progress,
        processors: Sequence[LogitsProcessor] = (),
    ) -> ParsedPlan:
        """Decode a plan for ``instruction`` (an edit's user turn) under the layout grammar and parse it.

        Unlike ``plan_instruction`` the durations are kept as written (an edit may change the total), and no
        bridge states are taken: the story's render pass bridges the edited plan like any other.
        Raises ``PlanParseError`` when the output has no complete event or an event without a duration.
        """
        limits = sampling.limits()
        limits.check(self.num_semantic, self.num_residual)
        prompt_ids = self.prompt_ids(instruction)
        total = limits.max_new_tokens

        def on_step(generated: int) -> None:
            progress("edit", min(generated, total), total)

        progress("edit", 0, total)
        generation = fast_generate(
            self.decoder,
            self.lm_head,
            prompt_ids,
            self.classes,
            limits,
            sampling.sampler(),
            processors,
            on_step,
            engine=self.engine,
        )
        progress("edit", total, total)
        return parse(
            generation.ids,
            tokenizer=self.tokenizer,
            num_text_tokens=self.ids.num_text_tokens,
            num_semantic=self.num_semantic,
            num_residual=self.num_residual,
        )

    def _finish(
        self,
        instruction: str,
        total_duration: float,
        generation: Generation,
        progress: ProgressFn,
        audio_embeds: torch.Tensor | None = None,
    ) -> ReasonerOutput:
        parsed, sources = parse_with_sources(
            generation.ids,
            tokenizer=self.tokenizer,
            num_text_tokens=self.ids.num_text_tokens,
            num_semantic=self.num_semantic,
            num_residual=self.num_residual,
            total_duration=total_duration,
        )
        positions = self.block_positions(generation.ids, sources)
        if positions is not None and all(p in generation.states for sem, res in positions for p in (*sem, *res)):
            semantic = torch.stack([torch.stack([generation.states[p] for p in sem]) for sem, _ in positions])
            residual = torch.stack([torch.stack([generation.states[p] for p in res]) for _, res in positions])
            source: Literal["generation", "teacher_forced"] = "generation"
        else:
            semantic, residual = self.bridge_states(
                instruction, parsed.reasoning, parsed.events, progress=progress, audio_embeds=audio_embeds
            )
            source = "teacher_forced"
        return ReasonerOutput(
            instruction=instruction,
            reasoning=parsed.reasoning,
            events=parsed.events,
            warnings=parsed.warnings,
            text=decode_ids(self.tokenizer, generation.ids),
            semantic_states=semantic,
            residual_states=residual,
            token_ids=generation.ids,
            states_source=source,
            event_blocks=tuple(sources),
        )

    def block_positions(self, ids: Sequence[int], blocks: Sequence[int]) -> list[tuple[list[int], list[int]]] | None:
        """Positions in ``ids`` of the S semantic and R residual placeholders of the given ``<|gen|>`` blocks
        (0-based), or ``None`` when one of them is not exactly ``<t5_00000>…`` / ``<aud_00000>…`` complete."""
        found: list[tuple[list[int], list[int]]] = []
        for position, token in enumerate(ids):
            if token == self.ids.gen_open:
                found.append(([], []))
            elif found and self.ids.is_t5_placeholder(token):
                found[-1][0].append(position)
            elif found and self.ids.is_aud_placeholder(token):
                found[-1][1].append(position)
        chosen = []
        for j in blocks:
            if not 0 <= j < len(found):
                return None
            sem, res = found[j]
            if [ids[p] - self.ids.t5_first for p in sem] != list(range(self.num_semantic)) or [
                ids[p] - self.ids.aud_first for p in res
            ] != list(range(self.num_residual)):
                return None
            chosen.append((sem, res))
        return chosen

    def generated_states(
        self,
        instruction: str,
        token_ids: Sequence[int],
        event_blocks: Sequence[int],
        *,
        progress: ProgressFn = no_progress,
        audio_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The bridge states of exactly the tokens the model wrote: one forward over prompt + ``token_ids``, the
        final-norm states at the placeholders of ``event_blocks``. (N, S, H) and (N, R, H)."""
        positions = self.block_positions(token_ids, event_blocks)
        if positions is None:
            raise ModelError("the stored generated tokens lack a complete placeholder block; re-plan the story")
        prompt_ids = self.prompt_ids(instruction, 0 if audio_embeds is None else int(audio_embeds.shape[0]))
        start = len(prompt_ids)
        progress("bridge", 0, 1)
        with torch.inference_mode():
            input_ids = torch.tensor([[*prompt_ids, *token_ids]], device=self.device)
            hidden = self.decoder_for(prompt_ids, audio_embeds)(input_ids=input_ids).last_hidden_state[0]
            sem = torch.tensor([[start + p for p in s] for s, _ in positions], device=hidden.device)
            res = torch.tensor([[start + p for p in r] for _, r in positions], device=hidden.device)
            states = hidden[sem], hidden[res]
        progress("bridge", 1, 1)
        return states

    def bridge_states(
        self,
        instruction: str,
        reasoning: str,
        events: Sequence[EventLike],
        *,
        progress: ProgressFn = no_progress,
        audio_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-serialise the plan after the prompt and run ONE teacher-forced forward pass.

        Returns the final-norm hidden states at the placeholder positions: (N, S, H) and (N, R, H).
        ``audio_embeds``: the input audio's resampler tokens, placed in the prompt as when planning.
        """
        plan_ids = serialise_ids(self.tokenizer, reasoning, events, self.num_semantic, self.num_residual)
        prompt_ids = self.prompt_ids(instruction, 0 if audio_embeds is None else int(audio_embeds.shape[0]))
        progress("bridge", 0, 1)
        states = self.states_for_ids([*prompt_ids, *plan_ids], start=len(prompt_ids), audio_embeds=audio_embeds)
        progress("bridge", 1, 1)
        return states

    @torch.inference_mode()
    def states_for_ids(
        self, ids: Sequence[int], start: int = 0, audio_embeds: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over ``ids``; the bridge states of every ``<|gen|>`` block in ``ids[start:]``.

        With ``audio_embeds`` the ``<aud_k>`` placeholders of ``ids[:start]`` (the prompt) carry the audio.
        """
        input_ids = torch.tensor([list(ids)], device=self.device)
        decoder = self.decoder_for(list(ids[:start]), audio_embeds)
        hidden = decoder(input_ids=input_ids).last_hidden_state[0]
        return gather_bridge_states(hidden, ids, self.ids, self.num_semantic, self.num_residual, start)
