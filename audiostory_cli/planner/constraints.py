"""Hard constraints for decoding a plan: a small grammar of the layout, enforced with −inf.

The grammar (``PlanGrammar``) follows the layout token by token::

    reasoning text … <|/think|>  (gap)  <|gen|> caption <timestamp> digits[.digits] </timestamp>
    <t5> <t5_00000> … <t5_{S-1}> </t5> <aud> <aud_00000> … <aud_{R-1}> </aud> <|/gen|>  (gap) … <|im_end|>

* After ``</timestamp>`` the only valid continuation is the fixed tail ``<t5>…</t5><aud>…</aud><|/gen|>``: it is
  forced (every other logit −inf), so ``<t5>`` only ever opens a block after a timestamp and ``<aud>`` only
  follows ``</t5>``. Placeholders and closers are −inf everywhere else; ``<t5_k>``/``<aud_k>`` with k ≥ S/R, the
  Qwen specials, ``<video_padding>`` and ``<|think|>`` are never allowed.
* A caption needs a token with a letter or digit before ``<timestamp>`` (so it is never blank); the gaps
  between events hold whitespace only; a timestamp is ``digits[.digits]``.
* Every state has a token budget (reasoning, caption, timestamp, gap) and the whole output has
  ``max_new_tokens``: a token is allowed only if a complete plan can still be finished after it. So decoding
  always ends with ``<|im_end|>`` within the budget and with at least one complete event, whatever the
  weights, temperature or top-p. (Greedy or sampled, a masked logit is −inf before any warper, so it stays
  impossible.)

The same grammar drives both decoders: ``PlanConstraintProcessor`` (a transformers ``LogitsProcessor`` for
``generate``) and the fast loop in ``decoding.py``, which uses ``PlanGrammar.forced`` to append forced runs in
one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import LogitsProcessor

from ..errors import ModelError, UsageError
from .tokens import SpecialTokenIds


def _bytelevel_decoder() -> dict[str, int]:
    """The inverse of GPT-2/Qwen ``bytes_to_unicode``: printable character → byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


