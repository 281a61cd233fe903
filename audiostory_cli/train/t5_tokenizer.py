"""The T5 tokenizer behind the semantic targets ``t5_feature_scale · T5(caption)``.

Inference never needs it (T5 only encodes "" there, whose ids are fixed), so model folders did not carry one.
Training does, and a trained model folder stores it as ``t5_tokenizer/`` so the next stage finds it:

* the full model uses flan-t5's own ``tokenizer.json`` (from ``t5_tokenizer/`` in the model folder, the
  downloaded ``flan-t5`` part of a registered model, or ``--t5-tokenizer DIR``);
* toy models (``tiny-random``) use ``build_tiny_t5_tokenizer``: a small BPE built in-process from a fixed
  corpus, deterministic, with T5's special ids (pad 0, eos 1, unk 2) and ``</s>`` appended like T5;
* the demo stores ``build_corpus_t5_tokenizer``'s: the same conventions, its merges learned on the foley corpus.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ModelError, TrainingError
from ..generator.text_encoder import T5_EOS_ID, T5_PAD_ID

T5_TOKENIZER_DIR = "t5_tokenizer"
TINY_T5_MAX_VOCAB = 512  # a text encoder this small is a toy: the built-in tokenizer is its tokenizer

_TINY_T5_CORPUS: tuple[str, ...] = (
    "heavy rain pours on a tin roof while thunder rumbles in the distance",
    "a dog barks twice, then growls at a passing car",
    "footsteps splash through puddles on a wet street",
    "a heavy wooden door slams shut and echoes in the hall",
    "someone knocks on the door three times",
    "a car engine starts, idles and revs before driving away",
    "tyres screech as a car skids on the road",
    "a siren wails as an ambulance passes by",
    "birds chirp and sing in the morning forest",
    "wind howls through the trees and leaves rustle",
    "glass breaks and shatters on a hard floor",
    "a church bell rings slowly in the distance",
    "a clock ticks steadily in a quiet room",
    "a crowd murmurs and people talk in a busy hall",
    "a heartbeat pounds faster and faster",
    "water flows in a small stream over stones",
    "a phone rings with a high electronic tone",
    "a fire crackles and pops in the fireplace",
    "soft, loud, distant, close, low, high, bright, dark, fast, slow, gentle, harsh",
)


def build_tiny_t5_tokenizer(vocab_size: int = 256) -> Any:
    """A small BPE tokenizer with T5's conventions: ``<pad>``=0, ``</s>``=1, ``<unk>``=2, ``</s>`` appended.

    Every printable ASCII character is in its alphabet; other characters map to ``<unk>``. Deterministic.
    """
    return build_corpus_t5_tokenizer(_TINY_T5_CORPUS, vocab_size)


def build_corpus_t5_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """``build_tiny_t5_tokenizer``'s conventions, its merges learned on ``texts``: a text encoder's tokenizer
    for a small world (the demo's foley corpus), so that a caption takes about one token per word and fits in
    the S semantic tokens its T5 target is cut to. Deterministic for the same texts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    alphabet = sorted(set(string.ascii_letters + string.digits + string.punctuation + "▁"))
    if vocab_size < len(specials) + len(alphabet):
        raise ModelError(f"a T5 vocabulary of {vocab_size} cannot hold the {len(alphabet)}-character alphabet")
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.NFKC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>",
        pair="$A </s> $B </s>",
        special_tokens=[("</s>", T5_EOS_ID)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    check_t5_tokenizer(tokenizer, vocab_size)
    return tokenizer


def check_t5_tokenizer(tokenizer: Any, encoder_vocab_size: int) -> None:
    """T5's fixed ids (pad 0, eos 1) and every id inside the encoder's embedding table."""
    if tokenizer.pad_token_id != T5_PAD_ID or tokenizer.eos_token_id != T5_EOS_ID:
        raise ModelError(
            f"the T5 tokenizer has pad id {tokenizer.pad_token_id} and eos id {tokenizer.eos_token_id}; T5 needs "
            f"{T5_PAD_ID} and {T5_EOS_ID}: use flan-t5's tokenizer"
        )
    if len(tokenizer) > encoder_vocab_size:
        raise ModelError(
            f"the T5 tokenizer has {len(tokenizer)} tokens but the text encoder only {encoder_vocab_size}; "
            "use the tokenizer that belongs to the model's T5"
        )


def save_t5_tokenizer(tokenizer: Any, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))


def load_t5_tokenizer(directory: Path, encoder_vocab_size: int) -> Any:
    from transformers import AutoTokenizer

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise TrainingError(f"{directory} has no tokenizer.json; point --t5-tokenizer at a flan-t5 folder")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    check_t5_tokenizer(tokenizer, encoder_vocab_size)
    return tokenizer


def resolve_t5_tokenizer(model_ref: str, encoder_vocab_size: int, override: Path | None = None) -> tuple[Any, str]:
    """The T5 tokenizer for a model, and where it came from (shown to the user and stored in the sidecar)."""
    if override is not None:
        return load_t5_tokenizer(override, encoder_vocab_size), str(override)
    for folder in _candidate_folders(model_ref):
        if (folder / "tokenizer.json").is_file():
            return load_t5_tokenizer(folder, encoder_vocab_size), str(folder)
    if encoder_vocab_size <= TINY_T5_MAX_VOCAB:
        return build_tiny_t5_tokenizer(encoder_vocab_size), "built-in tiny T5 tokenizer"
    raise TrainingError(
        f"no T5 tokenizer found for model {model_ref!r} (needed for the semantic targets): run "
        "`audiostory models download audiostory-3b` (it fetches flan-t5's tokenizer) or pass --t5-tokenizer DIR"
    )


def _candidate_folders(model_ref: str) -> list[Path]:
    from ..weights.download import converted_path, model_path
    from ..weights.registry import resolve_model_ref

    resolved = resolve_model_ref(model_ref)
    if isinstance(resolved, Path):
        return [resolved / T5_TOKENIZER_DIR]
    if resolved.kind == "bundled":
        return [model_path(resolved) / T5_TOKENIZER_DIR]
    if resolved.kind == "hub":
        return [converted_path(resolved) / T5_TOKENIZER_DIR, model_path(resolved) / "flan-t5"]
    return []
