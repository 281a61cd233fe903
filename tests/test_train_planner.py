"""Planner text pretraining (`audiostory train planner`): text-only stories, whole-LLM training, resume, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.config import tiny_dims
from audiostory_cli.demo.recipe import build_corpus_tokenizer, init_model_folder, manifest_texts
from audiostory_cli.errors import TrainingError
from audiostory_cli.foley.corpus import StoryOptions, write_story_texts
from audiostory_cli.train.checkpoint import list_checkpoints
from audiostory_cli.train.manifest import load_story_texts
from audiostory_cli.train.planner_text import PlannerTrainConfig, pretrain_planner

runner = CliRunner()
SHORT = StoryOptions(max_events=3, max_total=12.0, duration_hints=True)


@pytest.fixture(scope="module")
def text_stories(tmp_path_factory):
    return write_story_texts(
        tmp_path_factory.mktemp("text") / "stories.jsonl", split="train", n_stories=6, options=SHORT
    )


@pytest.fixture(scope="module")
def init_folder(text_stories, tmp_path_factory):
    tokenizer = build_corpus_tokenizer(list(manifest_texts([text_stories])), bpe_vocab=300)
    return init_model_folder(tmp_path_factory.mktemp("init") / "init", tokenizer, dims=tiny_dims(), seed=1)


def test_text_stories_are_deterministic_and_hold_no_audio(text_stories, tmp_path):
    again = write_story_texts(tmp_path / "again.jsonl", split="train", n_stories=6, options=SHORT)
    assert again.read_text() == text_stories.read_text()
    rows = [json.loads(line) for line in text_stories.read_text().splitlines()]
    assert len(rows) == 6 and all("audio" not in r and all("audio" not in e for e in r["events"]) for r in rows)
    stories = load_story_texts(text_stories)
    assert [len(s.events) for s in stories] == [len(r["events"]) for r in rows]
    assert stories[0].instruction == rows[0]["instruction"] and "Event 1:" not in stories[0].storyline


def test_load_story_texts_names_every_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"instruction": "Rain falls.", "events": [{"caption": "rain", "duration": 2.0}]}
    lines = [
        json.dumps(good),
        "{oops",
        json.dumps({"instruction": "x", "events": [{"duration": 1.0}]}),
        json.dumps({"instruction": "x", "events": [{"caption": "long", "duration": 90.0}]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainingError) as error:
        load_story_texts(path)
    message = str(error.value)
    assert "3 problem(s)" in message and "bad.jsonl:2" in message and "bad.jsonl:3" in message
    assert "caption" in message and "longer than one DiT window" in message
    with pytest.raises(TrainingError, match="not found"):
        load_story_texts(tmp_path / "missing.jsonl")


def _tensors(folder):
    from safetensors.torch import load_file

    return {p.name: load_file(p) for p in sorted(folder.glob("*.safetensors"))}


@pytest.mark.slow
def test_pretraining_trains_only_the_llm_and_lowers_the_loss(init_folder, text_stories, tmp_path):
    result = pretrain_planner(
        PlannerTrainConfig(
            model=init_folder,
            stories=text_stories,
            out=tmp_path / "p",
            steps=25,
            batch_size=2,
            lr=3e-3,
            warmup=2,
            device="cpu",
        )
    )
    assert result.first_loss is not None and result.final_loss < 0.75 * result.first_loss
    before, after = _tensors(init_folder), _tensors(result.out)
    assert before.keys() == after.keys()
    for name in before:
        same = all(torch.equal(before[name][k], after[name][k]) for k in before[name])
        assert same == (name != "llm.safetensors"), name
    assert [step for step, _ in list_checkpoints(result.out)] == [25]  # the engine's one format, newest kept
    sidecar = json.loads((result.out / "audiostory.json").read_text())
    assert sidecar["extra"]["planner_pretraining"]["n_stories"] == 6


@pytest.mark.slow
def test_an_interrupted_run_resumes_bitwise(init_folder, text_stories, tmp_path):
    def config(out, **kw):
        return PlannerTrainConfig(
            model=init_folder,
            stories=text_stories,
            out=out,
            steps=4,
            batch_size=2,
            warmup=1,
            save_every=2,
            device="cpu",
            **kw,
        )

    whole = pretrain_planner(config(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop_at_three(label, done, total):
        if label == "train" and done == 3:
            raise Stop

    with pytest.raises(Stop):
        pretrain_planner(config(tmp_path / "broken"), progress=stop_at_three)
    [(step, checkpoint)] = list_checkpoints(tmp_path / "broken")
    assert step == 2 and not (checkpoint / "adapter_model.safetensors").exists()  # every LLM weight, no LoRA
    with pytest.raises(TrainingError, match="--resume"):
        pretrain_planner(config(tmp_path / "broken"))
    weights = checkpoint / "trainable.safetensors"
    saved = weights.read_bytes()
    weights.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(TrainingError, match="unreadable"):
        pretrain_planner(config(tmp_path / "broken", resume=True))
    weights.write_bytes(saved)
    resumed = pretrain_planner(config(tmp_path / "broken", resume=True))
    assert resumed.resumed_from == 2
    a, b = _tensors(whole.out)["llm.safetensors"], _tensors(resumed.out)["llm.safetensors"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TrainingError, match="finished run"):
        pretrain_planner(config(tmp_path / "broken", resume=True))


@pytest.mark.slow
def test_train_planner_command(init_folder, text_stories, tmp_path):
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            "train",
            "planner",
            "--model",
            str(init_folder),
            "--stories",
            str(text_stories),
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--warmup",
            "1",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(out)) and (out / "audiostory.json").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    result = runner.invoke(
        app,
        [
            "train",
            "planner",
            "--model",
            str(init_folder),
            "--stories",
            str(bad),
            "--out",
            str(tmp_path / "o2"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "bad.jsonl:1" in result.output and "Traceback" not in result.output
