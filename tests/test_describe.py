"""`audiostory describe`: refuses models without trained understanding weights; with them (a tiny random model
flagged as trained), captions or answers end to end, as text or --json."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from audiostory_cli.app.understand import DEFAULT_QUESTION, describe_audio, understanding_precheck
from audiostory_cli.audio.input import read_input_audio
from audiostory_cli.cli import app
from audiostory_cli.errors import ModelError
from audiostory_cli.model import save_model, tiny_random_model
from audiostory_cli.planner.tokens import encode_text
from tests.test_continue_api import input_signal

runner = CliRunner()
REFUSAL = "no trained audio understanding (resampler) weights, so it cannot describe audio; train stage 2"


def listening_model(*, silent_newline: bool = True):
    """tiny-random flagged as having a trained resampler. Its random LLM would only repeat the prompt's last
    token (a newline, i.e. an empty answer); zeroing that embedding makes it say something."""
    model = tiny_random_model()
    model.resampler_trained = True
    if silent_newline:
        newline = encode_text(model.tokenizer, "\n")[0]
        with torch.no_grad():
            model.llm.model.embed_tokens.weight[newline] = 0.0
    return model


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("describe") / "clip.wav"
    sf.write(str(path), input_signal(44_100, 2.0, 2), 44_100, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def listening_folder(tmp_path_factory):
    return save_model(listening_model(), tmp_path_factory.mktemp("models") / "listener")


def test_refuses_a_model_without_understanding_before_loading(clip):
    result = runner.invoke(app, ["describe", str(clip), "--model", "tiny-random"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and REFUSAL in errors[0]
    assert "model tiny-random on" not in result.stderr and result.stdout == ""


def test_api_refuses_too(clip):
    with pytest.raises(ModelError, match=re.escape(REFUSAL)):
        describe_audio(read_input_audio(clip), tiny_random_model())


def test_precheck_reads_the_sidecar(tmp_path, listening_folder):
    assert understanding_precheck(str(listening_folder)) is None
    deaf = save_model(tiny_random_model(), tmp_path / "deaf")
    assert "no trained audio understanding" in understanding_precheck(str(deaf))
    assert "no trained audio understanding" in understanding_precheck("tiny-random")


def test_describe_json_end_to_end(clip, listening_folder):
    result = runner.invoke(
        app, ["describe", str(clip), "--model", str(listening_folder), "--json", "--max-tokens", "8", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["audio"] == str(clip) and summary["question"] == DEFAULT_QUESTION
    assert summary["answer"].strip() and summary["tokens"] == 8
    assert summary["seconds"] == pytest.approx(2.0) and summary["heard_seconds"] == pytest.approx(2.0)


def test_describe_answers_a_question_as_text(clip, listening_folder):
    result = runner.invoke(
        app,
        [
            "describe",
            str(clip),
            "-m",
            str(listening_folder),
            "-q",
            "Is there a dog?",
            "--max-tokens",
            "4",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() and "{" not in result.stdout


def test_an_empty_answer_is_an_error(clip):
    with pytest.raises(ModelError, match="gave an empty answer"):
        describe_audio(read_input_audio(clip), listening_model(silent_newline=False), max_new_tokens=3)


def test_bad_audio_and_question_are_one_line_errors(tmp_path, clip):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    result = runner.invoke(app, ["describe", str(text), "--model", "tiny-random"])
    assert result.exit_code == 1 and "not audio at all" in result.stderr
    result = runner.invoke(app, ["describe", str(clip), "--model", "tiny-random", "--question", "  "])
    assert result.exit_code == 2 and "--question is empty" in result.stderr
    assert np.isfinite(sf.read(str(clip))[0]).all()


def test_a_trained_resampler_stays_marked_when_its_folder_is_saved_again(tmp_path):
    """A model loaded from a folder that says ``resampler_trained: false`` and then trained (stage 2) must be saved
    as trained: the flag inherited in ``extra`` once overrode it, and the demo build lost it that way."""
    from audiostory_cli.model import load_model_folder
    from audiostory_cli.runtime import make_runtime

    save_model(tiny_random_model(), tmp_path / "base")
    model = load_model_folder(tmp_path / "base", make_runtime("cpu"))
    assert model.extra["resampler_trained"] is False and not model.resampler_trained
    model.resampler_trained = True  # what stage 2 does
    save_model(model, tmp_path / "trained")
    assert json.loads((tmp_path / "trained" / "audiostory.json").read_text())["extra"]["resampler_trained"] is True
    assert understanding_precheck(str(tmp_path / "trained")) is None
