"""benchmarks/describe_accuracy.py: held-out foley clips described by a model and scored by class keywords."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_describe_accuracy_scores_every_clip_and_writes_json(tmp_path, capsys):
    from audiostory_cli.model import build_model, save_model
    from audiostory_cli.planner.tokens import build_tiny_tokenizer
    from benchmarks import describe_accuracy
    from tests.test_codec import tiny_spectral_dims

    tokenizer = build_tiny_tokenizer()
    model = build_model(tiny_spectral_dims(), len(tokenizer), device="cpu", name="listener")
    model.tokenizer = tokenizer
    model.resampler_trained = True  # random weights: it answers nothing useful, and is scored so
    save_model(model, tmp_path / "listener")
    out = tmp_path / "describe.json"
    assert describe_accuracy.main(["--model", str(tmp_path / "listener"), "--clips", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["clips"] == 2 and len(report["rows"]) == 2 and report["named"] == 0.0
    assert {row["class"] for row in report["rows"]} <= set(report["per_class_named"])
    assert "all" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "train"])
def test_caption_renders_scores_every_clip_and_writes_json(tmp_path, capsys, split):
    from audiostory_cli.model import build_model, save_model
    from audiostory_cli.planner.tokens import build_tiny_tokenizer
    from benchmarks import caption_renders
    from tests.test_codec import tiny_spectral_dims

    tokenizer = build_tiny_tokenizer()
    model = build_model(tiny_spectral_dims(), len(tokenizer), device="cpu", name="renderer")
    model.tokenizer = tokenizer
    save_model(model, tmp_path / "renderer", info_extra={"random_weights": True})  # the planner is scripted
    out = tmp_path / "renders.json"
    argv = [
        "--model",
        str(tmp_path / "renderer"),
        "--clips",
        "2",
        "--split",
        split,
        "--guidance",
        "2",
        "--out",
        str(out),
    ]
    assert caption_renders.main(argv) == 0
    report = json.loads(out.read_text())
    assert (
        report["clips"] == 2
        and report["split"] == split
        and report["guidance"] == 2.0
        and 0.0 <= report["heard_as_caption_class"] <= 1.0
    )
    assert all(row["heard"] for row in report["rows"]) and "heard as class" in capsys.readouterr().out
