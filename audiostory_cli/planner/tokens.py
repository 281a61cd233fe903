"""AudioStory special tokens: their official order, runtime id resolution and the tokenizer builders.

The official tokenizer is the stock Qwen2.5 tokenizer (151665 tokens) plus 612 tokens added in the order of
``tokenizer/added_tokens.json``; the JSON's id values are wrong and ignored, so the ids are sequential from
151665 (``</t5>``) to 152276 (``<|/think|>``). We never hard-code ids: they are resolved from the tokenizer and
the order is asserted (see ``resolve_special_token_ids``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError

NUM_T5_PLACEHOLDERS = 100
NUM_AUD_PLACEHOLDERS = 501

T5_OPEN = "<t5>"
T5_CLOSE = "</t5>"
AUD_OPEN = "<aud>"
AUD_CLOSE = "</aud>"
TIMESTAMP_OPEN = "<timestamp>"
TIMESTAMP_CLOSE = "</timestamp>"
VIDEO_PADDING = "<video_padding>"
GEN_OPEN = "<|gen|>"
GEN_CLOSE = "<|/gen|>"
THINK_OPEN = "<|think|>"
THINK_CLOSE = "<|/think|>"

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
QWEN_CHAT_SPECIALS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END)

QWEN_BASE_LEN = 151665  # len(Qwen2.5 tokenizer): BPE vocab + 22 Qwen specials
QWEN_ENDOFTEXT_ID = 151643
FULL_VOCAB_SIZE = 152277


def t5_placeholder(k: int) -> str:
    return f"<t5_{k:05d}>"


def aud_placeholder(k: int) -> str:
    return f"<aud_{k:05d}>"


AUDIOSTORY_TOKENS: tuple[str, ...] = (
    T5_CLOSE,
    VIDEO_PADDING,
    TIMESTAMP_OPEN,
    TIMESTAMP_CLOSE,
    T5_OPEN,
    *(t5_placeholder(k) for k in range(NUM_T5_PLACEHOLDERS)),
    AUD_OPEN,
    AUD_CLOSE,
    *(aud_placeholder(k) for k in range(NUM_AUD_PLACEHOLDERS)),
    GEN_OPEN,
    GEN_CLOSE,
    THINK_OPEN,
    THINK_CLOSE,
)
"""The 612 tokens in the official order (``tokenizer/added_tokens.json`` key order)."""

assert len(AUDIOSTORY_TOKENS) == 612


@dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of every token the layout uses, resolved from a tokenizer (never hard-coded)."""

    t5_close: int
    video_padding: int
    timestamp_open: int
    timestamp_close: int
    t5_open: int
    t5_first: int  # <t5_00000>; <t5_k> = t5_first + k, k < NUM_T5_PLACEHOLDERS
    aud_open: int
    aud_close: int
    aud_first: int  # <aud_00000>; <aud_k> = aud_first + k, k < NUM_AUD_PLACEHOLDERS
    gen_open: int
    gen_close: int
    think_open: int
    think_close: int
    endoftext: int
    im_start: int
    im_end: int
    vocab_size: int  # len(tokenizer)

    @property
    def num_text_tokens(self) -> int:
        """Ids below this are ordinary BPE tokens; ``<|endoftext|>`` is the first special (as in Qwen)."""
        return self.endoftext

    @property
    def first_audiostory_id(self) -> int:
        return self.t5_close

    @property
    def last_audiostory_id(self) -> int:
        return self.think_close

    def t5(self, k: int) -> int:
        if not 0 <= k < NUM_T5_PLACEHOLDERS:
            raise ValueError(f"semantic placeholder index {k} is outside 0..{NUM_T5_PLACEHOLDERS - 1}")
        return self.t5_first + k

    def aud(self, k: int) -> int:
        if not 0 <= k < NUM_AUD_PLACEHOLDERS:
            raise ValueError(f"residual placeholder index {k} is outside 0..{NUM_AUD_PLACEHOLDERS - 1}")
        return self.aud_first + k

    def is_t5_placeholder(self, token_id: int) -> bool:
        return self.t5_first <= token_id < self.t5_first + NUM_T5_PLACEHOLDERS

    def is_aud_placeholder(self, token_id: int) -> bool:
        return self.aud_first <= token_id < self.aud_first + NUM_AUD_PLACEHOLDERS

    def semantic_block(self, num_semantic: int) -> list[int]:
        """``<t5> <t5_00000> … <t5_{S-1}> </t5>``."""
        return [self.t5_open, *(self.t5(k) for k in range(num_semantic)), self.t5_close]

    def residual_block(self, num_residual: int) -> list[int]:
        """``<aud> <aud_00000> … <aud_{R-1}> </aud>``."""
        return [self.aud_open, *(self.aud(k) for k in range(num_residual)), self.aud_close]

    def event_tail(self, num_semantic: int, num_residual: int) -> list[int]:
        """Everything after ``</timestamp>`` in an event: both blocks and ``<|/gen|>`` (S+R+5 ids)."""
        return [*self.semantic_block(num_semantic), *self.residual_block(num_residual), self.gen_close]


