"""The official checkpoint layout (peft 0.4 names, modules_to_save copies) maps strictly onto our modules."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from audiostory_cli.config import ModelDims, tiny_dims
from audiostory_cli.errors import CheckpointKeyError, WeightsError
from audiostory_cli.weights.checkpoint import empty_weights, load_state_strict
from audiostory_cli.weights.convert import load_mapped_strict
from audiostory_cli.weights.official import (
    LLM_PREFIX,
    REASON_ORIGINAL,
    combine,
    load_official_bin,
    map_official_state_dict,
    map_vae_state_dict,
    map_whisper_state_dict,
    read_official_config,
)

VOCAB = 300
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tiny_model_dims() -> ModelDims:
    return tiny_dims()


def build_parts(dims: ModelDims, vocab: int) -> dict[str, torch.nn.Module]:
    """Our modules at toy size, in the container's part layout."""
    from audiostory_cli.generator.dit import AudioDiT
    from audiostory_cli.generator.text_encoder import build_text_encoder
    from audiostory_cli.generator.vae import build_vae
    from audiostory_cli.planner.audio_encoder import AudioEncoder
    from audiostory_cli.planner.bridge import Bridge
    from audiostory_cli.planner.reasoner import build_llm

    parts: dict[str, torch.nn.Module] = {
        "llm": build_llm(dims.reasoner, vocab, torch.float32),
        "bridge": Bridge(dims.bridge),
        "dit": AudioDiT(dims.dit),
        "text_encoder": build_text_encoder(dims.text_encoder),
        "vae": build_vae(dims.vae),
    }
    if dims.audio_encoder is not None:
        parts["audio_encoder"] = AudioEncoder(dims.audio_encoder)
    return {k: v.eval() for k, v in parts.items()}


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Distinct, non-trivial values everywhere (norms and biases included) so a mix-up cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.05 + (1.0 if param.ndim == 1 else 0.0))


@dataclasses.dataclass
class OfficialFixture:
    dims: ModelDims
    official: dict[str, torch.Tensor]  # the bin, official key layout
    whisper: dict[str, torch.Tensor]  # openai/whisper model.safetensors layout
    vae: dict[str, torch.Tensor]  # TangoFlux vae.safetensors layout
    reference: dict[str, torch.nn.Module]  # the same weights (LoRA merged), loaded directly


