"""Audio understanding (stage 2): an input audio as LLM tokens, and ``describe`` (a caption or an answer).

The path, as in the official training code (``get_last_hidden_states``, ``src/models/mllm/`` of
https://github.com/TencentARC/AudioStory; the released inference never encodes audio):
mono mix → Whisper log-mel features at 16 kHz over one fixed 30 s window (an input longer than 30 s contributes
its LAST 30 s, the part a continuation follows) → Whisper encoder → resampler (pool + MLP) → T tokens in the LLM's
embedding space, placed at ``<aud><aud_00000>…<aud_{T-1}></aud>`` in the user turn (``planner.reasoner``).

Only a model whose resampler was trained can listen: the released text-to-long-audio checkpoint has none
(``AudioStoryModel.resampler_trained`` is False), and untrained features are never fed to the LLM silently.
``understanding_gap`` says why a model cannot listen; ``continue`` then plans from the text alone (with a
notice) and ``describe`` refuses with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, UsageError
from ..progress import ProgressFn, no_progress

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

    from ..audio.input import InputAudio
    from ..model import AudioStoryModel

WHISPER_WINDOW_SECONDS = 30.0
DEFAULT_QUESTION = "Describe the audio in detail."
DEFAULT_MAX_ANSWER_TOKENS = 256
MAX_QUESTION_CHARS = 2000
ANSWER_PREFIX = "<|im_start|>assistant\n"  # no <|think|>: an answer is plain text, not a plan


@dataclass(frozen=True)
class Description:
    """What ``describe`` returns."""

    audio: Path
    question: str
    answer: str
    seconds: float  # length of the input
    heard_seconds: float  # the part the encoder heard (its last 30 s at most)
    model: str
    tokens: int  # generated tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "audio": str(self.audio),
            "question": self.question,
            "answer": self.answer,
            "seconds": round(self.seconds, 6),
            "heard_seconds": round(self.heard_seconds, 6),
            "model": self.model,
            "tokens": self.tokens,
        }


def understanding_gap(model: AudioStoryModel) -> str | None:
    """Why ``model`` cannot listen to audio (one clause), or ``None`` when it can."""
    if model.audio_encoder is None:
        return f"model {model.name!r} has no audio encoder"
    if not model.resampler_trained:
        return f"model {model.name!r} has no trained audio understanding (resampler) weights"
    return None


def cannot_describe(gap: str) -> str:
    """The error for ``describe`` on a model that cannot listen."""
    return (
        f"{gap}, so it cannot describe audio; train stage 2 (`audiostory train --stage 2`) or use a model that has them"
    )


def describe_readiness(ref: str) -> str | None:
    """Why ``describe`` cannot use a registered model that is not on this machine yet (None: it is, or unknown).

    The generic hint (try ``--model tiny-random``) does not apply: tiny-random cannot describe audio either.
    """
    from ..weights.download import converted_path
    from ..weights.registry import resolve_model_ref

    resolved = resolve_model_ref(ref)
    if isinstance(resolved, Path) or resolved.kind != "hub" or (converted_path(resolved) / "audiostory.json").is_file():
        return None
    return (
        f"model {resolved.name!r} is not ready on this machine: run `audiostory models download {resolved.name}` "
        "first (describe needs a model with trained audio understanding; tiny-random has none)"
    )


def understanding_precheck(ref: str) -> str | None:
    """``understanding_gap`` for a model reference, read from its sidecar before any weights are loaded.

    ``None`` when the model can listen or when that cannot be told without loading it (loading then decides).
    """
    from ..weights.checkpoint import read_sidecar
    from ..weights.download import converted_path, model_path
    from ..weights.registry import resolve_model_ref

    resolved = resolve_model_ref(ref)
    if isinstance(resolved, Path):
        folder = resolved
    elif resolved.kind == "builtin":
        return f"model {resolved.name!r} has no trained audio understanding (resampler) weights"
    else:
        folder = model_path(resolved) if resolved.kind == "bundled" else converted_path(resolved)
        if not (folder / "audiostory.json").is_file():
            return None
    meta = read_sidecar(folder)
    if meta.dims.audio_encoder is None or "audio_encoder" not in meta.parts:
        return f"model {ref!r} has no audio encoder"
    if not meta.extra.get("resampler_trained", False):
        return f"model {ref!r} has no trained audio understanding (resampler) weights"
    return None


def audio_tokens(model: AudioStoryModel, audio: npt.NDArray[np.float32], sample_rate: int) -> torch.Tensor:
    """(T, llm_dim) resampler tokens of ``audio`` ``(channels, samples)``: mono mix of its last 30 s.

    Raises ``ModelError`` when the model has no trained resampler (see ``understanding_gap``).
    """
    import torch

    gap = understanding_gap(model)
    if gap is not None:
        raise ModelError(f"{gap}; it cannot turn audio into tokens")
    encoder = model.audio_encoder
    assert encoder is not None
    window = round(WHISPER_WINDOW_SECONDS * sample_rate)
    mono = audio[:, -window:].mean(axis=0)
    with torch.inference_mode():
        tokens: torch.Tensor = encoder.embed(mono, sample_rate)
    return tokens


def check_question(question: str | None) -> str:
    text = (question or DEFAULT_QUESTION).strip()
    if not text:
        raise UsageError("--question is empty; ask something about the audio, or leave it out for a caption")
    if len(text) > MAX_QUESTION_CHARS:
        raise UsageError(f"--question is {len(text)} characters; at most {MAX_QUESTION_CHARS}")
    return text


def check_max_tokens(max_new_tokens: int) -> None:
    if not 1 <= max_new_tokens <= 4096:
        raise UsageError(f"--max-tokens {max_new_tokens} is out of range; use 1 to 4096")


def describe_audio(
    source: InputAudio,
    model: AudioStoryModel,
    *,
    question: str | None = None,
    max_new_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
    progress: ProgressFn = no_progress,
) -> Description:
    """Caption ``source`` (no question) or answer ``question`` about it: greedy text decoding, no plan grammar."""
    question = check_question(question)
    check_max_tokens(max_new_tokens)
    gap = understanding_gap(model)
    if gap is not None:
        raise ModelError(cannot_describe(gap))
    # 1. listen: Whisper features of the last 30 s → encoder → resampler tokens
    tokens = audio_tokens(model, source.audio, source.sample_rate)
    # 2. answer: the tokens in the user turn, then greedy text until <|im_end|>
    answer, count = answer_text(model, tokens, question, max_new_tokens=max_new_tokens, progress=progress)
    if not answer:
        raise ModelError(f"model {model.name!r} gave an empty answer ({count} tokens); try another --question")
    return Description(
        audio=source.path,
        question=question,
        answer=answer,
        seconds=source.seconds,
        heard_seconds=min(source.seconds, WHISPER_WINDOW_SECONDS),
        model=model.name,
        tokens=count,
    )


def answer_text(
    model: AudioStoryModel,
    audio_embeds: torch.Tensor,
    question: str,
    *,
    max_new_tokens: int = DEFAULT_MAX_ANSWER_TOKENS,
    progress: ProgressFn = no_progress,
) -> tuple[str, int]:
    """Greedy decoding with a KV cache over text tokens only; returns the answer and its token count."""
    import torch
    from transformers import DynamicCache

    from ..planner.layout import find_special_token
    from ..planner.prompt import SYSTEM_MESSAGE, USER_TEMPLATE
    from ..planner.reasoner import audio_prompt_block
    from ..planner.tokens import decode_ids, encode_text

    reasoner = model.planner().reasoner
    if (special := find_special_token(question)) is not None:
        raise UsageError(f"the question contains the special token {special}; remove it")
    user = USER_TEMPLATE.format(instruction=audio_prompt_block(int(audio_embeds.shape[0])) + question)
    prompt = encode_text(reasoner.tokenizer, SYSTEM_MESSAGE + user + ANSWER_PREFIX)
    decoder = reasoner.decoder_for(prompt, audio_embeds)
    ids = reasoner.ids
    device = reasoner.device
    size = int(reasoner.lm_head.weight.shape[0])
    allowed = torch.zeros(size, dtype=torch.bool, device=device)
    allowed[: ids.num_text_tokens] = True
    allowed[ids.im_end] = True
    cache = DynamicCache(config=reasoner.decoder.config)
    pending, answer = list(prompt), []
    with torch.inference_mode():
        for step in range(max_new_tokens):
            hidden = decoder(
                input_ids=torch.tensor([pending], device=device), past_key_values=cache, use_cache=True
            ).last_hidden_state[0, -1:]
            scores = reasoner.lm_head(hidden).float()[0].masked_fill(~allowed, float("-inf"))
            token = int(torch.argmax(scores).item())
            progress("answer", step + 1, max_new_tokens)
            if token == ids.im_end:
                break
            answer.append(token)
            pending = [token]
    progress("answer", max_new_tokens, max_new_tokens)
    return decode_ids(reasoner.tokenizer, answer).strip(), len(answer)
