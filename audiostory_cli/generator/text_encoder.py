"""flan-T5 encoder. At inference it only encodes "" for the unconditional CFG half, so that result is cached.

The official code tokenises "" with ``padding="max_length"`` to the bridge length S, giving ``[</s>, <pad>×(S−1)]``
with mask ``[1, 0, …]``, runs the encoder with that mask, and then uses ALL S output vectors (the mask is not
applied afterwards). T5's ids are fixed (eos 1, pad 0), so no tokenizer file is needed.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from transformers import T5Config, T5EncoderModel

from ..config import TextEncoderDims

T5_PAD_ID = 0
T5_EOS_ID = 1

# model -> {(num_tokens, device, dtype): (num_tokens, d_model) tensor}; dropped when the model is collected.
_UNCOND_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, str, torch.dtype], torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def t5_config(dims: TextEncoderDims) -> T5Config:
    return T5Config(
        vocab_size=dims.vocab_size,
        d_model=dims.d_model,
        d_kv=dims.d_kv,
        d_ff=dims.d_ff,
        num_layers=dims.num_layers,
        num_heads=dims.num_heads,
        feed_forward_proj=dims.feed_forward_proj,
        pad_token_id=T5_PAD_ID,
        eos_token_id=T5_EOS_ID,
        is_encoder_decoder=False,
        use_cache=False,
    )


def build_text_encoder(dims: TextEncoderDims) -> T5EncoderModel:
    """A randomly initialised T5 encoder in eval mode (flan-t5-large at full dims)."""
    return T5EncoderModel(t5_config(dims)).eval()


def unconditional_tokens(text_encoder: T5EncoderModel, num_tokens: int) -> torch.Tensor:
    """T5("") padded to ``num_tokens``: (num_tokens, d_model) on the encoder's device and dtype.

    Computed once per (model, num_tokens, device, dtype) and cached for the life of the process; loading new
    weights into the model (``load_state_dict``) clears its entries. The returned tensor is a copy.
    """
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    weight = text_encoder.get_input_embeddings().weight
    key = (num_tokens, str(weight.device), weight.dtype)
    per_model = _UNCOND_CACHE.get(text_encoder)
    if per_model is None:
        per_model = {}
        _UNCOND_CACHE[text_encoder] = per_model
        text_encoder.register_load_state_dict_post_hook(_forget)
    if key not in per_model:
        per_model[key] = _encode_empty(text_encoder, num_tokens)
    return per_model[key].clone()


def _encode_empty(text_encoder: T5EncoderModel, num_tokens: int) -> torch.Tensor:
    device = text_encoder.get_input_embeddings().weight.device
    ids = torch.full((1, num_tokens), T5_PAD_ID, dtype=torch.long, device=device)
    ids[0, 0] = T5_EOS_ID
    mask = torch.zeros_like(ids)
    mask[0, 0] = 1
    with torch.no_grad():
        hidden = text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden[0].detach()


def _forget(module: nn.Module, incompatible_keys: object) -> None:
    """load_state_dict post-hook: cached outputs were computed with the old weights."""
    per_model = _UNCOND_CACHE.get(module)
    if per_model is not None:
        per_model.clear()


def cache_size(text_encoder: T5EncoderModel) -> int:
    """How many unconditional tensors are cached for this model (for tests and ``doctor``)."""
    return len(_UNCOND_CACHE.get(text_encoder, {}))