def make_official(
    dims: ModelDims | None = None, *, seed: int = 0, lora_alpha: float = 8.0, vocab: int = VOCAB
) -> OfficialFixture:
    """A synthetic ``pytorch_model.bin`` in the official layout, built from tiny modules."""
    dims = dims or tiny_model_dims()
    reference = build_parts(dims, vocab)
    for i, module in enumerate(reference.values()):
        randomise(module, seed + i)
    gen = torch.Generator().manual_seed(seed + 100)
    r = dims.reasoner.lora_r
    scale = lora_alpha / r
    official: dict[str, torch.Tensor] = {}
    llm_state = reference["llm"].state_dict()
    merged: dict[str, torch.Tensor] = {}
    for key, tensor in llm_state.items():
        if key == "lm_head.weight":
            official[LLM_PREFIX + key] = tensor.clone()  # tied: the same values as embed_tokens
            continue
        module, _, param = key.rpartition(".")
        if param == "weight" and module.rsplit(".", 1)[-1] in LORA_TARGETS:
            base = tensor.clone()
            a = torch.randn(r, tensor.shape[1], generator=gen) * 0.1
            b = torch.randn(tensor.shape[0], r, generator=gen) * 0.1
            official[f"{LLM_PREFIX}{module}.weight"] = base
            official[f"{LLM_PREFIX}{module}.lora_A.default.weight"] = a
            official[f"{LLM_PREFIX}{module}.lora_B.default.weight"] = b
            merged[key] = base + scale * (b @ a)
        elif module.endswith("norm"):
            official[f"{LLM_PREFIX}{module}.original_module.weight"] = torch.ones_like(tensor)
            official[f"{LLM_PREFIX}{module}.modules_to_save.default.weight"] = tensor.clone()
        else:
            official[LLM_PREFIX + key] = tensor.clone()
    # the reference LLM holds the merged weights, loaded directly
    reference["llm"].load_state_dict({**llm_state, **merged}, strict=True)
    for key, tensor in reference["bridge"].state_dict().items():
        official[key if key.startswith("multihead_attention.") else "seedx." + key] = tensor.clone()
    for key, tensor in reference["dit"].state_dict().items():
        official["tangoflux." + key] = tensor.clone()
    for key, tensor in reference["text_encoder"].state_dict().items():
        if key != "encoder.embed_tokens.weight":  # as in TangoFlux: the tie is stored once
            official["tangoflux.text_encoder." + key] = tensor.clone()
    whisper: dict[str, torch.Tensor] = {}
    for key, tensor in reference["audio_encoder"].state_dict().items():
        if key.startswith("resampler."):
            official["seedx.whisper_resampler_llava." + key[len("resampler.") :]] = tensor.clone()
        else:
            whisper["model.encoder." + key[len("whisper.") :]] = tensor.clone()
    whisper["model.decoder.embed_tokens.weight"] = torch.randn(10, 4, generator=gen)  # unused, ignored
    official["seedx.input_resampler.latents"] = torch.randn(4, 8, generator=gen)  # built but unused upstream
    official["seedx.output_resampler.proj_in.weight"] = torch.randn(8, 8, generator=gen)
    vae = {k: v.clone() for k, v in reference["vae"].state_dict().items()}
    return OfficialFixture(dims=dims, official=official, whisper=whisper, vae=vae, reference=reference)


@pytest.fixture(scope="module")
def fixture() -> OfficialFixture:
    return make_official()


def _map_all(fx: OfficialFixture, official: dict[str, torch.Tensor] | None = None, **kwargs):
    dims = dataclasses.replace(fx.dims, reasoner=dataclasses.replace(fx.dims.reasoner, vocab_size=VOCAB))
    mapped = map_official_state_dict(
        official if official is not None else fx.official, dims, lora_alpha=8.0, lora_r=dims.reasoner.lora_r, **kwargs
    )
    return combine(mapped, map_whisper_state_dict(fx.whisper), map_vae_state_dict(fx.vae))


def _empty_parts(fx: OfficialFixture) -> dict[str, torch.nn.Module]:
    with empty_weights():
        return build_parts(fx.dims, VOCAB)


def test_official_layout_loads_strictly_and_matches_direct_load(fixture: OfficialFixture) -> None:
    mapped = _map_all(fixture)
    assert mapped.parts == {"llm", "bridge", "dit", "text_encoder", "vae", "audio_encoder"}
    # every official key is used or ignored with a reason
    assert mapped.ignored["seedx.input_resampler.latents"].startswith("input_resampler is built")
    originals = [k for k in mapped.ignored if ".original_module." in k]
    assert len(originals) == 2 * fixture.dims.reasoner.num_layers + 1
    assert all(mapped.ignored[k] == REASON_ORIGINAL for k in originals)
    assert f"{LLM_PREFIX}lm_head.weight" in mapped.ignored
    assert any("merged LoRA into 14 linear layers" in note for note in mapped.notes)

    parts = _empty_parts(fixture)
    load_mapped_strict(parts, mapped)
    for name, module in parts.items():
        assert not any(p.device.type == "meta" for p in module.parameters()), name
        ref_state = fixture.reference[name].state_dict()
        for key, value in module.state_dict().items():
            assert torch.equal(value, ref_state[key]), f"{name}.{key}"

    llm, ref_llm = parts["llm"], fixture.reference["llm"]
    assert llm.lm_head.weight is llm.model.embed_tokens.weight
    ids = torch.tensor([[1, 5, 17, 42, 299, 3]])
    with torch.no_grad():
        assert torch.equal(llm(ids).logits, ref_llm(ids).logits)
        sem = torch.randn(2, fixture.dims.bridge.num_semantic_tokens, fixture.dims.bridge.llm_dim)
        res = torch.randn(2, fixture.dims.bridge.num_residual_tokens, fixture.dims.bridge.llm_dim)
        assert torch.equal(parts["bridge"](sem, res), fixture.reference["bridge"](sem, res))
        t5_ids = torch.tensor([[1, 0, 0]])
        assert torch.equal(
            parts["text_encoder"](input_ids=t5_ids).last_hidden_state,
            fixture.reference["text_encoder"](input_ids=t5_ids).last_hidden_state,
        )
    te = parts["text_encoder"]
    assert te.encoder.embed_tokens.weight is te.shared.weight


