"""``train --fsdp`` on two CPU processes (torchrun, gloo): sharded training gives the DDP run's weights, and a
run resumed from a sharded checkpoint ends bitwise equal to the uninterrupted one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiostory_cli.cli import app

runner = CliRunner()
OPTIONS = [
    "--stage",
    "2",
    "--model",
    "tiny-random",
    "--steps",
    "4",
    "--batch-size",
    "2",
    "--grad-accum",
    "2",
    "--device",
    "cpu",
    "--lr-llm",
    "2e-2",
    "--lr-dit",
    "1e-2",
    "--warmup",
    "0",
    "--schedule",
    "constant",
    "--save-every",
    "2",
    "--keep-checkpoints",
    "0",
]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from audiostory_cli.foley.corpus import StoryOptions, write_manifests

    root = tmp_path_factory.mktemp("fsdp")
    paths = write_manifests(
        root / "foley",
        split="train",
        n_stories=1,
        n_clips=4,
        sr=44_100,
        seed=0,
        options=StoryOptions(min_events=2, max_events=2, min_total=2.0, max_total=2.4, min_event=1.0),
        clip_seconds=(1.0, 1.2),
    )
    return paths.clips, paths.qa


def _launch(out: Path, manifests: tuple[Path, Path], features: Path, *extra: str) -> None:
    clips, qa = manifests
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "audiostory_cli",
        "train",
        *OPTIONS,
        "--clips",
        str(clips),
        "--qa",
        str(qa),
        "--out",
        str(out),
        "--cache-dir",
        str(features),
        *extra,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update({f"{file.stem}/{k}": v for k, v in load_file(file).items()})
    return tensors


@pytest.mark.slow
def test_fsdp_matches_ddp_and_resumes_bitwise(tmp_path, manifests):
    features = tmp_path / "features"
    _launch(tmp_path / "ddp", manifests, features)
    _launch(tmp_path / "fsdp", manifests, features, "--fsdp")
    ddp, fsdp = _weights(tmp_path / "ddp"), _weights(tmp_path / "fsdp")
    assert ddp.keys() == fsdp.keys() and any(k.startswith("audio_encoder/") for k in fsdp)
    checkpoints = tmp_path / "fsdp" / "checkpoints"
    early, late = (load_file(checkpoints / f"step-00000{n}" / "trainable.safetensors") for n in (2, 4))
    assert any(not torch.equal(early[k], late[k]) for k in late)  # the steps moved the weights
    for key in ddp:  # same data, same noise, same clipping: only the reduction order differs
        torch.testing.assert_close(fsdp[key], ddp[key], rtol=1e-4, atol=1e-4, msg=key)

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "fsdp" / "checkpoints" / "step-000002", resumed / "checkpoints" / "step-000002")
    _launch(resumed, manifests, features, "--fsdp", "--resume")
    again = _weights(resumed)
    assert all(torch.equal(again[k], fsdp[k]) for k in fsdp)


def test_fsdp_in_one_process_says_how_to_launch(tmp_path, manifests):
    clips, _ = manifests
    result = runner.invoke(
        app,
        [
            "train",
            "--stage",
            "1",
            "--clips",
            str(clips),
            "--model",
            "tiny-random",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
            "--fsdp",
        ],
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "--fsdp" in result.stderr and "torchrun --nproc_per_node" in result.stderr
