"""Two decoders of a plan under the grammar, and where the bridge states sit in the output.

* ``fast_generate``: our own loop with a KV cache. Whenever the grammar leaves a single possible token (the
  whole ``<t5>…</t5><aud>…</aud><|/gen|>`` tail after ``</timestamp>``, or a budget-forced closer) the run is
  appended in ONE forward pass, whose final-norm hidden states at the placeholder positions are the bridge
  states. Only those states are kept.
* ``reference_generate``: transformers ``generate`` with ``PlanConstraintProcessor`` and
  ``output_hidden_states=[-1]`` (last layer only). Straightforward; used to check the fast path.

Both apply, in order: repetition penalty, extra processors, the grammar mask, temperature, top-p (the order of
transformers). Greedy decoding gives the same text and states (to fp tolerance) on both. Sampled runs are
reproducible per seed on each path, but the paths draw random numbers differently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList, StaticCache

from ..errors import ModelError
from .constraints import DecodeLimits, MaskBuilder, PlanConstraintProcessor, PlanGrammar, TokenClasses
from .tokens import SpecialTokenIds


@dataclass(frozen=True)
class Sampler:
    """How to pick a token from masked logits: greedy when ``temperature == 0``."""

    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class DecodeEngine:
    """How ``fast_generate`` runs the LLM; the default (dynamic KV cache, eager steps) suits CPUs and one-off runs.

    ``static_cache``: the KV cache is allocated once for prompt + budget, so every one-token step has the same
    shapes. ``compile_step``: the one-token step goes through ``torch.compile`` (``mode="reduce-overhead"``: CUDA
    graphs on a GPU, where eager decoding is bound by kernel launches); it needs ``static_cache`` and the plain
    decoder (not an audio-prompt wrapper). Multi-token forwards (the prompt, forced runs) always run eagerly, and
    the result is the same as the default's up to float rounding. Compiling costs tens of seconds the first time
    in a process, so it pays off for long plans or many stories per process.
    """

    static_cache: bool = False
    compile_step: bool = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        if self.compile_step and not self.static_cache:
            raise ValueError("compile_step needs static_cache=True (a compiled step wants fixed shapes)")


@dataclass
class Generation:
    """The generated ids (after the prompt) and the last-layer states at generated placeholder positions."""

    ids: list[int]
    states: dict[int, torch.Tensor]  # position in ``ids`` -> (H,) final-norm hidden state fed at it


def top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """transformers ``TopPLogitsWarper`` (min_tokens_to_keep=1) on a 1-D score vector."""
    if top_p >= 1.0:
        return scores
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[-1:] = False
    remove = remove_sorted.scatter(0, sorted_indices, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


def choose_token(scores: torch.Tensor, sampler: Sampler, generator: torch.Generator | None) -> int:
    """Pick from 1-D masked scores: argmax, or temperature + top-p + multinomial with ``generator``."""
    if not torch.isfinite(scores.max()):
        raise ModelError(
            "no allowed token has a finite logit (NaN logits, or a logits processor masked them all); "
            "check the weights and the dtype (try fp32)"
        )
    if sampler.greedy:
        return int(torch.argmax(scores).item())
    scores = top_p_filter(scores / sampler.temperature, sampler.top_p)
    probs = scores.softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _penalise(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers ``RepetitionPenaltyLogitsProcessor``: every id in the sequence so far."""
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalised, scores)


def is_placeholder_id(ids: SpecialTokenIds, num_semantic: int, num_residual: int) -> Callable[[int], bool]:
    def check(token: int) -> bool:
        return (ids.t5_first <= token < ids.t5_first + num_semantic) or (
            ids.aud_first <= token < ids.aud_first + num_residual
        )

    return check


@torch.inference_mode()
def fast_generate(
    decoder: Any,
    lm_head: Any,
    prompt_ids: Sequence[int],
    classes: TokenClasses,
    limits: DecodeLimits,
    sampler: Sampler,
    processors: Sequence[LogitsProcessor] = (),
    on_step: Callable[[int], None] | None = None,
    engine: DecodeEngine = DecodeEngine(),  # noqa: B008 - frozen, immutable default
) -> Generation:
    """Constrained decoding with a KV cache; forced runs go through the model in one forward each."""
    device = next(decoder.parameters()).device
    grammar = PlanGrammar(classes, limits)
    masks = MaskBuilder(classes, device)
    keep = is_placeholder_id(classes.ids, classes.num_semantic, classes.num_residual)
    cache: Any = DynamicCache(config=decoder.config)
    if engine.static_cache:  # +1: a budget-forced closing run may follow the last counted token
        cache = StaticCache(config=decoder.config, max_cache_len=len(prompt_ids) + limits.max_new_tokens + 1)
    step = _compiled_step(decoder, engine.compile_backend) if engine.compile_step else None
    sequence = [int(i) for i in prompt_ids]
    seen = torch.zeros(classes.logits_size, dtype=torch.bool, device=device)
    seen[torch.tensor(sequence, device=device)] = True
    generator = None
    if not sampler.greedy:
        generator = torch.Generator(device=device)
        generator.manual_seed(sampler.seed)
    states: dict[int, torch.Tensor] = {}
    prompt_length = len(sequence)
    pending = list(sequence)
    while True:
        fed_from = len(sequence) - len(pending)
        input_ids = torch.tensor([pending], device=device)
        if step is not None and len(pending) == 1:
            positions = torch.tensor([[fed_from]], device=device)
            hidden = step(input_ids, positions, cache)[0].clone()  # a CUDA graph reuses its output buffer
        else:
            hidden = decoder(input_ids=input_ids, past_key_values=cache, use_cache=True).last_hidden_state[0]
        for offset, token in enumerate(pending):
            position = fed_from + offset - prompt_length
            if position >= 0 and keep(token):
                states[position] = hidden[offset]
        if grammar.done:  # the last run held placeholders (a budget-forced <|im_end|> after a tail)
            break
        scores = lm_head(hidden[-1:]).float()[0]
        if sampler.repetition_penalty != 1.0:
            scores = _penalise(scores, seen, sampler.repetition_penalty)
        if processors:
            ids_so_far = torch.tensor([sequence], device=device)
            for processor in processors:
                scores = processor(ids_so_far, scores[None])[0]
        token = choose_token(masks.apply(scores, grammar.allowed()), sampler, generator)
        pending = [token]
        grammar.advance(token)
        while (forced := grammar.forced()) is not None:
            grammar.advance(forced)
            pending.append(forced)
        sequence.extend(pending)
        seen[torch.tensor(pending, device=device)] = True
        if on_step is not None:
            on_step(grammar.generated)
        if grammar.done and not any(keep(t) for t in pending):
            break
    return Generation(ids=sequence[prompt_length:], states=states)