def test_lora_merge_is_what_changes_the_weights(fixture: OfficialFixture) -> None:
    mapped = _map_all(fixture)
    key = "model.layers.0.self_attn.q_proj.weight"
    base = fixture.official[LLM_PREFIX + key]
    assert not torch.equal(mapped.state["llm." + key], base)
    a = fixture.official[f"{LLM_PREFIX}model.layers.0.self_attn.q_proj.lora_A.default.weight"]
    b = fixture.official[f"{LLM_PREFIX}model.layers.0.self_attn.q_proj.lora_B.default.weight"]
    torch.testing.assert_close(mapped.state["llm." + key], base + (8.0 / 4) * (b @ a))
    norm = "model.layers.1.post_attention_layernorm.weight"
    assert torch.equal(
        mapped.state["llm." + norm],
        fixture.official[f"{LLM_PREFIX}model.layers.1.post_attention_layernorm.modules_to_save.default.weight"],
    )


def test_removed_key_fails_naming_it(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    del official["seedx.projector.0.bias"]
    del official[f"{LLM_PREFIX}model.norm.modules_to_save.default.weight"]
    mapped = _map_all(fixture, official)
    with pytest.raises(CheckpointKeyError) as err:
        load_mapped_strict(_empty_parts(fixture), mapped)
    message = str(err.value)
    assert "bridge.projector.0.bias" in message and "llm.model.norm.weight" in message
    assert "2 missing" in message
    assert "\n" not in message


def test_removed_lora_base_weight_fails_naming_it(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    del official[f"{LLM_PREFIX}model.layers.1.mlp.down_proj.weight"]
    with pytest.raises(CheckpointKeyError, match=re.escape("model.layers.1.mlp.down_proj")):
        _map_all(fixture, official)


def test_reshaped_key_fails_naming_it_with_shapes(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    official["tangoflux.fc.0.weight"] = official["tangoflux.fc.0.weight"][:, :-1].clone()
    mapped = _map_all(fixture, official)
    with pytest.raises(CheckpointKeyError) as err:
        load_mapped_strict(_empty_parts(fixture), mapped)
    message = str(err.value)
    assert "dit.fc.0.weight" in message and "shape mismatch" in message
    assert "[32, 31]" in message and "[32, 32]" in message


def test_lora_of_wrong_rank_fails(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    key = f"{LLM_PREFIX}model.layers.0.self_attn.k_proj.lora_A.default.weight"
    official[key] = torch.zeros(3, official[key].shape[1])
    with pytest.raises(CheckpointKeyError, match="not rank 4"):
        _map_all(fixture, official)


def test_unexpected_key_fails_unless_known_unused(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    official["seedx.new_head.weight"] = torch.zeros(2, 2)
    with pytest.raises(CheckpointKeyError, match=re.escape("seedx.new_head.weight")):
        _map_all(fixture, official)
    # the same kind of key under an ignored prefix is accepted, with its reason
    official = dict(fixture.official)
    official["seedx.output_resampler.extra.bias"] = torch.zeros(2)
    mapped = _map_all(fixture, official)
    assert "never" not in mapped.ignored["seedx.output_resampler.extra.bias"]
    assert "used by no forward" in mapped.ignored["seedx.output_resampler.extra.bias"]


def test_unexpected_key_after_mapping_fails_in_the_strict_loader(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    official["tangoflux.transformer.extra_block.weight"] = torch.zeros(2)
    mapped = _map_all(fixture, official)
    with pytest.raises(CheckpointKeyError, match=re.escape("dit.transformer.extra_block.weight")):
        load_mapped_strict(_empty_parts(fixture), mapped)


def test_untied_lm_head_is_an_error(fixture: OfficialFixture) -> None:
    official = dict(fixture.official)
    official[f"{LLM_PREFIX}lm_head.weight"] = official[f"{LLM_PREFIX}lm_head.weight"] + 1
    with pytest.raises(CheckpointKeyError, match="lm_head.weight differs"):
        _map_all(fixture, official)


def test_wrong_vocab_rows_is_an_error(fixture: OfficialFixture) -> None:
    dims = dataclasses.replace(fixture.dims, reasoner=dataclasses.replace(fixture.dims.reasoner, vocab_size=301))
    with pytest.raises(CheckpointKeyError, match="300 rows but the tokenizer has 301"):
        map_official_state_dict(fixture.official, dims, lora_alpha=8.0, lora_r=4)


def test_base_weights_fill_a_lora_only_checkpoint(fixture: OfficialFixture) -> None:
    """If the bin holds only trained tensors, the Qwen base weights supply the rest (and are ignored where the
    bin has its own copy)."""
    lora_only = {}
    base = {}
    for key, tensor in fixture.official.items():
        rest = key[len(LLM_PREFIX) :] if key.startswith(LLM_PREFIX) else None
        if rest is not None and re.search(r"_proj\.(weight|bias)$", rest):
            base[rest] = tensor
        else:
            lora_only[key] = tensor
    base["model.embed_tokens.weight"] = torch.zeros(7, 4)  # stock rows, superseded by the trained matrix
    mapped_full = _map_all(fixture)
    mapped = _map_all(fixture, lora_only, base_llm=base)
    assert mapped.ignored["base:model.embed_tokens.weight"].startswith("superseded")
    assert mapped.state.keys() == mapped_full.state.keys()
    for key in mapped.state:
        assert torch.equal(mapped.state[key], mapped_full.state[key]), key
    with pytest.raises(CheckpointKeyError, match="base weight its LoRA applies to"):
        _map_all(fixture, lora_only)


def test_peft7_base_layer_names_are_accepted(fixture: OfficialFixture) -> None:
    official = {}
    for key, tensor in fixture.official.items():
        if key.endswith("q_proj.weight") and "lora_" not in key:
            key = key.replace("q_proj.weight", "q_proj.base_layer.weight")
        official[key] = tensor
    mapped = _map_all(fixture, official)
    assert any("base_layer" in note for note in mapped.notes)
    assert torch.equal(
        mapped.state["llm.model.layers.0.self_attn.q_proj.weight"],
        _map_all(fixture).state["llm.model.layers.0.self_attn.q_proj.weight"],
    )


def test_load_official_bin_is_weights_only(tmp_path, fixture: OfficialFixture) -> None:
    path = tmp_path / "pytorch_model.bin"
    torch.save({k: fixture.official[k] for k in list(fixture.official)[:5]}, path)
    state = load_official_bin(path)
    assert list(state) == list(fixture.official)[:5]

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"x": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(WeightsError, match="weights-only"):
        load_official_bin(tmp_path / "evil.bin")
    with pytest.raises(WeightsError, match="not found"):
        load_official_bin(tmp_path / "missing.bin")


# ---------------------------------------------------------------------------------------------------------------
# config.yaml


CONFIG_YAML = """\
tokenizer:
  _target_: src.models.tokenizer.init_qwen_tokenizer.init_tokenizer
  pretrained_model_name_or_path: ckpt/Qwen2.5-3B-Instruct
llm_model:
  _target_: src.models.mllm.peft_models.get_peft_model_with_resize_embedding
  model:
    _target_: transformers.AutoModelForCausalLM.from_pretrained
    pretrained_model_name_or_path: ckpt/Qwen2.5-3B-Instruct
  peft_config:
    _target_: peft.LoraConfig
    _convert_: object
    r: 16
    lora_alpha: 32
  vocab_size: 152277
agent_model:
  _target_: src.models.mllm.modeling_audiostory_llm.AudioStory_llm.from_pretrained
  t5_feature_scale: ${scale}
  model_dims: 2048
  whisper_resampler_llava:
    _target_: src.models.tokenizer.modeling_whisper.Whisper_Resampler_llava
    token_num: 300
    ori_embed_dim: 1280
    tgt_embed_dim: 2048
scale: 12.5
train_dataset:
  _target_: src.data.build_multi_datapipes
  datapipes:
    - _target_: src.data.audio_story
      num_t5_out_tokens: 32
      num_aud_out_tokens: 4
"""


def test_read_official_config_reads_fields_as_data(tmp_path, caplog) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_YAML)
    config = read_official_config(path)
    assert (config.num_semantic, config.num_residual, config.t5_feature_scale) == (32, 4, 12.5)
    assert (config.lora_r, config.lora_alpha, config.vocab_size, config.llm_dim) == (16, 32.0, 152277, 2048)
    assert (config.resampler_tokens, config.resampler_in_dim, config.resampler_out_dim) == (300, 1280, 2048)
    assert config.warnings == ()
    dims = config.apply(tiny_dims())
    assert dims.bridge.num_semantic_tokens == 32 and dims.bridge.t5_feature_scale == 12.5
    assert dims.reasoner.lora_r == 16 and dims.audio_encoder.num_tokens == 300


def test_read_official_config_falls_back_with_warnings(tmp_path, caplog) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tokenizer: {}\nllm_model: null\nagent_model: {}\n")
    with caplog.at_level("WARNING"):
        config = read_official_config(path)
    assert (config.num_semantic, config.num_residual, config.t5_feature_scale) == (64, 8, 10.0)
    assert (config.lora_r, config.lora_alpha) == (32, 32.0)
    assert len(config.warnings) == 5
    assert "num_t5_out_tokens" in caplog.text


def test_read_official_config_rejects_bad_values(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent_model:\n  t5_feature_scale: lots\n")
    with pytest.raises(WeightsError, match="t5_feature_scale"):
        read_official_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(WeightsError, match="mapping"):
        read_official_config(path)


def test_load_state_strict_ignored_patterns_and_ties() -> None:
    from torch import nn

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.head = nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    src = Tied()
    state = {"embed.weight": src.embed.weight.detach().clone(), "old.thing": torch.zeros(1)}
    with empty_weights():
        dst = Tied()
    assert dst.head.weight is dst.embed.weight and dst.embed.weight.device.type == "meta"
    report = load_state_strict(dst, state, ignored={"old.*": "left over from an old layout"})
    assert report.ignored == {"old.thing": "left over from an old layout"}
    assert report.tied == {"head.weight": "embed.weight"}
    assert dst.head.weight is dst.embed.weight
    assert torch.equal(dst.embed.weight, src.embed.weight)

    with empty_weights():
        dst = Tied()
    bad = {"embed.weight": state["embed.weight"], "head.weight": state["embed.weight"] + 1}
    with pytest.raises(CheckpointKeyError, match="tied weights differ"):
        load_state_strict(dst, bad)
    with pytest.raises(CheckpointKeyError, match="old.thing"):
        load_state_strict(dst, {**state})