@dataclass(frozen=True)
class DecodeLimits:
    """Token budgets of the grammar. ``max_new_tokens`` bounds the whole output (official: 1600)."""

    max_new_tokens: int = 1600
    max_reasoning_tokens: int = 1200
    max_caption_tokens: int = 96
    max_timestamp_tokens: int = 6
    max_gap_tokens: int = 2
    max_events: int | None = None

    def check(self, num_semantic: int, num_residual: int) -> None:
        for name in ("max_new_tokens", "max_reasoning_tokens", "max_caption_tokens"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_timestamp_tokens < 3:
            raise UsageError(f"max_timestamp_tokens must be at least 3, got {self.max_timestamp_tokens}")
        if self.max_gap_tokens < 0:
            raise UsageError(f"max_gap_tokens must be at least 0, got {self.max_gap_tokens}")
        if self.max_events is not None and self.max_events < 1:
            raise UsageError(f"max_events must be at least 1, got {self.max_events}")
        need = min_plan_tokens(num_semantic, num_residual)
        if self.max_new_tokens < need:
            raise UsageError(
                f"max_new_tokens {self.max_new_tokens} cannot hold one event; it needs at least {need} "
                f"({num_semantic}+{num_residual} placeholders plus the layout tokens)"
            )


def min_plan_tokens(num_semantic: int, num_residual: int) -> int:
    """The shortest complete output: ``<|/think|><|gen|>c<timestamp>d</timestamp>`` + tail + ``<|im_end|>``."""
    return num_semantic + num_residual + 12


@dataclass(frozen=True)
class TokenClasses:
    """Per-tokenizer facts the grammar needs, computed once (a vocabulary scan)."""

    ids: SpecialTokenIds
    num_semantic: int
    num_residual: int
    logits_size: int  # rows of the LM head; ids ≥ len(tokenizer) are never allowed
    whitespace: frozenset[int]  # text tokens that decode to whitespace only (the gaps between events)
    alnum: frozenset[int]  # text tokens whose text holds a letter or digit (a caption needs one)
    digits: frozenset[int]  # "0".."9"
    dot: int  # "."
    tail: tuple[int, ...]  # <t5> … </t5> <aud> … </aud> <|/gen|>

    @property
    def tail_length(self) -> int:
        return len(self.tail)


def build_token_classes(
    tokenizer: Any, ids: SpecialTokenIds, num_semantic: int, num_residual: int, logits_size: int
) -> TokenClasses:
    if logits_size < ids.vocab_size:
        raise ModelError(
            f"the LM head has {logits_size} rows but the tokenizer has {ids.vocab_size} tokens; "
            "resize the embeddings to the tokenizer"
        )
    digits = frozenset(_single_token(tokenizer, str(d)) for d in range(10))
    dot = _single_token(tokenizer, ".")
    tail = tuple(ids.event_tail(num_semantic, num_residual))
    texts = _token_texts(tokenizer, ids.num_text_tokens)
    return TokenClasses(
        ids=ids,
        num_semantic=num_semantic,
        num_residual=num_residual,
        logits_size=logits_size,
        whitespace=frozenset(i for i, t in enumerate(texts) if t and not t.strip()),
        alnum=frozenset(i for i, t in enumerate(texts) if any(ch.isalnum() for ch in t)),
        digits=digits,
        dot=dot,
        tail=tail,
    )


def _single_token(tokenizer: Any, text: str) -> int:
    encoded = tokenizer.encode(text, add_special_tokens=False)
    if len(encoded) != 1:
        raise ModelError(f"the tokenizer encodes {text!r} as {len(encoded)} tokens; timestamps need one per digit")
    return int(encoded[0])


def _token_texts(tokenizer: Any, num_text_tokens: int) -> list[str]:
    """Each text token decoded on its own (bytes of an incomplete UTF-8 character are dropped)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is not None and type(decoder).__name__ == "ByteLevel":
        table = _bytelevel_decoder()
        pieces = tokenizer.convert_ids_to_tokens(list(range(num_text_tokens)))
        return [bytes(table[ch] for ch in piece if ch in table).decode("utf-8", errors="ignore") for piece in pieces]
    return [str(tokenizer.decode([i])).replace("\ufffd", "") for i in range(num_text_tokens)]


# -- the grammar --------------------------------------------------------------------------------------------

REASONING, GAP, CAPTION, TIMESTAMP, TAIL, DONE = "reasoning", "gap", "caption", "timestamp", "tail", "done"


@dataclass(frozen=True)
class Allowed:
    """An allowed set: some token classes plus some single ids. Hashable, so masks can be cached."""

    classes: tuple[str, ...]  # of "text_alnum", "text_other", "text_ws", "digits"
    ids: tuple[int, ...]

    @property
    def forced(self) -> int | None:
        return self.ids[0] if not self.classes and len(self.ids) == 1 else None


class GrammarViolation(ValueError):
    """A token outside the allowed set reached the grammar (a decoding bug, not a user error)."""


class PlanGrammar:
    """The layout as a token-level state machine with budgets. One instance per sequence being decoded."""

    def __init__(self, classes: TokenClasses, limits: DecodeLimits) -> None:
        limits.check(classes.num_semantic, classes.num_residual)
        self.c = classes
        self.limits = limits
        self.state = REASONING
        self.generated = 0
        self.events = 0
        self.count = 0  # tokens in the current state (reasoning, gap, caption, timestamp, tail position)
        self.has_content = False  # the caption has a token with a letter or digit
        self.last_digit = False  # the timestamp ends with a digit
        self.seen_dot = False

    # minimum number of tokens needed to finish a complete plan from a given state (incl. <|im_end|>)
    def _finish_after_timestamp(self, last_digit: bool) -> int:
        return (1 if last_digit else 2) + self.c.tail_length + 1

    def _finish_caption(self, has_content: bool) -> int:
        return (0 if has_content else 1) + 1 + self._finish_after_timestamp(False)

    def _finish_gap(self, events: int) -> int:
        return 1 if events >= 1 else 1 + self._finish_caption(False)

    @property
    def done(self) -> bool:
        return self.state == DONE

    def allowed(self) -> Allowed:
        ids = self.c.ids
        left = self.limits.max_new_tokens - self.generated - 1  # tokens still available after this one
        if self.state == REASONING:
            text_ok = self.count < self.limits.max_reasoning_tokens and 1 + self._finish_gap(0) <= left
            return Allowed(("text_alnum", "text_other") if text_ok else (), (ids.think_close,))
        if self.state == GAP:
            classes: tuple[str, ...] = ()
            if self.count < self.limits.max_gap_tokens and self._finish_gap(self.events) <= left:
                classes = ("text_ws",)
            singles: list[int] = []
            more_events = self.limits.max_events is None or self.events < self.limits.max_events
            if more_events and self._finish_caption(False) <= left:
                singles.append(ids.gen_open)
            if self.events >= 1:
                singles.append(ids.im_end)
            return Allowed(classes, tuple(singles))
        if self.state == CAPTION:
            room = self.count < self.limits.max_caption_tokens
            classes_list: list[str] = []
            if room and self._finish_caption(True) <= left:
                classes_list.append("text_alnum")
            other_room = self.has_content or self.count + 1 < self.limits.max_caption_tokens
            if room and other_room and self._finish_caption(self.has_content) <= left:
                classes_list.append("text_other")
            return Allowed(tuple(classes_list), (ids.timestamp_open,) if self.has_content else ())
        if self.state == TIMESTAMP:
            classes_list = []
            singles_list: list[int] = []
            if self.count < self.limits.max_timestamp_tokens and self._finish_after_timestamp(True) <= left:
                classes_list.append("digits")
            if (
                not self.seen_dot
                and self.last_digit
                and self.count + 2 <= self.limits.max_timestamp_tokens
                and self._finish_after_timestamp(False) <= left
            ):
                singles_list.append(self.c.dot)
            if self.last_digit:
                singles_list.append(ids.timestamp_close)
            return Allowed(tuple(classes_list), tuple(singles_list))
        if self.state == TAIL:
            return Allowed((), (self.c.tail[self.count],))
        return Allowed((), ())

    def forced(self) -> int | None:
        """The next token if it is the only one allowed, else ``None``."""
        return None if self.done else self.allowed().forced

    def is_allowed(self, token: int) -> bool:
        allowed = self.allowed()
        if token in allowed.ids:
            return True
        return any(self._in_class(name, token) for name in allowed.classes)

    def _in_class(self, name: str, token: int) -> bool:
        if name == "digits":
            return token in self.c.digits
        if not 0 <= token < self.c.ids.num_text_tokens:
            return False
        if name == "text_ws":
            return token in self.c.whitespace
        is_alnum = token in self.c.alnum
        return is_alnum if name == "text_alnum" else not is_alnum

    def advance(self, token: int) -> None:
        if self.done:
            raise GrammarViolation(f"token {token} after <|im_end|>")
        if not self.is_allowed(token):
            raise GrammarViolation(f"token {token} is not allowed in state {self.state} (count {self.count})")
        ids = self.c.ids
        self.generated += 1
        if self.state == REASONING:
            if token == ids.think_close:
                self._enter(GAP)
            else:
                self.count += 1
        elif self.state == GAP:
            if token == ids.gen_open:
                self._enter(CAPTION)
                self.has_content = False
            elif token == ids.im_end:
                self._enter(DONE)
            else:
                self.count += 1
        elif self.state == CAPTION:
            if token == ids.timestamp_open:
                self._enter(TIMESTAMP)
                self.last_digit = self.seen_dot = False
            else:
                self.count += 1
                self.has_content = self.has_content or token in self.c.alnum
        elif self.state == TIMESTAMP:
            if token == ids.timestamp_close:
                self._enter(TAIL)
            else:
                self.count += 1
                self.last_digit = token in self.c.digits
                self.seen_dot = self.seen_dot or token == self.c.dot
        elif self.state == TAIL:
            self.count += 1
            if self.count == self.c.tail_length:
                self.events += 1
                self._enter(GAP)

    def _enter(self, state: str) -> None:
        self.state = state
        self.count = 0


# -- masks --------------------------------------------------------------------------------------------------


def _id_mask(ids: frozenset[int], size: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool, device=device)
    if ids:
        mask[torch.tensor(sorted(ids), device=device)] = True
    return mask


class MaskBuilder:
    """Turns ``Allowed`` sets into boolean masks over the logits (cached; a handful of distinct sets)."""

    def __init__(self, classes: TokenClasses, device: torch.device) -> None:
        size = classes.logits_size
        text = torch.zeros(size, dtype=torch.bool, device=device)
        text[: classes.ids.num_text_tokens] = True
        ws = _id_mask(classes.whitespace, size, device)
        alnum = _id_mask(classes.alnum, size, device)
        digits = _id_mask(classes.digits, size, device)
        self._base = {"text_alnum": alnum, "text_other": text & ~alnum, "text_ws": ws, "digits": digits}
        self._cache: dict[Allowed, torch.Tensor] = {}
        self.size = size
        self.device = device

    def mask(self, allowed: Allowed) -> torch.Tensor:
        cached = self._cache.get(allowed)
        if cached is None:
            cached = torch.zeros(self.size, dtype=torch.bool, device=self.device)
            for name in allowed.classes:
                cached |= self._base[name]
            if allowed.ids:
                cached[torch.tensor(allowed.ids, device=self.device)] = True
            self._cache[allowed] = cached
        return cached

    def apply(self, scores: torch.Tensor, allowed: Allowed) -> torch.Tensor:
        """``scores`` (…, V) with every disallowed entry set to −inf."""
        mask = self.mask(allowed)
        if scores.shape[-1] != self.size:
            raise ModelError(f"logits have {scores.shape[-1]} entries, the grammar expects {self.size}")
        return scores.masked_fill(~mask, float("-inf"))


class PlanConstraintProcessor(LogitsProcessor):
    """``LogitsProcessor`` for ``generate``: one ``PlanGrammar`` per row, fed the tokens generated so far.

    Put it last in the custom processor list (transformers applies custom processors after its repetition
    penalty and before temperature/top-p, so a −inf here stays −inf). Greedy or sampling, ``num_beams=1``.
    """

    def __init__(
        self,
        classes: TokenClasses,
        limits: DecodeLimits,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.classes = classes
        self.limits = limits
        self.on_step = on_step
        self.grammars: list[PlanGrammar] = []
        self._consumed = 0
        self._masks: MaskBuilder | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.grammars:
            self.grammars = [PlanGrammar(self.classes, self.limits) for _ in range(input_ids.shape[0])]
            self._consumed = input_ids.shape[1]
            self._masks = MaskBuilder(self.classes, scores.device)
        if input_ids.shape[0] != len(self.grammars):
            raise GrammarViolation("the batch size changed during generation (beam search is not supported)")
        new = input_ids[:, self._consumed :].tolist()
        self._consumed = input_ids.shape[1]
        assert self._masks is not None
        rows = []
        for grammar, tokens, row in zip(self.grammars, new, scores, strict=True):
            for token in tokens:
                if not grammar.done:
                    grammar.advance(int(token))
            rows.append(row if grammar.done else self._masks.apply(row, grammar.allowed()))
        if self.on_step is not None:
            self.on_step(self.grammars[0].generated)
        return cast(torch.FloatTensor, torch.stack(rows))
