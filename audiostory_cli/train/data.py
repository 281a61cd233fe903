"""Training examples (token sequences + cached feature keys), their deterministic order, and collation.

The order of examples is a pure function of (seed, stream, batch number, process rank): epoch ``e`` of a stream
is ``default_rng([seed, stream, e]).permutation(n)``. So a resumed run sees exactly the batches an
uninterrupted one would, with nothing to save but the step, and every process of a multi-GPU run takes its
own slice of the global batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import AudiostoryError, TrainingError
from ..planner.decoding import placeholder_positions
from ..planner.layout import PlannedEvent
from ..planner.tokens import SpecialTokenIds
from .features import FeatureCache, Featurizer
from .manifest import ClipRecord, StoryRecord, TrainingData
from .sequences import UNDERSTANDING_CLASSES, TokenSequence, clip_instruction, plan_sequence, qa_sequence

GEN_STREAM, UND_STREAM = 1, 2


@dataclass(frozen=True)
class EventFeature:
    latent_key: str
    t5_key: str
    seconds: float  # length of the event's audio: the DiT's duration token


@dataclass(frozen=True)
class GenExample:
    source: str
    sequence: TokenSequence
    events: tuple[EventFeature, ...]
    semantic_positions: tuple[tuple[int, ...], ...]  # per event, the S <t5_k> positions in the sequence
    residual_positions: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class UndExample:
    source: str
    sequence: TokenSequence
    whisper_key: str


def build_examples(
    data: TrainingData,
    featurizer: Featurizer,
    tokenizer: Any,
    special: SpecialTokenIds,
    *,
    use_understanding: bool,
    max_tokens: int,
) -> tuple[list[GenExample], list[UndExample]]:
    """Sequences for every record, with their features computed into the cache (if not there yet)."""
    dims = featurizer.model.dims.bridge
    num_semantic, num_residual = dims.num_semantic_tokens, dims.num_residual_tokens
    records: list[tuple[str, str, str, list[PlannedEvent], list[Any]]] = []
    for record in data.generation:
        if isinstance(record, ClipRecord):
            event = PlannedEvent(caption=record.caption, story_detail="", duration=record.audio.duration)
            with _named(str(record.source)):
                instruction = clip_instruction(record.caption, record.audio.duration)
            records.append((str(record.source), instruction, "", [event], [record.audio]))
        else:
            assert isinstance(record, StoryRecord)
            records.append(
                (
                    str(record.source),
                    record.instruction,
                    record.storyline,
                    [e.planned() for e in record.events],
                    [e.audio for e in record.events],
                )
            )
    segments = [segment for *_, segs in records for segment in segs]
    latent_keys = iter(featurizer.ensure_latents(segments))
    t5_keys = featurizer.ensure_t5(event.caption for *_, events, _ in records for event in events)
    gen: list[GenExample] = []
    for source, instruction, storyline, events, segs in records:
        with _named(source):
            sequence = plan_sequence(tokenizer, special, instruction, storyline, events, num_semantic, num_residual)
        _check_length(sequence, max_tokens, source)
        blocks = placeholder_positions(sequence.ids[sequence.prompt_len :], special, num_semantic, num_residual)
        start = sequence.prompt_len
        gen.append(
            GenExample(
                source=source,
                sequence=sequence,
                events=tuple(
                    EventFeature(next(latent_keys), t5_keys[e.caption], s.duration)
                    for e, s in zip(events, segs, strict=True)
                ),
                semantic_positions=tuple(tuple(start + p for p in sem) for sem, _ in blocks),
                residual_positions=tuple(tuple(start + p for p in res) for _, res in blocks),
            )
        )
    und: list[UndExample] = []
    if use_understanding and data.qa:
        encoder = featurizer.model.audio_encoder
        if encoder is None:
            raise TrainingError(f"model {featurizer.model.name} has no audio encoder; it cannot learn the QA data")
        whisper = featurizer.ensure_whisper([r.audio for r in data.qa])
        for qa in data.qa:
            sequence = qa_sequence(tokenizer, special, qa.question, qa.answer, encoder.dims.num_tokens)
            _check_length(sequence, max_tokens, str(qa.source))
            und.append(UndExample(source=str(qa.source), sequence=sequence, whisper_key=whisper[qa.audio]))
    return gen, und


def _check_length(sequence: TokenSequence, max_tokens: int, source: str) -> None:
    if len(sequence) > max_tokens:
        raise TrainingError(
            f"{source}: the example is {len(sequence)} tokens, more than --max-tokens {max_tokens}; shorten it "
            "or raise --max-tokens"
        )


# -- order ---------------------------------------------------------------------------------------------------


class BatchOrder:
    """Which examples a batch holds: epochs of seeded permutations, sliced by process rank."""

    def __init__(self, size: int, seed: int, stream: int) -> None:
        if size < 1:
            raise TrainingError("no examples to train on")
        self.size = size
        self.seed = seed
        self.stream = stream
        self._perms: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = np.random.default_rng([self.seed, self.stream, epoch]).permutation(self.size)
        return self._perms[epoch]

    def indices(self, batch_number: int, batch_size: int, world: int = 1, rank: int = 0) -> list[int]:
        first = (batch_number * world + rank) * batch_size
        out = []
        for k in range(first, first + batch_size):
            epoch, position = divmod(k, self.size)
            out.append(int(self._permutation(epoch)[position]))
        return out


def micro_batch_kind(micro: int, ratio: tuple[int, int], understanding: bool) -> tuple[Literal["gen", "und"], int]:
    """The kind of global micro-batch ``micro`` and its number within that kind (gen:und = ratio, cycled)."""
    gen, und = ratio
    if not understanding or und == 0:
        return "gen", micro
    cycle, offset = divmod(micro, gen + und)
    und_before = cycle * und + max(0, offset - gen)
    if offset < gen:
        return "gen", micro - und_before
    return "und", und_before


# -- collation -----------------------------------------------------------------------------------------------


def pad_sequences(sequences: Sequence[TokenSequence], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq.ids, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def lm_targets(
    sequences: Sequence[TokenSequence], length: int, classes: frozenset[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions (row·L + i − 1) that predict ``ids[i]`` for every ``i`` whose class is in ``classes``."""
    sources, targets = [], []
    for row, seq in enumerate(sequences):
        for i in range(1, len(seq)):
            if seq.classes[i] in classes:
                sources.append(row * length + i - 1)
                targets.append(seq.ids[i])
    return torch.tensor(sources, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


def collate_generation(
    examples: Sequence[GenExample], cache: FeatureCache, pad_id: int, lm_classes: frozenset[int]
) -> dict[str, Any]:
    ids, mask = pad_sequences([e.sequence for e in examples], pad_id)
    length = ids.shape[1]
    lm_from, lm_target = lm_targets([e.sequence for e in examples], length, lm_classes)
    sem = [[row * length + p for p in block] for row, e in enumerate(examples) for block in e.semantic_positions]
    res = [[row * length + p for p in block] for row, e in enumerate(examples) for block in e.residual_positions]
    events = [event for e in examples for event in e.events]
    latents = [cache.load("latents", ev.latent_key) for ev in events]
    frames = max(x.shape[0] for x in latents)
    padded = torch.zeros(len(latents), frames, latents[0].shape[1])
    latent_mask = torch.zeros(len(latents), frames, dtype=torch.bool)
    for n, x in enumerate(latents):
        padded[n, : x.shape[0]] = x
        latent_mask[n, : x.shape[0]] = True
    return {
        "kind": "gen",
        "input_ids": ids,
        "attention_mask": mask,
        "lm_from": lm_from,
        "lm_target": lm_target,
        "semantic_index": torch.tensor(sem, dtype=torch.long),
        "residual_index": torch.tensor(res, dtype=torch.long),
        "t5": torch.stack([cache.load("t5", ev.t5_key) for ev in events]),
        "latents": padded,
        "latent_mask": latent_mask,
        "durations": torch.tensor([ev.seconds for ev in events], dtype=torch.float32),
        "tokens": int(mask.sum()),
    }


def collate_understanding(examples: Sequence[UndExample], cache: FeatureCache, pad_id: int) -> dict[str, Any]:
    ids, mask = pad_sequences([e.sequence for e in examples], pad_id)
    length = ids.shape[1]
    lm_from, lm_target = lm_targets([e.sequence for e in examples], length, UNDERSTANDING_CLASSES)
    audio_index = [[row * length + p for p in e.sequence.audio_positions] for row, e in enumerate(examples)]
    return {
        "kind": "und",
        "input_ids": ids,
        "attention_mask": mask,
        "lm_from": lm_from,
        "lm_target": lm_target,
        "audio_index": torch.tensor(audio_index, dtype=torch.long),
        "whisper": torch.stack([cache.load("whisper", e.whisper_key) for e in examples]),
        "tokens": int(mask.sum()),
    }


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@contextlib.contextmanager
def _named(source: str) -> Iterator[None]:
    """A problem found while building one example names its manifest file and line."""
    try:
        yield
    except (AudiostoryError, ValueError) as exc:
        raise TrainingError(f"{source}: {exc} (run `audiostory train check-data FILE`)") from exc
