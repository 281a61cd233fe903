"""The DiT canvas is a property of the model folder: fixed for the official checkpoint (and tiny-random, its
stand-in), sized for what `train` trains; `--canvas` overrides it and the plan records it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.config import CANVAS_FIXED, CANVAS_SIZED, model_canvas
from audiostory_cli.story import StoryFolder
from audiostory_cli.story.plan import Story

runner = CliRunner()


def test_model_canvas_rules() -> None:
    assert model_canvas({"converted_from": "official"}) == CANVAS_FIXED
    assert model_canvas({"training": {}}) == CANVAS_SIZED  # trained before the field existed: sized
    assert model_canvas({"canvas": "fixed", "training": {}}) == CANVAS_FIXED
    with pytest.raises(ValueError, match="must be one of"):
        model_canvas({"canvas": "wide"})


def test_tell_records_the_models_canvas_and_the_override(tmp_path) -> None:
    base = ["--model", "tiny-random", "--steps", "2", "--seed", "1", "--plan-only", "--duration", "4"]
    result = runner.invoke(app, ["tell", "rain then thunder", "--out", str(tmp_path / "a"), *base])
    assert result.exit_code == 0, result.output
    assert StoryFolder(tmp_path / "a").load().settings.canvas == CANVAS_FIXED
    result = runner.invoke(app, ["tell", "rain then thunder", "--out", str(tmp_path / "b"), "--canvas", "sized", *base])
    assert result.exit_code == 0, result.output
    story = StoryFolder(tmp_path / "b").load()
    assert story.settings.canvas == CANVAS_SIZED
    fixed = StoryFolder(tmp_path / "a").load()
    assert story.render_hash(story.events[0]) != fixed.render_hash(fixed.events[0])  # the canvas changes audio
    result = runner.invoke(app, ["tell", "rain", "--out", str(tmp_path / "c"), "--canvas", "wide", *base])
    assert result.exit_code == 2 and "--canvas 'wide'" in result.output
    result = runner.invoke(app, ["tell", "rain", "--out", str(tmp_path / "d"), "--repetition-penalty", "0", *base])
    assert result.exit_code == 2 and "--repetition-penalty 0 is out of range" in result.output
    result = runner.invoke(app, ["tell", "rain", "--out", str(tmp_path / "e"), "--crossfade-shape", "cosine", *base])
    assert result.exit_code == 2 and "--crossfade-shape 'cosine'" in result.output


def test_older_story_files_keep_their_canvas_and_hash(tmp_path) -> None:
    story = Story(prompt="p", total_duration=2.0, events=[])
    data = story.to_dict()
    data["settings"].pop("canvas")
    data["settings"].pop("crossfade_shape")
    data["events"] = [{"index": 1, "start": 0.0, "duration": 2.0, "caption": "rain"}]
    loaded = Story.from_dict(data)
    assert loaded.settings.canvas == CANVAS_SIZED  # what they were rendered with
    event = loaded.events[0]
    old_payload = {  # the hash as written before the canvas existed: old renders stay fresh
        "caption": "rain",
        "story_detail": "",
        "duration": 2.0,
        "render_length": 2.0,
        "seed": 0,
        "model": loaded.model,
        "model_revision": None,
        "steps": 50,
        "guidance": 4.0,
        "sample_rate": 44_100,
        "style": None,
    }
    blob = json.dumps(old_payload, sort_keys=True, ensure_ascii=False).encode("utf-8")
    assert loaded.render_hash(event) == hashlib.sha256(blob).hexdigest()[:16]


def test_sized_canvas_batches_like_single_and_unknown_canvas_is_refused() -> None:
    from audiostory_cli.config import tiny_dims
    from audiostory_cli.errors import UsageError
    from audiostory_cli.generator.dit import build_dit
    from audiostory_cli.generator.render import EventCondition, render_latents
    from audiostory_cli.runtime import cpu_runtime

    torch.manual_seed(0)
    dit = build_dit(tiny_dims().dit)
    events = [EventCondition(torch.randn(8, 32), s, seed) for s, seed in ((0.6, 1), (1.2, 2))]
    kwargs = {"steps": 3, "guidance": 1.0, "uncond": None, "runtime": cpu_runtime()}
    batched = render_latents(dit, events, canvas="sized", **kwargs)
    for event, out in zip(events, batched, strict=True):
        torch.testing.assert_close(out, render_latents(dit, [event], canvas="sized", **kwargs)[0], rtol=0, atol=1e-5)
    fixed = render_latents(dit, events, canvas="fixed", **kwargs)
    assert [f.shape for f in fixed] == [b.shape for b in batched]
    with pytest.raises(UsageError, match="--canvas"):
        render_latents(dit, events, canvas="wide", **kwargs)
