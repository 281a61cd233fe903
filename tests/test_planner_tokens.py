"""Special tokens, id resolution and the tokenizer builders."""

from __future__ import annotations

import pytest

from audiostory_cli.errors import ModelError
from audiostory_cli.planner.tokens import (
    AUDIOSTORY_TOKENS,
    FULL_VOCAB_SIZE,
    NUM_AUD_PLACEHOLDERS,
    NUM_T5_PLACEHOLDERS,
    QWEN_BASE_LEN,
    add_audiostory_tokens,
    build_full_tokenizer,
    build_tiny_tokenizer,
    decode_ids,
    encode_text,
    load_tokenizer,
    resolve_special_token_ids,
    save_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_official_token_order():
    assert len(AUDIOSTORY_TOKENS) == 612
    assert AUDIOSTORY_TOKENS[:6] == ("</t5>", "<video_padding>", "<timestamp>", "</timestamp>", "<t5>", "<t5_00000>")
    assert AUDIOSTORY_TOKENS[4 + NUM_T5_PLACEHOLDERS] == "<t5_00099>"
    assert AUDIOSTORY_TOKENS[5 + NUM_T5_PLACEHOLDERS : 8 + NUM_T5_PLACEHOLDERS] == ("<aud>", "</aud>", "<aud_00000>")
    assert AUDIOSTORY_TOKENS[-5:] == ("<aud_00500>", "<|gen|>", "<|/gen|>", "<|think|>", "<|/think|>")
    assert NUM_AUD_PLACEHOLDERS == 501
    assert len(set(AUDIOSTORY_TOKENS)) == 612


def test_tiny_tokenizer_is_deterministic_and_laid_out_like_qwen(tok):
    again = build_tiny_tokenizer()
    assert again.get_vocab() == tok.get_vocab()
    ids = resolve_special_token_ids(tok)
    assert ids.vocab_size == len(tok)
    assert (ids.endoftext, ids.im_start, ids.im_end) == (ids.num_text_tokens, ids.endoftext + 1, ids.endoftext + 2)
    assert ids.t5_close == ids.im_end + 1
    assert ids.think_close == len(tok) - 1
    assert [ids.t5_close, ids.video_padding, ids.timestamp_open, ids.timestamp_close, ids.t5_open] == list(
        range(ids.t5_close, ids.t5_close + 5)
    )
    assert ids.t5(0) == ids.t5_open + 1 and ids.t5(99) == ids.aud_open - 1
    assert ids.aud(0) == ids.aud_close + 1 and ids.aud(500) == ids.gen_open - 1
    assert ids.semantic_block(3) == [ids.t5_open, ids.t5(0), ids.t5(1), ids.t5(2), ids.t5_close]
    assert len(ids.event_tail(8, 2)) == 8 + 2 + 5
    with pytest.raises(ValueError):
        ids.t5(100)


def test_every_layout_token_is_one_id_and_decodes_back(tok):
    ids = resolve_special_token_ids(tok)
    for offset, token in enumerate(AUDIOSTORY_TOKENS):
        assert encode_text(tok, token) == [ids.t5_close + offset]
        assert decode_ids(tok, [ids.t5_close + offset]) == token
    for digit in "0123456789.":
        assert len(encode_text(tok, digit)) == 1
    text = "Event 1: Timestamp: 0.0s - 5.2s.<|/think|>\n<|gen|>a dog<timestamp>5.2</timestamp><t5><t5_00000></t5>"
    assert decode_ids(tok, encode_text(tok, text)) == text


def test_save_load_round_trip(tok, tmp_path):
    save_tokenizer(tok, tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert len(loaded) == len(tok)
    assert resolve_special_token_ids(loaded) == resolve_special_token_ids(tok)
    sample = "A dog barks<timestamp>3.5</timestamp><|im_end|> rain"
    assert encode_text(loaded, sample) == encode_text(tok, sample)


def _base_tokenizer():
    """A Qwen-like base: byte-level BPE + the three chat specials, without the AudioStory tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(["a dog 0123456789 ."], trainer)
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def test_build_full_tokenizer_appends_in_order(tmp_path):
    base = _base_tokenizer()
    base_len = len(base)
    base.save_pretrained(str(tmp_path / "qwen"))
    full = build_full_tokenizer(tmp_path / "qwen")
    ids = resolve_special_token_ids(full)
    assert ids.t5_close == base_len and ids.think_close == base_len + 611 and len(full) == base_len + 612
    with pytest.raises(ModelError, match="already has"):
        add_audiostory_tokens(full)
    with pytest.raises(ModelError, match="no tokenizer.json"):
        build_full_tokenizer(tmp_path / "missing")
    with pytest.raises(ModelError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


class _FakeQwen:
    """Just enough of a tokenizer for ``resolve_special_token_ids``: a token → id table and a length."""

    def __init__(self, first: int, length: int) -> None:
        self.table = {t: first + i for i, t in enumerate(AUDIOSTORY_TOKENS)}
        self.table.update({"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645})
        self.length = length

    def __len__(self) -> int:
        return self.length

    def encode(self, text, add_special_tokens=False):
        return [self.table[text]]


def test_full_qwen_ids_are_asserted():
    ids = resolve_special_token_ids(_FakeQwen(QWEN_BASE_LEN, FULL_VOCAB_SIZE))
    assert (ids.t5_close, ids.t5_open, ids.t5(63), ids.aud_open, ids.aud(7), ids.think_close) == (
        151665,
        151669,
        151733,
        151770,
        151779,
        152276,
    )
    with pytest.raises(ModelError, match="152277"):
        resolve_special_token_ids(_FakeQwen(QWEN_BASE_LEN + 1, FULL_VOCAB_SIZE + 1))


def test_wrong_order_or_missing_tokens_fail():
    bad = _base_tokenizer()
    with pytest.raises(ModelError, match="lacks the AudioStory special tokens"):
        resolve_special_token_ids(bad)
    swapped = list(AUDIOSTORY_TOKENS)
    swapped[0], swapped[4] = swapped[4], swapped[0]
    bad.add_tokens(swapped, special_tokens=True)
    with pytest.raises(ModelError, match="official order"):
        resolve_special_token_ids(bad)