def _compiled_step(decoder: Any, backend: str) -> Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]:
    """``torch.compile`` of one decoder forward at explicit positions (one token at a time)."""
    import inspect

    if "position_ids" not in inspect.signature(decoder.forward).parameters:
        raise ModelError(
            f"compile_step needs the plain LLM decoder, got {type(decoder).__name__}; "
            "decode audio prompts without DecodeEngine(compile_step=True)"
        )

    def one_token(input_ids: torch.Tensor, position_ids: torch.Tensor, cache: Any) -> torch.Tensor:
        out = decoder(input_ids=input_ids, position_ids=position_ids, past_key_values=cache, use_cache=True)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    mode = "reduce-overhead" if backend == "inductor" else None
    return torch.compile(one_token, backend=backend, mode=mode, dynamic=False)


@torch.inference_mode()
def reference_generate(
    llm: Any,
    prompt_ids: Sequence[int],
    classes: TokenClasses,
    limits: DecodeLimits,
    sampler: Sampler,
    processors: Sequence[LogitsProcessor] = (),
    on_step: Callable[[int], None] | None = None,
) -> Generation:
    """transformers ``generate`` + ``PlanConstraintProcessor``; keeps only the last layer's hidden states."""
    device = next(llm.parameters()).device
    ids = classes.ids
    options: dict[str, object] = dict(
        max_new_tokens=limits.max_new_tokens,
        do_sample=not sampler.greedy,
        num_beams=1,
        repetition_penalty=sampler.repetition_penalty,
        eos_token_id=ids.im_end,
        pad_token_id=ids.endoftext,
        return_dict_in_generate=True,
        output_hidden_states=[-1],
        use_cache=True,
    )
    if not sampler.greedy:
        options.update(temperature=sampler.temperature, top_p=sampler.top_p, top_k=0)
    grammar = PlanConstraintProcessor(classes, limits, on_step=on_step)
    input_ids = torch.tensor([list(prompt_ids)], device=device)
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(sampler.seed)
        out = llm.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=GenerationConfig(**options),
            logits_processor=LogitsProcessorList([*processors, grammar]),
        )
    generated = [int(t) for t in out.sequences[0, input_ids.shape[1] :].tolist()]
    replay = PlanGrammar(classes, limits)  # the processor never sees the last token: check the whole output
    for token in generated:
        replay.advance(token)
    if not replay.done:
        raise ModelError("generate stopped before <|im_end|>; the constrained decoding budget was exceeded")
    hidden = torch.cat([step[-1][0] for step in out.hidden_states], dim=0)  # (prompt + new - 1, H)
    keep = is_placeholder_id(ids, classes.num_semantic, classes.num_residual)
    prompt_length = input_ids.shape[1]
    states = {j: hidden[prompt_length + j] for j, token in enumerate(generated) if keep(token)}
    return Generation(ids=generated, states=states)


def placeholder_positions(
    ids: Sequence[int], special: SpecialTokenIds, num_semantic: int, num_residual: int
) -> list[tuple[list[int], list[int]]]:
    """Per ``<|gen|>`` block in order: positions of its S semantic and R residual placeholders.

    Raises ``ModelError`` for a block whose placeholders are not exactly ``<t5_00000>…<t5_{S-1}>`` and
    ``<aud_00000>…<aud_{R-1}>`` (the layout ``serialise`` writes and the grammar enforces).
    """
    blocks: list[tuple[list[int], list[int]]] = []
    for position, token in enumerate(ids):
        if token == special.gen_open:
            blocks.append(([], []))
        elif blocks and special.is_t5_placeholder(token):
            blocks[-1][0].append(position)
        elif blocks and special.is_aud_placeholder(token):
            blocks[-1][1].append(position)
    for number, (sem, res) in enumerate(blocks, start=1):
        sem_ids = [ids[p] - special.t5_first for p in sem]
        res_ids = [ids[p] - special.aud_first for p in res]
        if sem_ids != list(range(num_semantic)) or res_ids != list(range(num_residual)):
            raise ModelError(
                f"event {number} has placeholders {sem_ids} / {res_ids}, expected 0..{num_semantic - 1} / "
                f"0..{num_residual - 1}; re-serialise the plan"
            )
    return blocks
