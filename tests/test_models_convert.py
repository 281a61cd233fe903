"""`models convert`: official-layout source folders → our model folder, loaded back with identical outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from audiostory_cli.config import tiny_dims
from audiostory_cli.errors import InputError, UsageError
from audiostory_cli.weights import convert as convert_module
from audiostory_cli.weights.checkpoint import empty_weights, load_parts_strict, read_sidecar, verify_model_folder
from audiostory_cli.weights.convert import classify_source, classify_sources, convert_official

from .test_models_official import OfficialFixture, build_parts, make_official

CONFIG_YAML = """\
llm_model:
  _target_: src.models.mllm.peft_models.get_peft_model_with_resize_embedding
  peft_config: {_target_: peft.LoraConfig, r: 4, lora_alpha: 8}
agent_model:
  t5_feature_scale: 10.0
  model_dims: 64
  whisper_resampler_llava: {token_num: 4, ori_embed_dim: 32, tgt_embed_dim: 64}
train_dataset:
  datapipes:
    - num_t5_out_tokens: 8
      num_aud_out_tokens: 2
"""


@pytest.fixture(scope="module")
def tokenizer():
    from audiostory_cli.planner.tokens import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def fx(tokenizer) -> OfficialFixture:
    return make_official(vocab=len(tokenizer), seed=7)


def write_sources(root: Path, fx: OfficialFixture) -> dict[str, Path]:
    audiostory, qwen, tangoflux, whisper = (root / n for n in ("AudioStory-3B", "qwen", "TangoFlux", "whisper"))
    for folder in (audiostory, qwen, tangoflux, whisper):
        folder.mkdir(parents=True)
    (audiostory / "config.yaml").write_text(CONFIG_YAML)
    torch.save(fx.official, audiostory / "pytorch_model.bin")
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    save_file({k: v.contiguous() for k, v in fx.vae.items()}, str(tangoflux / "vae.safetensors"))
    (tangoflux / "config.json").write_text(json.dumps({"num_layers": 1, "num_single_layers": 1}))
    (whisper / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    save_file({k: v.contiguous() for k, v in fx.whisper.items()}, str(whisper / "model.safetensors"))
    return {"audiostory": audiostory, "qwen": qwen, "tangoflux": tangoflux, "whisper": whisper}


def _builders(tokenizer):
    def build(dims, vocab):
        with empty_weights():
            return build_parts(dims, vocab)

    return {"base_dims": tiny_dims(), "build_parts": build, "build_tokenizer": lambda _qwen: tokenizer}


def test_convert_then_load_gives_identical_outputs(tmp_path, fx, tokenizer) -> None:
    sources = write_sources(tmp_path / "src", fx)
    out = tmp_path / "converted"
    steps: list[int] = []
    meta = convert_official(
        sources, out, dtype="fp32", progress=lambda s, d, t: steps.append(d), **_builders(tokenizer)
    )
    assert steps[-1] == 6
    assert set(meta.parts) == {"llm", "bridge", "dit", "text_encoder", "vae", "audio_encoder"}
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    side = read_sidecar(out)
    assert side.dims.bridge.num_semantic_tokens == 8 and side.vocab_size == len(tokenizer)
    assert side.extra["official_config"]["lora_alpha"] == 8.0
    assert "seedx.input_resampler.latents" in side.extra["ignored"]
    bin_sha = {s.repo: s for s in side.sources}[f"local:{sources['audiostory'].resolve()}"].files
    assert set(bin_sha) == {"config.yaml", "pytorch_model.bin"}
    assert all(c.ok for c in verify_model_folder(out))

    with empty_weights():
        parts = build_parts(side.dims, side.vocab_size)
    load_parts_strict(out, parts)
    ids = torch.tensor([[1, 2, 3, 500, 1000]])
    with torch.no_grad():
        assert torch.equal(parts["llm"](ids).logits, fx.reference["llm"](ids).logits)
    for name, module in parts.items():
        ref = fx.reference[name].state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in module.state_dict().items()), name


def test_fp16_keeps_vae_and_t5_in_fp32(tmp_path, fx, tokenizer) -> None:
    sources = write_sources(tmp_path / "src", fx)
    del sources["whisper"]
    meta = convert_official(sources, tmp_path / "out", dtype="fp16", **_builders(tokenizer))
    assert meta.parts["llm"].dtype == "float16" and meta.parts["dit"].dtype == "float16"
    assert meta.parts["vae"].dtype == "float32" and meta.parts["text_encoder"].dtype == "float32"
    assert "audio_encoder" not in meta.parts and meta.dims.audio_encoder is None
    assert any(k.startswith("audio_encoder.resampler.") for k in read_sidecar(meta.path).extra["ignored"])


def test_convert_refuses_bad_requests(tmp_path, fx, tokenizer) -> None:
    sources = write_sources(tmp_path / "src", fx)
    with pytest.raises(UsageError, match="missing --source for qwen"):
        convert_official({k: v for k, v in sources.items() if k != "qwen"}, tmp_path / "o", **_builders(tokenizer))
    with pytest.raises(UsageError, match="--dtype"):
        convert_official(sources, tmp_path / "o", dtype="int8", **_builders(tokenizer))
    (tmp_path / "exists").mkdir()
    with pytest.raises(UsageError, match="--force"):
        convert_official(sources, tmp_path / "exists", **_builders(tokenizer))


def test_classify_sources(tmp_path, fx) -> None:
    sources = write_sources(tmp_path / "src", fx)
    assert classify_sources(list(sources.values())) == sources
    detok = tmp_path / "Flux_detokenizer"
    detok.mkdir()
    (detok / "config.json").write_text(json.dumps({"num_single_layers": 18}))
    (detok / "model.safetensors").write_bytes(b"")
    assert classify_source(detok) == "tangoflux"
    with pytest.raises(InputError, match="not recognised"):
        classify_source(tmp_path)
    with pytest.raises(UsageError, match="two --source folders"):
        classify_sources([sources["qwen"], sources["qwen"]])


def test_cli_convert_from_source_folders(tmp_path, fx, tokenizer, monkeypatch) -> None:
    from audiostory_cli.cli import app

    sources = write_sources(tmp_path / "src", fx)
    builders = _builders(tokenizer)  # modules come from the real container: audiostory_cli.model.build_model
    monkeypatch.setattr(convert_module, "_full_tokenizer", builders["build_tokenizer"])
    monkeypatch.setattr(convert_module, "full_dims", tiny_dims)
    out = tmp_path / "model"
    args = ["models", "convert", "--out", str(out), "--dtype", "bf16"]
    for folder in sources.values():
        args += ["--source", str(folder)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert read_sidecar(out).parts["bridge"].dtype == "bfloat16"
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.stderr


def test_converted_official_model_plans_and_renders_like_the_official_inference(
    tmp_path, fx, tokenizer, monkeypatch
) -> None:
    from audiostory_cli.app.pipeline import PlanOptions, plan_story
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.planner.api import Planner
    from audiostory_cli.runtime import cpu_runtime

    sources = write_sources(tmp_path / "src", fx)
    (sources["qwen"] / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.05, "top_k": 20}))
    out = tmp_path / "converted"
    convert_official(sources, out, dtype="fp32", **_builders(tokenizer))
    extra = read_sidecar(out).extra
    assert extra["canvas"] == "fixed" and extra["generation"] == {"repetition_penalty": 1.05}
    model = load_model_folder(out, cpu_runtime())
    assert (model.canvas, model.repetition_penalty, model.join) == ("fixed", 1.05, (3.0, "linear"))
    model.extra["random_weights"] = True  # random weights: the plan is scripted from the prompt
    penalties: list[float] = []
    original = Planner.plan

    def spy(self, *args, **kwargs):
        penalties.append(kwargs["sampling"].repetition_penalty)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Planner, "plan", spy)
    story = plan_story("rain, then thunder, then a dog barks", PlanOptions(total_duration=12.0, seed=1), model)
    settings = story.settings
    assert penalties == [1.05]
    assert (settings.canvas, settings.crossfade, settings.crossfade_shape) == ("fixed", 3.0, "linear")
    assert story.generated is not None and story.unedited_events() == len(story.events)
    first = story.events[0]
    assert story.render_length(first) == pytest.approx(first.duration + 3.0)  # duration + 3 s conditioning
    told = PlanOptions(
        total_duration=12.0,
        seed=1,
        canvas="sized",
        repetition_penalty=1.0,
        crossfade_shape="equal-power",
        style="cartoon",
    )
    story = plan_story("rain, then thunder, then a dog barks", told, model)
    from audiostory_cli.styles import get_style

    assert penalties[-1] == 1.0
    assert (story.settings.canvas, story.settings.crossfade_shape) == ("sized", "equal-power")
    assert story.settings.crossfade == get_style("cartoon").crossfade  # a style may change the join


def test_whisper_without_resampler_keys_converts_with_a_note(tmp_path, fx, tokenizer) -> None:
    from audiostory_cli.weights.convert import NOTE_NO_RESAMPLER, RESAMPLER_PREFIX

    lacking = {k: v for k, v in fx.official.items() if not k.startswith(RESAMPLER_PREFIX)}
    assert len(lacking) < len(fx.official)
    fixture = OfficialFixture(dims=fx.dims, official=lacking, whisper=fx.whisper, vae=fx.vae, reference=fx.reference)
    sources = write_sources(tmp_path / "src", fixture)
    meta = convert_official(sources, tmp_path / "out", dtype="fp32", **_builders(tokenizer))
    assert "audio_encoder" not in meta.parts and meta.dims.audio_encoder is None
    assert NOTE_NO_RESAMPLER in read_sidecar(meta.path).extra["notes"]
    # present resampler keys still load strictly: one of the four missing is an error naming it
    partial = {k: v for k, v in fx.official.items() if not k.endswith("aud_projector.0.bias")}
    sources = write_sources(tmp_path / "src2", OfficialFixture(fx.dims, partial, fx.whisper, fx.vae, fx.reference))
    from audiostory_cli.errors import CheckpointKeyError

    with pytest.raises(CheckpointKeyError, match="aud_projector.0.bias"):
        convert_official(sources, tmp_path / "out2", dtype="fp32", **_builders(tokenizer))


def test_the_conversion_notes_are_printed(tmp_path, fx, tokenizer, monkeypatch) -> None:
    from audiostory_cli.cli import app
    from audiostory_cli.weights.convert import RESAMPLER_PREFIX

    lacking = {k: v for k, v in fx.official.items() if not k.startswith(RESAMPLER_PREFIX)}
    sources = write_sources(tmp_path / "src", OfficialFixture(fx.dims, lacking, fx.whisper, fx.vae, fx.reference))
    builders = _builders(tokenizer)
    monkeypatch.setattr(convert_module, "_full_tokenizer", builders["build_tokenizer"])
    monkeypatch.setattr(convert_module, "full_dims", tiny_dims)
    args = ["models", "convert", "--out", str(tmp_path / "model")]
    for folder in sources.values():
        args += ["--source", str(folder)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "note: the AudioStory checkpoint has no whisper_resampler_llava weights" in " ".join(result.stderr.split())
