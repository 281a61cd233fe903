"""The accuracy benchmarks (describe, caption renders, plan accuracy, bridge probe, DiT capacity) on tiny models."""

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
@pytest.mark.parametrize(("split", "as_trained"), [("test", False), ("train", False), ("train", True)])
def test_caption_renders_scores_every_clip_and_writes_json(tmp_path, capsys, monkeypatch, split, as_trained):
    from audiostory_cli.app import pipeline
    from audiostory_cli.model import build_model, save_model
    from audiostory_cli.planner.tokens import build_tiny_tokenizer
    from benchmarks import caption_renders
    from tests.test_codec import tiny_spectral_dims

    tokenizer = build_tiny_tokenizer()
    model = build_model(tiny_spectral_dims(), len(tokenizer), device="cpu", name="renderer")
    model.tokenizer = tokenizer
    save_model(model, tmp_path / "renderer", info_extra={"random_weights": True})  # the planner is scripted
    out = tmp_path / "renders.json"
    rendered = []
    render = pipeline.render_story
    monkeypatch.setattr(
        pipeline, "render_story", lambda folder, *a, **k: (rendered.append(folder.load()), render(folder, *a, **k))[1]
    )
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
        *(["--as-trained"] if as_trained else []),
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
    assert report["as_trained"] is as_trained and len(rendered) == 2
    if as_trained:  # the clip exactly as stage 1 serialises it (train.sequences.clip_instruction, no reasoning)
        from audiostory_cli.train.sequences import clip_instruction

        for story in rendered:
            event = story.events[0]
            assert story.reasoning == "" and event.story_detail == "" and story.generated is None
            assert story.instruction == clip_instruction(event.caption, event.duration)


def test_plan_accuracy_scores_the_plans_eval_scores(tmp_path, capsys):
    """The plan-only benchmark plans the same stories as `eval` and scores them the same way, without renders."""
    from audiostory_cli.demo.eval import EvalOptions, evaluate, story_options_up_to
    from audiostory_cli.foley.classifier import train_classifier
    from audiostory_cli.model import tiny_random_model
    from audiostory_cli.runtime import make_runtime
    from benchmarks import plan_accuracy

    out = tmp_path / "plans.json"
    assert plan_accuracy.main(["--model", "tiny-random", "--stories", "2", "--seed", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    runtime = make_runtime("cpu")
    options = EvalOptions(stories=2, seed=3, steps=1, baseline=False, story_options=story_options_up_to(30.0))
    classifier = train_classifier(n_per_class=2, seed=3)
    rendered = evaluate(tiny_random_model().place(runtime), runtime, options, classifier=classifier, work_dir=tmp_path)
    for key, value in rendered.summary()["plan"].items():
        assert report[key] == pytest.approx(value), key
    assert report["stories"] == 2 and "dur err" in capsys.readouterr().out


def test_bridge_probe_reads_a_class_that_is_there_and_not_one_that_is_not(tmp_path, capsys):
    import numpy as np

    from benchmarks import bridge_probe

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 20)
    separable = rng.standard_normal((80, 8)) + 4.0 * np.eye(8)[labels]
    assert bridge_probe.probe_accuracy(separable, labels, 4) == 1.0
    assert bridge_probe.probe_accuracy(rng.standard_normal((80, 8)), labels, 4) < 0.6  # chance is 25 %
    out = tmp_path / "probe.json"
    argv = ["--model", "tiny-random", "--clips", "38", "--out", str(out)]
    assert bridge_probe.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["clips"] == 38 and report["classes"] == 19
    assert all(0.0 <= report[k] <= 1.0 for k in ("semantic", "residual", "fused_mean", "fused_all"))
    assert "semantic" in capsys.readouterr().out


@pytest.mark.slow
def test_dit_capacity_trains_the_dit_it_names_and_scores_its_renders(tmp_path, capsys):
    from benchmarks import dit_capacity

    out = tmp_path / "capacity.json"
    argv = ["--work", str(tmp_path / "work"), "--heads", "2", "--head-dim", "16", "--layers", "1"]
    argv += ["--single-layers", "1", "--clips", "19", "--steps", "2", "--batch-size", "2", "--render-clips", "2"]
    argv += ["--test-clips", "1", "--ema-decay", "0.9", "--out", str(out)]
    assert dit_capacity.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["width"] == 32 and report["dit"]["num_single_layers"] == 1 and report["ema_decay"] == 0.9
    assert 0 < report["dit_parameters"] < 1_000_000 and report["steps"] == 2 and 0 < report["flow_loss"] < 100
    assert len(report["rows_train"]) == 2 and len(report["rows_test"]) == 1
    assert 0.0 <= report["heard_train"] <= 1.0 and 0.0 <= report["heard_test"] <= 1.0
    assert set(report["conditioning"]) == {"0.2", "0.5", "0.8", "0.95"}
    assert "gain" in capsys.readouterr().out

    # --base: the first run's model with its DiT swapped for a wider random one; class-name captions
    argv = ["--work", str(tmp_path / "work"), "--base", report["model"], "--heads", "4", "--head-dim", "16"]
    argv += ["--layers", "1", "--single-layers", "1", "--clips", "19", "--steps", "1", "--batch-size", "2"]
    assert dit_capacity.main([*argv, "--class-captions", "--render-clips", "1", "--out", str(out)]) == 0
    swapped = json.loads(out.read_text())
    assert swapped["width"] == 64 and swapped["base"] == report["model"] and "heard_test" not in swapped
    assert swapped["dit_parameters"] > report["dit_parameters"] and swapped["class_captions"]
    assert [row["caption"] for row in swapped["rows_train"]] == [swapped["rows_train"][0]["class"].replace("_", " ")]
    named = (tmp_path / "work" / "data-19" / "clips-class-captions.jsonl").read_text().splitlines()
    assert len(named) == 19 and all(
        json.loads(line)["caption"] == json.loads(line)["class"].replace("_", " ") for line in named
    )


def test_conditioning_use_compares_own_unconditional_and_other_tokens(tmp_path, capsys, monkeypatch):
    from audiostory_cli.foley.corpus import write_manifests
    from benchmarks import conditioning_use

    monkeypatch.setenv("AUDIOSTORY_CACHE", str(tmp_path / "cache"))
    data = write_manifests(
        tmp_path / "foley", split="train", n_stories=1, n_clips=4, sr=44_100, clip_seconds=(0.5, 0.6)
    )
    out = tmp_path / "use.json"
    argv = ["--model", "tiny-random", "--clips", str(data.clips), "--batches", "1", "--batch-size", "2"]
    assert conditioning_use.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["losses"]) == ["0.2", "0.5", "0.8", "0.95"]
    for row in report["losses"].values():
        assert set(row) == {"own", "unconditional", "other clip"} and all(0 < v < 100 for v in row.values())
        assert row["own"] != row["other clip"]  # two clips' tokens differ, even in a random model
    assert "uncond" in capsys.readouterr().out
