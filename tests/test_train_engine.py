"""The one training engine: every kind of training (stages, planner, VAE) writes the same checkpoint format and
resumes bitwise; `train` has one subcommand per kind, with `train --stage N` as the alias of `train stage N`.

Stage resume: tests/test_train_run.py::test_resume_gives_the_same_weights_bitwise; planner resume:
tests/test_train_planner.py::test_an_interrupted_run_resumes_bitwise; the VAE's (with its discriminator) here.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.cli.train import stage_alias
from audiostory_cli.config import tiny_dims
from audiostory_cli.errors import TrainingError
from audiostory_cli.foley.corpus import write_manifests
from audiostory_cli.train.checkpoint import FORMAT_VERSION, STATE_FILE, list_checkpoints

runner = CliRunner()


def test_stage_alias_reads_train_dash_dash_stage_as_the_stage_subcommand():
    assert stage_alias(["--stage", "2", "--out", "x"]) == ["stage", "2", "--out", "x"]
    assert stage_alias(["--model", "m", "--stage=1-warm", "--dry-run"]) == [
        "stage",
        "1-warm",
        "--model",
        "m",
        "--dry-run",
    ]
    assert stage_alias(["planner", "--stage", "2"]) == ["planner", "--stage", "2"]  # not an alias after a name
    assert stage_alias(["--help"]) == ["--help"] and stage_alias([]) == []


def test_train_stage_and_its_alias_run_the_same_command():
    for args in (
        ["train", "stage", "1", "--dry-run", "--model", "tiny-random"],
        ["train", "--stage", "1", "--dry-run", "--model", "tiny-random"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "stage 1" in result.stdout and "all" in result.stdout
    ignored = runner.invoke(app, ["train", "--stage", "2", "vae"])  # used to ignore --stage silently
    assert ignored.exit_code == 2 and "unexpected extra argument" in ignored.output.lower()
    other = runner.invoke(app, ["train", "planner", "--stage", "2"])
    assert other.exit_code == 2 and "--stage" in other.output


@pytest.fixture(scope="module")
def vae_world(tmp_path_factory):
    from audiostory_cli.demo.recipe import build_corpus_tokenizer, init_model_folder, manifest_texts

    root = tmp_path_factory.mktemp("engine")
    data = write_manifests(root / "train", split="train", n_stories=1, n_clips=4, sr=44_100, clip_seconds=(0.5, 0.8))
    tokenizer = build_corpus_tokenizer(list(manifest_texts([data.clips])), bpe_vocab=300)
    return data, init_model_folder(root / "init", tokenizer, dims=tiny_dims(), seed=1)


@pytest.mark.slow
def test_an_interrupted_adversarial_vae_run_resumes_bitwise(vae_world, tmp_path):
    from audiostory_cli.train.vae import VAETrainConfig, pretrain_vae

    data, init = vae_world

    def config(out, **kw):
        return VAETrainConfig(
            model=init,
            clips=data.clips,
            out=out,
            steps=4,
            batch_size=1,
            segment_seconds=0.1,
            adversarial_weight=1.0,
            adversarial_start=1,
            check_clips=0,
            save_every=2,
            device="cpu",
            **kw,
        )

    whole = pretrain_vae(config(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop_at_three(label, done, total):
        if label == "train" and done == 3:
            raise Stop

    with pytest.raises(Stop):
        pretrain_vae(config(tmp_path / "broken"), progress=stop_at_three)
    [(step, checkpoint)] = list_checkpoints(tmp_path / "broken")
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert step == 2 and state["task"] == "vae" and state["format_version"] == FORMAT_VERSION
    assert (checkpoint / "task_state.pt").is_file()  # the discriminator and its optimizer
    with pytest.raises(TrainingError, match="changed"):
        pretrain_vae(config(tmp_path / "broken", resume=True, lr=1e-3))
    resumed = pretrain_vae(config(tmp_path / "broken", resume=True))
    assert resumed.resumed_from == 2
    a, b = (load_file(str(r.out / "vae.safetensors")) for r in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads(line) for line in (resumed.out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and "loss/adversarial" in metrics[-1]
