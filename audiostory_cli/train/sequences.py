"""Token sequences for training, in exactly the layout inference uses, with a loss class for every token.

Generation (clips and stories): the chat prompt of the instruction, then ``serialise_ids(storyline, events)``
(reasoning, ``<|/think|>``, one ``<|gen|>`` block per event, ``<|im_end|>``). A single clip is a one-event plan
whose instruction is ``build_instruction(caption, duration, lead)``.

Every position ``i`` gets the class of predicting ``ids[i]`` from position ``i-1``:

* ``NOT_TARGET``: the prompt; the S+R placeholders ``<t5_k>``/``<aud_k>``; and ``</t5>``/``</aud>``. The
  placeholders are forced at inference and their hidden states ARE the bridge (they feed the projectors), so
  they are never asked to predict the next token.
* ``BOUNDARY``: the layout tokens the model itself must emit: ``<|/think|>``, ``<|gen|>``, ``<timestamp>``,
  ``</timestamp>``, ``<t5>``, ``<aud>``, ``<|/gen|>``, ``<|im_end|>``.
* ``PLAN_TEXT``: caption text, duration digits and the line breaks between events.
* ``REASONING``: the storyline and the per-event reasoning lines, before ``<|/think|>``.

A stage's ``lm_scope`` trains ``boundary`` = {BOUNDARY}, ``plan`` = {BOUNDARY, PLAN_TEXT} or ``full`` = all three.

Understanding (QA): the user turn carries the audio as ``<aud><aud_00000>…<aud_{N-1}></aud>`` before the
question (SEED-X style: the resampler's N tokens replace those embeddings); the assistant answers in plain text
and ``<|im_end|>``. Answer tokens are ``PLAN_TEXT`` and the closing ``<|im_end|>`` ``BOUNDARY``; both always
count, whatever the scope.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import TrainingError
from ..planner.layout import EventLike, serialise_ids
from ..planner.prompt import LEAD_PHRASES, SYSTEM_MESSAGE, USER_TEMPLATE, build_instruction
from ..planner.tokens import (
    AUD_CLOSE,
    AUD_OPEN,
    IM_END,
    IM_START,
    NUM_AUD_PLACEHOLDERS,
    SpecialTokenIds,
    aud_placeholder,
    encode_text,
)

NOT_TARGET, BOUNDARY, PLAN_TEXT, REASONING = 0, 1, 2, 3
SCOPE_CLASSES: dict[str, frozenset[int]] = {
    "boundary": frozenset({BOUNDARY}),
    "plan": frozenset({BOUNDARY, PLAN_TEXT}),
    "full": frozenset({BOUNDARY, PLAN_TEXT, REASONING}),
}
UNDERSTANDING_CLASSES = frozenset({BOUNDARY, PLAN_TEXT})


@dataclass(frozen=True)
class TokenSequence:
    ids: tuple[int, ...]
    classes: tuple[int, ...]  # classes[i]: loss class of predicting ids[i] from position i - 1
    prompt_len: int
    audio_positions: tuple[int, ...] = ()  # understanding: where the resampler tokens go

    def __len__(self) -> int:
        return len(self.ids)


def boundary_ids(special: SpecialTokenIds) -> frozenset[int]:
    return frozenset(
        {
            special.think_close,
            special.gen_open,
            special.timestamp_open,
            special.timestamp_close,
            special.t5_open,
            special.aud_open,
            special.gen_close,
            special.im_end,
        }
    )


def clip_instruction(caption: str, seconds: float) -> str:
    """The instruction of a single clip: a lead phrase chosen from the caption (stable), caption, duration."""
    lead = zlib.crc32(caption.encode("utf-8")) % len(LEAD_PHRASES)
    return build_instruction(caption, round(seconds, 1), lead)


def plan_sequence(
    tokenizer: Any,
    special: SpecialTokenIds,
    instruction: str,
    storyline: str,
    events: Sequence[EventLike],
    num_semantic: int,
    num_residual: int,
) -> TokenSequence:
    """Prompt + serialised plan, with the loss class of every token (see the module docstring)."""
    from ..planner.prompt import build_chat_prompt

    prompt = encode_text(tokenizer, build_chat_prompt(instruction))
    plan = serialise_ids(tokenizer, storyline, events, num_semantic, num_residual)
    boundary = boundary_ids(special)

    def placeholder(token: int) -> bool:
        return special.is_t5_placeholder(token) or special.is_aud_placeholder(token)

    classes = [NOT_TARGET] * len(prompt)
    previous = prompt[-1]
    in_reasoning = True
    for token in plan:
        if placeholder(token) or placeholder(previous):
            cls = NOT_TARGET
        elif token in boundary:
            cls = BOUNDARY
        elif in_reasoning:
            cls = REASONING
        else:
            cls = PLAN_TEXT
        if token == special.think_close:
            in_reasoning = False
        classes.append(cls)
        previous = token
    return TokenSequence(ids=tuple(prompt + plan), classes=tuple(classes), prompt_len=len(prompt))


def audio_question_prompt(question: str, num_audio_tokens: int) -> str:
    """The chat prompt of an audio question: the audio block, a line break, the question; assistant turn open."""
    if not 1 <= num_audio_tokens <= NUM_AUD_PLACEHOLDERS:
        raise TrainingError(f"{num_audio_tokens} audio tokens do not fit the {NUM_AUD_PLACEHOLDERS} <aud_k> tokens")
    block = AUD_OPEN + "".join(aud_placeholder(k) for k in range(num_audio_tokens)) + AUD_CLOSE
    assistant = f"{IM_START}assistant\n"  # an answer, not a plan: no <|think|>
    return SYSTEM_MESSAGE + USER_TEMPLATE.format(instruction=f"{block}\n{question}") + assistant


def qa_sequence(
    tokenizer: Any, special: SpecialTokenIds, question: str, answer: str, num_audio_tokens: int
) -> TokenSequence:
    prompt = encode_text(tokenizer, audio_question_prompt(question, num_audio_tokens))
    reply = encode_text(tokenizer, answer + IM_END)
    positions = tuple(i for i, t in enumerate(prompt) if special.is_aud_placeholder(t))
    if len(positions) != num_audio_tokens:
        raise TrainingError(f"the question prompt holds {len(positions)} audio tokens, expected {num_audio_tokens}")
    classes = [NOT_TARGET] * len(prompt) + [BOUNDARY if t == special.im_end else PLAN_TEXT for t in reply]
    return TokenSequence(
        ids=tuple(prompt + reply), classes=tuple(classes), prompt_len=len(prompt), audio_positions=positions
    )