def resolve_special_token_ids(tokenizer: Any) -> SpecialTokenIds:
    """Look every layout token up in ``tokenizer`` and check the order the checkpoint implies.

    Raises ``ModelError`` when a token is missing, when the 612 AudioStory tokens are not one contiguous run in
    the official order, or (for a Qwen2.5-based tokenizer) when the ids differ from 151665…152276.
    """
    vocab_size = len(tokenizer)
    ids = [_single_id(tokenizer, token) for token in AUDIOSTORY_TOKENS]
    first = ids[0]
    expected = list(range(first, first + len(AUDIOSTORY_TOKENS)))
    if ids != expected:
        bad = next(i for i, (a, b) in enumerate(zip(ids, expected, strict=True)) if a != b)
        raise ModelError(
            f"tokenizer has {AUDIOSTORY_TOKENS[bad]!r} at id {ids[bad]}, expected {expected[bad]}: the 612 "
            "AudioStory tokens must be added in the official order; rebuild it with build_full_tokenizer()"
        )
    chat = {token: _single_id(tokenizer, token) for token in QWEN_CHAT_SPECIALS}
    if chat[ENDOFTEXT] >= first:
        raise ModelError(
            f"tokenizer has {ENDOFTEXT} at id {chat[ENDOFTEXT]}, after the AudioStory tokens (from {first}); "
            "the Qwen specials must come first"
        )
    if chat[ENDOFTEXT] == QWEN_ENDOFTEXT_ID and (first != QWEN_BASE_LEN or vocab_size != FULL_VOCAB_SIZE):
        raise ModelError(
            f"Qwen2.5 tokenizer has </t5> at id {first} and {vocab_size} tokens; the AudioStory checkpoint "
            f"needs </t5>={QWEN_BASE_LEN} and {FULL_VOCAB_SIZE} tokens (use the stock Qwen2.5 tokenizer files)"
        )
    by_name = dict(zip(AUDIOSTORY_TOKENS, ids, strict=True))
    return SpecialTokenIds(
        t5_close=by_name[T5_CLOSE],
        video_padding=by_name[VIDEO_PADDING],
        timestamp_open=by_name[TIMESTAMP_OPEN],
        timestamp_close=by_name[TIMESTAMP_CLOSE],
        t5_open=by_name[T5_OPEN],
        t5_first=by_name[t5_placeholder(0)],
        aud_open=by_name[AUD_OPEN],
        aud_close=by_name[AUD_CLOSE],
        aud_first=by_name[aud_placeholder(0)],
        gen_open=by_name[GEN_OPEN],
        gen_close=by_name[GEN_CLOSE],
        think_open=by_name[THINK_OPEN],
        think_close=by_name[THINK_CLOSE],
        endoftext=chat[ENDOFTEXT],
        im_start=chat[IM_START],
        im_end=chat[IM_END],
        vocab_size=vocab_size,
    )


def _single_id(tokenizer: Any, token: str) -> int:
    encoded = tokenizer.encode(token, add_special_tokens=False)
    if len(encoded) != 1:
        raise ModelError(
            f"tokenizer splits {token!r} into {len(encoded)} tokens; it lacks the AudioStory special tokens "
            "(build it with build_full_tokenizer() or build_tiny_tokenizer())"
        )
    return int(encoded[0])


def add_audiostory_tokens(tokenizer: Any) -> Any:
    """Append the 612 tokens in the official order (like the official ``init_tokenizer``); returns ``tokenizer``."""
    before = len(tokenizer)
    added = tokenizer.add_tokens(list(AUDIOSTORY_TOKENS), special_tokens=True)
    if added != len(AUDIOSTORY_TOKENS) or len(tokenizer) != before + len(AUDIOSTORY_TOKENS):
        raise ModelError(
            f"adding the AudioStory tokens added {added} of {len(AUDIOSTORY_TOKENS)}: the tokenizer already has "
            "some of them; load it with load_tokenizer() instead of building it again"
        )
    return tokenizer


def build_full_tokenizer(qwen_dir: Path) -> Any:
    """The stock Qwen2.5 tokenizer in ``qwen_dir`` plus the 612 AudioStory tokens (ids 151665…152276)."""
    from transformers import AutoTokenizer

    qwen_dir = Path(qwen_dir)
    if not (qwen_dir / "tokenizer.json").is_file() and not (qwen_dir / "vocab.json").is_file():
        raise ModelError(f"{qwen_dir} has no tokenizer.json or vocab.json; point it at a Qwen2.5-Instruct model folder")
    refuse_custom_code(qwen_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(qwen_dir), local_files_only=True, trust_remote_code=False)
    add_audiostory_tokens(tokenizer)
    resolve_special_token_ids(tokenizer)
    return tokenizer


