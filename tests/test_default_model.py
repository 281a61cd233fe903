"""With no --model: audiostory-3b when its weights are here, else the bundled demo with one notice line."""

from __future__ import annotations

from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story import StoryFolder
from audiostory_cli.weights import download, registry
from audiostory_cli.weights.download import resolve_default_model
from audiostory_cli.weights.registry import DEMO_MODEL, OFFICIAL_MODEL

runner = CliRunner()
DEMO_TOML = """
name = "demo"
kind = "bundled"
folder = "demo"
description = "test demo"
licence = "Apache-2.0"
"""


def _bundle_demo(models_dir) -> None:
    from audiostory_cli.model import build_model, save_model
    from audiostory_cli.planner.tokens import build_tiny_tokenizer
    from tests.test_codec import tiny_spectral_dims

    (models_dir / "demo.toml").write_text(DEMO_TOML)
    tokenizer = build_tiny_tokenizer()
    model = build_model(tiny_spectral_dims(), len(tokenizer), device="cpu", name=DEMO_MODEL)
    model.tokenizer = tokenizer
    save_model(model, models_dir / "demo", info_extra={"random_weights": True})


def test_without_weights_or_a_demo_the_official_model_is_the_default(models_dir):
    assert resolve_default_model() == download.DefaultModel(OFFICIAL_MODEL, None)
    (models_dir / "demo.toml").write_text(DEMO_TOML)  # registered, but its folder is not there
    assert resolve_default_model().name == OFFICIAL_MODEL


def test_the_bundled_demo_stands_in_until_the_official_weights_are_here(models_dir):
    _bundle_demo(models_dir)
    chosen = resolve_default_model()
    assert chosen.name == DEMO_MODEL
    assert chosen.notice and f"audiostory models download {OFFICIAL_MODEL}" in chosen.notice
    converted = download.converted_path(registry.get_model_spec(OFFICIAL_MODEL))
    converted.mkdir(parents=True)
    (converted / registry.SIDECAR_NAME).write_text("{}")
    assert resolve_default_model() == download.DefaultModel(OFFICIAL_MODEL, None)


def test_tell_without_model_uses_the_demo_and_says_so_once(models_dir, tmp_path):
    _bundle_demo(models_dir)
    out = tmp_path / "story"
    result = runner.invoke(
        app,
        [
            "tell",
            "rain, then a dog barks",
            "--duration",
            "2",
            "--steps",
            "1",
            "--seed",
            "3",
            "--yes",
            "--out",
            str(out),
            "--cues",
            "story",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(f"audiostory models download {OFFICIAL_MODEL}") == 1
    story = StoryFolder(out).load()
    assert story.model == DEMO_MODEL and all(e.status == "rendered" for e in story.events)
    explicit = runner.invoke(
        app,
        [
            "tell",
            "rain",
            "--duration",
            "2",
            "--model",
            "tiny-random",
            "--steps",
            "1",
            "--yes",
            "--out",
            str(tmp_path / "explicit"),
            "--cues",
            "story",
        ],
    )
    assert explicit.exit_code == 0, explicit.output
    assert "models download" not in explicit.output


def test_continue_and_describe_without_model_use_the_demo_too(models_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    _bundle_demo(models_dir)
    clip = tmp_path / "in.wav"
    t = np.arange(3 * 16_000) / 16_000
    sf.write(clip, 0.2 * np.sin(2 * np.pi * 440 * t), 16_000)
    out = tmp_path / "continued"
    result = runner.invoke(
        app,
        ["continue", str(clip), "thunder rolls", "--duration", "2", "--steps", "1", "--yes", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(f"audiostory models download {OFFICIAL_MODEL}") == 1
    assert StoryFolder(out).load().model == DEMO_MODEL
    described = runner.invoke(app, ["describe", str(clip)])
    # the test's stand-in demo has no trained understanding: the command names the demo and says why it refuses
    assert f"audiostory models download {OFFICIAL_MODEL}" in described.output
    assert DEMO_MODEL in described.output and "Traceback" not in described.output
