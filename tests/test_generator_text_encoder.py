"""T5("") unconditional tokens: official tokenisation, all S vectors, computed once per process."""

from __future__ import annotations

import torch

from audiostory_cli.config import tiny_dims
from audiostory_cli.generator.text_encoder import build_text_encoder, cache_size, unconditional_tokens


def test_uncond_is_eos_then_pads_with_mask_and_all_vectors_kept():
    torch.manual_seed(0)
    t5 = build_text_encoder(tiny_dims().text_encoder)
    tokens = unconditional_tokens(t5, 6)
    assert tokens.shape == (6, tiny_dims().text_encoder.d_model)
    ids = torch.tensor([[1, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        expected = t5(input_ids=ids, attention_mask=mask).last_hidden_state[0]
    torch.testing.assert_close(tokens, expected, rtol=0, atol=0)
    # pad positions still carry (masked-attention) outputs, and they differ from the eos vector
    assert not torch.allclose(tokens[0], tokens[1])


def test_uncond_is_computed_once_and_forgotten_when_weights_change():
    torch.manual_seed(1)
    t5 = build_text_encoder(tiny_dims().text_encoder)
    calls = []
    t5.register_forward_hook(lambda *args: calls.append(1))
    first = unconditional_tokens(t5, 8)
    second = unconditional_tokens(t5, 8)
    assert len(calls) == 1 and cache_size(t5) == 1 and torch.equal(first, second)
    second.add_(1.0)  # callers get copies: the cache cannot be corrupted
    assert torch.equal(unconditional_tokens(t5, 8), first)
    unconditional_tokens(t5, 4)
    assert len(calls) == 2 and cache_size(t5) == 2
    state = {k: v + 0.01 for k, v in t5.state_dict().items()}
    t5.load_state_dict(state)
    assert cache_size(t5) == 0
    assert not torch.allclose(unconditional_tokens(t5, 8), first)
