"""Our model folder: atomic save, sidecar, memory-mapped strict loading onto meta-built modules."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from audiostory_cli.config import ModelDims, tiny_dims
from audiostory_cli.errors import CheckpointKeyError, ModelError, OutputExistsError, WeightsError
from audiostory_cli.weights.checkpoint import (
    ModelInfo,
    SourceRef,
    empty_weights,
    load_parts_strict,
    merge_key_errors,
    read_part_state,
    read_sidecar,
    save_model_folder,
    tie_groups,
    verify_model_folder,
)

from .test_models_official import VOCAB, build_parts, randomise


def _small_parts(seed: int = 0) -> dict[str, nn.Module]:
    """LLM (tied lm_head), bridge, text encoder (tied T5 embeddings): the parts with ties and buffers."""
    from audiostory_cli.generator.text_encoder import build_text_encoder
    from audiostory_cli.planner.bridge import Bridge
    from audiostory_cli.planner.reasoner import build_llm

    dims = tiny_dims()
    parts = {
        "llm": build_llm(dims.reasoner, VOCAB, torch.float32),
        "bridge": Bridge(dims.bridge),
        "text_encoder": build_text_encoder(dims.text_encoder),
    }
    for i, module in enumerate(parts.values()):
        randomise(module, seed + i)
    return {k: v.eval() for k, v in parts.items()}


def _empty_small() -> dict[str, nn.Module]:
    with empty_weights():
        return _small_parts()


INFO = ModelInfo(
    name="unit-test",
    vocab_size=VOCAB,
    sources=(SourceRef(repo="local:test", revision="local", files={"a.bin": "0" * 64}),),
    base_model=None,
    extra={"why": "test"},
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple:
    parts = _small_parts()
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    meta = save_model_folder(folder, parts, tiny_dims(), INFO)
    return folder, parts, meta


def test_save_writes_sidecar_and_one_file_per_part(saved) -> None:
    folder, parts, meta = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "audiostory.json",
        "bridge.safetensors",
        "llm.safetensors",
        "text_encoder.safetensors",
    ]
    data = json.loads((folder / "audiostory.json").read_text())
    assert data["format"] == "audiostory-model" and data["format_version"] == 1
    assert data["vocab_size"] == VOCAB and data["dtype"] == "float32"
    assert data["sources"][0]["files"] == {"a.bin": "0" * 64}
    back = read_sidecar(folder)
    assert back.dims == tiny_dims() and back.name == "unit-test" and back.extra == {"why": "test"}
    assert set(back.parts) == {"llm", "bridge", "text_encoder"}
    # ties are stored once, under the first name
    llm_keys = read_part_state(folder, "llm", meta=back)
    assert "model.embed_tokens.weight" in llm_keys and "lm_head.weight" not in llm_keys
    t5_keys = read_part_state(folder, "text_encoder", meta=back)
    assert "shared.weight" in t5_keys and "encoder.embed_tokens.weight" not in t5_keys
    assert all(c.ok for c in verify_model_folder(folder))


def test_round_trip_on_meta_gives_identical_outputs(saved) -> None:
    folder, parts, _ = saved
    empty = _empty_small()
    assert all(p.device.type == "meta" for p in empty["llm"].parameters())
    load_parts_strict(folder, empty)
    llm = empty["llm"]
    assert llm.lm_head.weight is llm.model.embed_tokens.weight
    assert llm.model.rotary_emb.inv_freq.device.type == "cpu"
    ids = torch.tensor([[3, 14, 15, 92, 65]])
    with torch.no_grad():
        assert torch.equal(llm(ids).logits, parts["llm"](ids).logits)
        t5 = torch.tensor([[1, 7, 0]])
        assert torch.equal(
            empty["text_encoder"](input_ids=t5).last_hidden_state, parts["text_encoder"](input_ids=t5).last_hidden_state
        )


def test_modules_built_on_the_meta_device_get_rotary_buffers_rebuilt(saved) -> None:
    from audiostory_cli.planner.reasoner import build_llm

    folder, parts, _ = saved
    llm = build_llm(tiny_dims().reasoner, VOCAB, torch.float32, device="meta")
    assert llm.model.rotary_emb.inv_freq.device.type == "meta"
    load_parts_strict(folder, {"llm": llm})
    assert llm.model.rotary_emb.inv_freq.device.type == "cpu"
    ids = torch.tensor([[3, 14, 15]])
    with torch.no_grad():
        assert torch.equal(llm(ids).logits, parts["llm"](ids).logits)


def test_load_with_dtype_casts_while_reading(saved) -> None:
    folder, _, _ = saved
    empty = _empty_small()
    load_parts_strict(folder, {"bridge": empty["bridge"]}, dtype={"bridge": torch.bfloat16})
    assert empty["bridge"].projector[0].weight.dtype == torch.bfloat16


def test_missing_part_and_wrong_shapes_are_reported_together(saved, tmp_path) -> None:
    folder, _, _ = saved
    with pytest.raises(WeightsError, match="no 'dit' weights"):
        load_parts_strict(folder, {"dit": nn.Linear(2, 2)})
    dims = tiny_dims()
    from audiostory_cli.planner.bridge import Bridge

    wider = Bridge(dataclasses.replace(dims.bridge, projector_hidden=dims.bridge.projector_hidden * 2))
    with pytest.raises(CheckpointKeyError) as err:
        load_parts_strict(folder, {"bridge": wider, "llm": nn.Linear(2, 2)})
    message = str(err.value)
    assert "bridge.projector.0.weight" in message and "shape mismatch" in message
    assert "llm.weight" in message and "unexpected" in message


def test_save_refuses_to_overwrite_without_force_and_never_replaces_other_folders(saved, tmp_path) -> None:
    folder, parts, _ = saved
    with pytest.raises(OutputExistsError, match="--force"):
        save_model_folder(folder, {"bridge": parts["bridge"]}, tiny_dims(), INFO)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a model folder"):
        save_model_folder(precious, {"bridge": parts["bridge"]}, tiny_dims(), INFO, force=True)
    assert (precious / "notes.txt").read_text() == "mine"


def test_force_replaces_atomically_and_failures_leave_no_trace(tmp_path) -> None:
    parts = _small_parts()
    target = tmp_path / "m"
    save_model_folder(target, {"bridge": parts["bridge"]}, tiny_dims(), INFO)
    save_model_folder(
        target,
        {"llm": parts["llm"]},
        tiny_dims(),
        INFO,
        force=True,
        write_extra=lambda tmp: (tmp / "tokenizer").mkdir(),
    )
    meta = read_sidecar(target)
    assert set(meta.parts) == {"llm"} and meta.tokenizer == "tokenizer"

    def boom(tmp) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        save_model_folder(target, {"bridge": parts["bridge"]}, tiny_dims(), INFO, force=True, write_extra=boom)
    assert set(read_sidecar(target).parts) == {"llm"}  # the old folder is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_save_casts_dtype_and_records_it(tmp_path) -> None:
    parts = _small_parts()
    meta = save_model_folder(
        tmp_path / "m", parts, tiny_dims(), INFO, dtype=torch.bfloat16, part_dtypes={"text_encoder": torch.float32}
    )
    assert meta.parts["llm"].dtype == "bfloat16" and meta.parts["text_encoder"].dtype == "float32"
    assert read_sidecar(tmp_path / "m").dtype == "mixed"


def test_meta_tensors_cannot_be_saved(tmp_path) -> None:
    with pytest.raises(WeightsError, match="meta device"):
        save_model_folder(tmp_path / "m", {"bridge": _empty_small()["bridge"]}, tiny_dims(), INFO)
    assert not (tmp_path / "m").exists()


def test_sidecar_errors_are_clear(tmp_path) -> None:
    with pytest.raises(ModelError, match="not a model folder"):
        read_sidecar(tmp_path)
    (tmp_path / "audiostory.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        read_sidecar(tmp_path)
    (tmp_path / "audiostory.json").write_text(json.dumps({"format": "audiostory-model", "format_version": 99}))
    with pytest.raises(WeightsError, match="newer audiostory"):
        read_sidecar(tmp_path)


def test_empty_weights_keeps_ties_and_real_buffers() -> None:
    with empty_weights():
        parts = build_parts(tiny_dims(), VOCAB)
    llm = parts["llm"]
    assert llm.lm_head.weight is llm.model.embed_tokens.weight
    assert tie_groups(llm) == [["model.embed_tokens.weight", "lm_head.weight"]]
    assert tie_groups(parts["text_encoder"]) == [["shared.weight", "encoder.embed_tokens.weight"]]
    assert all(p.device.type == "meta" for m in parts.values() for p in m.parameters())
    assert llm.model.rotary_emb.inv_freq.device.type == "cpu"


def test_full_model_dims_round_trip_through_the_sidecar(tmp_path) -> None:
    meta = save_model_folder(tmp_path / "m", {"bridge": nn.Linear(2, 2)}, ModelDims(), INFO)
    assert read_sidecar(meta.path).dims == ModelDims()


def test_key_errors_carry_their_keys_as_fields_and_merge_every_part() -> None:
    plain = CheckpointKeyError("bad source")
    assert (plain.missing, plain.unexpected, plain.mismatched, plain.conflicts) == ([], [], [], [])
    llm = CheckpointKeyError("llm", missing=["llm.a"], mismatched=["llm.b"])
    dit = CheckpointKeyError("dit", unexpected=("dit.c",), conflicts=["dit.d"])
    merged = merge_key_errors([llm, plain, dit])
    assert (merged.missing, merged.unexpected, merged.mismatched, merged.conflicts) == (
        ["llm.a"],
        ["dit.c"],
        ["llm.b"],
        ["dit.d"],
    )
    assert "1 missing: llm.a" in str(merged) and "1 tied weights differ: dit.d" in str(merged)