# A small built-in corpus for the tiny tokenizer: sound/caption words, the reasoning phrases and digits.
_TINY_CORPUS: tuple[str, ...] = (
    "The storyline is mainly about a stormy night in a small town.",
    "The whole story can be divided into 4 sequential parts.",
    "Event 1: Timestamp: 0.0s - 5.2s. Story detail: rain begins to fall. Sound effect: light rain on a roof.",
    "Event 2: Timestamp: 5.2s - 12.8s. Story detail: a car arrives. Sound effect: a car engine approaches.",
    "Event 3: Timestamp: 12.8s - 20.4s. Story detail: a door slams shut. Sound effect: a heavy door slams.",
    "Event 4: Timestamp: 20.4s - 31.6s. Story detail: the dog barks. Sound effect: a dog barks loudly.",
    "A group of people were singing happily together.",
    "Suddenly, a dog started barking. The children were frightened and cried.",
    "But everyone burst into laughter. The total duration is 22.8 seconds.",
    "Thunder rumbles in the distance while heavy rain pours down.",
    "Footsteps splash through puddles on a wet street.",
    "A car skids on the wet road and its tires screech.",
    "A siren wails as an ambulance passes by quickly.",
    "Birds chirp and sing in the morning forest.",
    "Wind howls through the trees and leaves rustle.",
    "Glass breaks and shatters on a hard floor.",
    "A church bell rings three times, then silence.",
    "A clock ticks steadily in a quiet room.",
    "A crowd murmurs and people talk in a busy hall.",
    "A heartbeat pounds faster and faster.",
    "Water drips from a tap into a metal sink.",
    "A cat meows softly, then purrs.",
    "An engine starts, idles, and revs up before driving away.",
    "Waves crash on the shore and seagulls call.",
    "Someone knocks on the door, then the door creaks open.",
    "A man speaks calmly, a woman laughs, a baby cries.",
    "Craft an immersive soundscape that slowly unfolds a chase through a rainstorm.",
    "Produce an in-depth, multi-layered audio that portrays a quiet evening.",
    "Please generate a sustained audio track filled with ocean waves.",
    "You are a helpful assistant.",
    "0 1 2 3 4 5 6 7 8 9 10 12.5 30.0 0.5 1.1 2.75 seconds",
)
TINY_BPE_VOCAB_SIZE = 512


def build_tiny_tokenizer() -> Any:
    """A small byte-level BPE with the same layout as the full tokenizer, built in-process (no files).

    Ids: the BPE vocabulary, then ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, then the 612 AudioStory
    tokens in the official order. Digits are split one per token like Qwen. Deterministic: every build gives
    the same ids.
    """
    return train_bpe_tokenizer(_TINY_CORPUS, TINY_BPE_VOCAB_SIZE)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE trained on ``texts`` with the full tokenizer's layout (Qwen pre-tokenisation, then the
    chat specials, then the 612 AudioStory tokens in order); used for the toy and the demo models."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.add_special_tokens(list(QWEN_CHAT_SPECIALS))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=IM_END, pad_token=ENDOFTEXT, unk_token=None)
    add_audiostory_tokens(tokenizer)
    resolve_special_token_ids(tokenizer)
    return tokenizer


def save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path) -> Any:
    """Load a tokenizer saved by ``save_tokenizer`` (or any folder with the AudioStory tokens) and check it."""
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise ModelError(f"{directory} has no tokenizer.json; save one with save_tokenizer() first")
    refuse_custom_code(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    resolve_special_token_ids(tokenizer)
    return tokenizer


def refuse_custom_code(directory: Path) -> None:
    """audiostory never runs code shipped with weights: a tokenizer whose config names custom classes
    (``auto_map``) is refused up front, before transformers would offer to run it."""
    import json

    config = Path(directory) / "tokenizer_config.json"
    if not config.is_file():
        return
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{config} is not readable JSON ({exc}); the tokenizer folder is corrupt") from exc
    if isinstance(data, dict) and data.get("auto_map"):
        raise ModelError(
            f"{config} asks to run custom tokenizer code (auto_map); audiostory never runs code from model "
            "folders: use a plain tokenizer.json tokenizer"
        )


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer.encode`` without BOS/EOS, as the official inference does."""
    return [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]


def decode_ids(tokenizer: Any, ids: Sequence[int]) -> str:
    """Exact text of ``ids`` (special tokens kept, no clean-up of spaces)."""
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))
