"""`audiostory eval`: caption-to-class mapping, the scores' structure on tiny-random, and the CLI shell."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.demo.eval import (
    EvalOptions,
    caption_class,
    eval_stories,
    evaluate,
    relative_duration_error,
    story_options_up_to,
)
from audiostory_cli.foley.bank import CLASS_NAMES, caption_for, sample_params
from audiostory_cli.foley.corpus import StoryOptions

runner = CliRunner()
SHORT = StoryOptions(min_events=2, max_events=2, min_total=3.0, max_total=3.6)


@pytest.fixture(scope="module")
def small_classifier():
    from audiostory_cli.foley.classifier import train_classifier

    return train_classifier(n_per_class=2, seed=3)


@pytest.fixture(scope="module")
def tiny():
    from audiostory_cli.model import tiny_random_model
    from audiostory_cli.runtime import make_runtime

    runtime = make_runtime("cpu")
    return tiny_random_model().place(runtime), runtime


def test_caption_class_names_every_class_from_fresh_captions():
    rng = np.random.default_rng(11)
    for _ in range(40):
        for name in CLASS_NAMES:
            caption = caption_for(name, sample_params(rng, name), rng)
            assert caption_class(caption) == name, caption
    assert caption_class("Generate an elaborate audio piece") is None


def test_relative_duration_error():
    assert relative_duration_error([2.0, 3.0], [2.0, 3.0]) == 0.0
    assert relative_duration_error([2.2, 3.0, 9.0], [2.0, 3.0]) == pytest.approx(0.05)
    assert math.isinf(relative_duration_error([], [1.0]))


def test_eval_stories_are_deterministic_and_held_out():
    options = EvalOptions(stories=3, seed=5, story_options=SHORT)
    first, second = eval_stories(options), eval_stories(options)
    assert [s.instruction for s in first] == [s.instruction for s in second]
    assert all(s.split == "test" and 3.0 <= s.total_duration <= 3.6 for s in first)


def test_story_options_up_to_validates():
    assert story_options_up_to(20.0).max_total == 20.0
    assert story_options_up_to(10.0).min_total == 10.0
    from audiostory_cli.errors import UsageError

    with pytest.raises(UsageError, match="--max-duration 5 is out of range; use 10 to"):
        story_options_up_to(5.0)  # the corpus's stories start at 10 s


def test_evaluate_tiny_random_two_stories(tiny, small_classifier, tmp_path):
    model, runtime = tiny
    options = EvalOptions(stories=2, steps=1, story_options=SHORT)
    report = evaluate(model, runtime, options, classifier=small_classifier, work_dir=tmp_path)
    assert len(report.stories) == 2
    assert list(tmp_path.iterdir()) == []  # the scratch renders are gone
    for story in report.stories:
        assert len(story.audio.heard_classes) == len(story.plan.reference_classes) == 2
        assert set(story.audio.heard_classes) <= set(CLASS_NAMES)
        assert story.baseline is not None and len(story.baseline.heard_classes) == 2
        for audio in (story.audio, story.baseline):
            assert 0.0 <= audio.class_accuracy <= 1.0
            assert audio.length_exact and audio.true_peak_ok
            assert math.isfinite(audio.seam) and audio.seam >= 0.0
    summary = report.summary()
    for value in summary["plan"].values():
        assert value is not None and value >= 0.0
    for key in ("event_count_accuracy", "class_sequence_exact", "event_class_accuracy"):
        assert 0.0 <= summary["plan"][key] <= 1.0
    assert set(summary["audio"]) == {"planner", "baseline"}
    assert summary["audio"]["planner"]["length_exact"] == 1.0
    heard_in_order = [tuple(s.audio.heard_classes) == s.plan.reference_classes for s in report.stories]
    assert summary["audio"]["planner"]["class_order_exact"] == sum(heard_in_order) / len(heard_in_order)
    faithful = [
        sum(h == p for h, p in zip(s.audio.heard_classes, s.plan.planned_classes, strict=True)) / 2
        for s in report.stories
        if len(s.plan.planned_classes) == 2
    ]
    got = summary["audio"]["planner"]["event_heard_as_planned"]
    assert got == (pytest.approx(sum(faithful) / len(faithful)) if faithful else None)
    assert "event_heard_as_planned" not in summary["audio"]["baseline"]
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["stories"] == 2 and len(data["per_story"]) == 2 and data["model"] == "tiny-random"

    from rich.console import Console

    from audiostory_cli.cli.eval import results_table

    console = Console(width=120, record=True)
    console.print(results_table(report))
    text = console.export_text()
    assert "rendered event class accuracy" in text and "direct baseline" in text
    assert "heard as planned" in text


def test_cli_eval_json_and_out_file(tmp_path, monkeypatch, small_classifier):
    import audiostory_cli.foley.classifier as classifier

    monkeypatch.setattr(classifier, "load_or_train", lambda **_: small_classifier)
    out = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "tiny-random",
            "--stories",
            "1",
            "--steps",
            "1",
            "--max-duration",
            "10",
            "--no-baseline",
            "--device",
            "cpu",
            "--json",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["stories"] == 1 and "baseline" not in data["audio"]
    assert json.loads(out.read_text())["plan"] == data["plan"]


def test_cli_eval_rejects_bad_options():
    result = runner.invoke(app, ["eval", "--model", "tiny-random", "--split", "nope"])
    assert result.exit_code != 0 and "--split" in result.output
    result = runner.invoke(app, ["eval", "--model", "tiny-random", "--stories", "0"])
    assert result.exit_code != 0 and "--stories" in result.output


def test_cli_eval_prints_its_table_on_stdout(monkeypatch, small_classifier):
    import audiostory_cli.foley.classifier as classifier

    monkeypatch.setattr(classifier, "load_or_train", lambda **_: small_classifier)
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "tiny-random",
            "--stories",
            "1",
            "--steps",
            "1",
            "--max-duration",
            "10",
            "--no-baseline",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "event count accuracy" in result.stdout and "event count accuracy" not in result.stderr
