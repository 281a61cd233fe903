"""Scripted plans: make any reasoner (a random tiny one included) emit a chosen, well-formed plan.

``ScriptProcessor`` raises the logit of the next token of a script while the output still follows it; the
grammar still applies, so a script that does not fit the budgets simply stops being followed. ``demo_plan``
turns a prompt into a simple plan (one event per clause, equal durations) for tests and ``--model tiny-random``
runs, where a random model would otherwise write garbage captions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from transformers import LogitsProcessor

from .layout import PlannedEvent, fit_durations, serialise_ids
from .reasoner import Reasoner

_CLAUSE_SPLIT_RE = re.compile(r"[.;:!?,]+|\bthen\b", re.IGNORECASE)
MAX_CAPTION_WORDS = 12


class ScriptProcessor(LogitsProcessor):
    """Boost the next token of ``script`` (generated ids, without the prompt) while the output follows it.

    The prompt length is taken from the first call. Works with ``generate`` and with the fast decoder (which
    skips calls during forced runs: progress is checked on every new token).
    """

    def __init__(self, script: Sequence[int], boost: float = 1e4) -> None:
        self.script = [int(t) for t in script]
        self.boost = boost
        self._prompt_length: int | None = None
        self._checked: list[int] = []
        self._on_track: list[bool] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prompt_length is None:
            self._prompt_length = input_ids.shape[1]
            self._checked = [0] * input_ids.shape[0]
            self._on_track = [True] * input_ids.shape[0]
        scores = cast(torch.FloatTensor, scores.clone())
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self._prompt_length :].tolist()
            start = self._checked[row]
            if self._on_track[row]:
                self._on_track[row] = generated[start:] == self.script[start : len(generated)]
            self._checked[row] = len(generated)
            if self._on_track[row] and len(generated) < len(self.script):
                scores[row, self.script[len(generated)]] = scores[row].max() + self.boost
        return scores


@dataclass(frozen=True)
class ScriptedPlan:
    reasoning: str
    events: list[PlannedEvent]
    script: list[int]  # serialise_ids(...) of the plan

    @property
    def num_tokens(self) -> int:
        """The ``max_new_tokens`` the script needs."""
        return len(self.script)

    def processor(self) -> ScriptProcessor:
        """A fresh processor (it keeps per-run state): pass it in ``Reasoner.plan(processors=[...])``."""
        return ScriptProcessor(self.script)


def demo_plan(prompt: str, total_duration: float, max_events: int = 8) -> tuple[str, list[PlannedEvent]]:
    """One event per clause of ``prompt`` (at most ``max_events``), durations shared equally."""
    clauses = [" ".join(c.split()[:MAX_CAPTION_WORDS]) for c in _CLAUSE_SPLIT_RE.split(prompt)]
    clauses = [c for c in clauses if c][:max_events] or [" ".join(prompt.split()[:MAX_CAPTION_WORDS])]
    durations, dropped = fit_durations([1.0] * len(clauses), total_duration)
    clauses = clauses[: len(clauses) - dropped]
    reasoning = (
        f"The storyline is mainly about: {' '.join(prompt.split())} "
        f"The whole story can be divided into {len(clauses)} sequential parts."
    )
    events = [
        PlannedEvent(caption=clause, story_detail=clause, duration=duration)
        for clause, duration in zip(clauses, durations, strict=True)
    ]
    return reasoning, events


def scripted_plan(reasoner: Reasoner, reasoning: str, events: Sequence[PlannedEvent]) -> ScriptedPlan:
    script = serialise_ids(reasoner.tokenizer, reasoning, events, reasoner.num_semantic, reasoner.num_residual)
    return ScriptedPlan(reasoning=reasoning, events=list(events), script=script)
