"""Audio tokens in the prompt (SEED-X style): ``<aud><aud_k>…</aud>`` in the user turn carry the resampler tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from audiostory_cli.errors import ModelError
from audiostory_cli.planner.api import build_tiny_planner
from audiostory_cli.planner.reasoner import AudioPromptDecoder, audio_prompt_block
from audiostory_cli.planner.tokens import AUD_CLOSE, AUD_OPEN


@pytest.fixture(scope="module")
def reasoner():
    return build_tiny_planner().reasoner


def audio(hidden: int, count: int = 4) -> torch.Tensor:
    return torch.randn(count, hidden, generator=torch.Generator().manual_seed(3))


def test_prompt_has_the_audio_block_in_the_user_turn(reasoner):
    ids = reasoner.prompt_ids("what follows?", audio_tokens=4)
    plain = reasoner.prompt_ids("what follows?")
    placeholders = [i for i, t in enumerate(ids) if reasoner.ids.is_aud_placeholder(t)]
    assert [ids[p] - reasoner.ids.aud_first for p in placeholders] == [0, 1, 2, 3]
    assert ids[placeholders[0] - 1] == reasoner.ids.aud_open and ids[placeholders[-1] + 1] == reasoner.ids.aud_close
    assert len(ids) == len(plain) + 6
    assert audio_prompt_block(2) == f"{AUD_OPEN}<aud_00000><aud_00001>{AUD_CLOSE}"
    with pytest.raises(ModelError, match="do not fit"):
        audio_prompt_block(502)


def test_audio_replaces_the_placeholder_embeddings(reasoner):
    ids = reasoner.prompt_ids("what follows?", audio_tokens=4)
    tokens = audio(reasoner.decoder.config.hidden_size)
    decoder = reasoner.decoder_for(ids, tokens)
    assert isinstance(decoder, AudioPromptDecoder)
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        got = decoder(input_ids=input_ids).last_hidden_state[0]
        embeds = reasoner.decoder.embed_tokens(input_ids).clone()
        positions = [i for i, t in enumerate(ids) if reasoner.ids.is_aud_placeholder(t)]
        embeds[0, positions] = tokens
        want = reasoner.decoder(inputs_embeds=embeds).last_hidden_state[0]
        plain = reasoner.decoder(input_ids=input_ids).last_hidden_state[0]
    torch.testing.assert_close(got, want)
    first = positions[0]
    torch.testing.assert_close(got[:first], plain[:first])  # causal: nothing before the audio changes
    assert not torch.allclose(got[first:], plain[first:])


def test_kv_cache_continuation_keeps_absolute_positions(reasoner):
    """A prompt fed in two calls (split inside the audio block) equals one call."""
    ids = reasoner.prompt_ids("what follows?", audio_tokens=4)
    tokens = audio(reasoner.decoder.config.hidden_size)
    decoder = reasoner.decoder_for(ids, tokens)
    split = [i for i, t in enumerate(ids) if reasoner.ids.is_aud_placeholder(t)][2]
    with torch.inference_mode():
        whole = decoder(input_ids=torch.tensor([ids])).last_hidden_state[0]
        cache = DynamicCache(config=reasoner.decoder.config)
        head = decoder(input_ids=torch.tensor([ids[:split]]), past_key_values=cache, use_cache=True)
        tail = decoder(input_ids=torch.tensor([ids[split:]]), past_key_values=cache, use_cache=True)
    torch.testing.assert_close(torch.cat([head.last_hidden_state[0], tail.last_hidden_state[0]]), whole)


def test_wrong_token_shapes_are_model_errors(reasoner):
    ids = reasoner.prompt_ids("what follows?", audio_tokens=4)
    hidden = reasoner.decoder.config.hidden_size
    with pytest.raises(ModelError, match="one row per <aud_k>"):
        reasoner.decoder_for(ids, audio(hidden, count=3))
    with pytest.raises(ModelError, match="different models"):
        reasoner.decoder_for(ids, audio(hidden + 1))


def test_planning_with_audio_uses_the_fast_decoder_only(reasoner):
    with pytest.raises(Exception, match="fast decoder only"):
        reasoner.plan_instruction("rain", 4.0, method="reference", audio_embeds=audio(64))
