"""Training runs on ``tiny-random`` with procedural foley manifests (4 clips, 4 QA, 2 two-event stories).

Each stage overfits its examples (fixed-noise evaluation loss ends below 30 % of where it started); a resumed
run equals an uninterrupted one bitwise; the output folder is a model ``tell`` uses; the LoRA adapter of a
checkpoint merges and unmerges; the full-size dry run counts the paper's trainable set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.errors import TrainingError, UsageError
from audiostory_cli.train.config import TrainConfig
from audiostory_cli.train.manifest import ManifestSpec
from audiostory_cli.train.stage_task import dry_run, train

FAST = {
    "lr_llm": 2e-2,
    "lr_bridge": 5e-2,
    "lr_dit": 1e-2,
    "warmup": 0,
    "schedule": "constant",
    "cond_dropout": 0.0,
    "batch_size": 4,
    "device": "cpu",
    "model": "tiny-random",
}


@dataclass(frozen=True)
class World:
    root: Path
    clips: Path
    qa: Path
    stories: Path
    features: Path

    def config(self, stage: str, out: Path, data: list[ManifestSpec], **options: Any) -> TrainConfig:
        settings = {**FAST, "cache_dir": self.features, **options}
        return TrainConfig(stage=stage, data=tuple(data), out=out, **settings)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from audiostory_cli.foley.corpus import StoryOptions, write_manifests

    root = tmp_path_factory.mktemp("train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend on a busy 2-core machine
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUDIOSTORY_CACHE", str(root / "cache"))
        env.setenv("HF_HUB_OFFLINE", "1")
        paths = write_manifests(
            root / "foley",
            split="train",
            n_stories=2,
            n_clips=4,
            sr=44_100,
            seed=0,
            options=StoryOptions(min_events=2, max_events=2, min_total=2.0, max_total=2.4, min_event=1.0),
            clip_seconds=(1.0, 1.2),
        )
        yield World(root, paths.clips, paths.qa, paths.stories, root / "features")
    torch.set_num_threads(threads)


def _evaluations(out: Path) -> list[dict[str, float]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        {k.removeprefix("eval/"): v for k, v in r.items() if k.startswith("eval/")}
        for r in lines
        if any(k.startswith("eval/") for k in r)
    ]


def _assert_overfits(out: Path, components: tuple[str, ...]) -> None:
    evaluations = _evaluations(out)
    first, last = evaluations[0], evaluations[-1]
    assert last["loss"] < 0.3 * first["loss"], (first, last)
    for name in components:
        assert last[name] < first[name], (name, first, last)


@pytest.fixture(scope="module")
def stage1(world: World) -> Path:
    """Stage 1 through the CLI: 30 steps on the 4 clips, a checkpoint every 15."""
    out = world.root / "runs" / "stage1"
    args = [
        "train",
        "--stage",
        "1",
        "--clips",
        str(world.clips),
        "--out",
        str(out),
        "--model",
        "tiny-random",
        "--steps",
        "30",
        "--batch-size",
        "4",
        "--lr-llm",
        "2e-2",
        "--lr-bridge",
        "5e-2",
        "--lr-dit",
        "1e-2",
        "--warmup",
        "0",
        "--schedule",
        "constant",
        "--cond-dropout",
        "0",
        "--save-every",
        "15",
        "--eval-every",
        "30",
        "--device",
        "cpu",
        "--cache-dir",
        str(world.features),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(out))
    return out


def test_stage_1_overfits_and_writes_a_run_folder(stage1: Path) -> None:
    _assert_overfits(stage1, ("lm", "bridge", "flow"))
    assert (stage1 / "audiostory.json").is_file() and (stage1 / "t5_tokenizer" / "tokenizer.json").is_file()
    checkpoint = stage1 / "checkpoints" / "step-000030"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "trainable.safetensors",
        "optimizer.pt",
        "state.json",
    ):
        assert (checkpoint / name).is_file(), name
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["stage"] == "1" and state["step"] == 30 and state["base_model"]["ref"] == "tiny-random"
    assert len(state["data_hash"]) == 64
    config = json.loads((stage1 / "train_config.json").read_text())
    trainable = {c["part"]: c["trainable"] for c in config["trainable"]}
    assert trainable["dit"] > 0 and trainable["bridge.fusion"] > 0 and trainable["llm.base"] == 0
    steps = [json.loads(line) for line in (stage1 / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "loss/loss" in r] == list(range(1, 31))
    assert all(r["tokens_per_s"] > 0 and r["lr/llm"] == pytest.approx(2e-2) for r in steps if "loss/loss" in r)


@pytest.mark.parametrize(
    ("stage", "steps"),
    [("1-warm", 30), pytest.param("2", 45, marks=pytest.mark.slow), pytest.param("3", 45, marks=pytest.mark.slow)],
)
def test_each_stage_overfits(world: World, stage: str, steps: int) -> None:
    data = {
        "1-warm": [ManifestSpec(world.clips, "clips")],
        "2": [ManifestSpec(world.clips, "clips"), ManifestSpec(world.qa, "qa")],
        "3": [ManifestSpec(world.stories, "stories")],
    }[stage]
    out = world.root / "runs" / f"stage{stage}"
    result = train(world.config(stage, out, data, steps=steps, save_every=steps, eval_every=steps))
    trainable = {c.part: c.trainable for c in result.counts}
    if stage == "1-warm":
        _assert_overfits(out, ("bridge",))
        assert trainable["dit"] == 0 and trainable["bridge.residual_projector"] == 0
        assert trainable["bridge.semantic_projector"] > 0 and trainable["llm.lora"] > 0
    else:
        _assert_overfits(out, ("lm", "bridge", "flow"))
        assert trainable["dit"] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    understanding = [r["step"] for r in records if "loss/und" in r]
    if stage == "2":
        assert trainable["audio_resampler"] > 0
        assert understanding == list(range(3, steps + 1, 3))  # 2 generation : 1 understanding
        assert json.loads((out / "audiostory.json").read_text())["extra"]["resampler_trained"] is True
    else:
        assert understanding == []


def test_zero_flow_weight_trains_the_planner_without_the_dit(world: World) -> None:
    """``--w-flow 0`` (e.g. a planner-only stage 3) never runs the DiT: no flow loss and an unchanged DiT."""
    from audiostory_cli.model import load_model, load_model_folder
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.train.stages import LossWeights

    out = world.root / "runs" / "stage3-noflow"
    train(
        world.config(
            "3",
            out,
            [ManifestSpec(world.stories, "stories")],
            steps=4,
            save_every=4,
            loss_weights=LossWeights(lm=1.0, bridge=0.2, flow=0.0),
        )
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss/loss" in r]
    assert len(steps) == 4 and all("loss/flow" not in r and "loss/lm" in r for r in steps)
    runtime = make_runtime("cpu")
    trained, base = load_model_folder(out, runtime), load_model("tiny-random", runtime)
    for (name, value), (_, reference) in zip(
        trained.dit.state_dict().items(), base.dit.state_dict().items(), strict=True
    ):
        assert torch.equal(value.float(), reference.float()), name


def test_trained_folder_tells_a_story(stage1: Path, tmp_path: Path) -> None:
    story_dir = tmp_path / "story"
    result = CliRunner().invoke(
        app,
        [
            "tell",
            "a dog barks in the rain",
            "--duration",
            "2",
            "--model",
            str(stage1),
            "--yes",
            "--steps",
            "2",
            "--out",
            str(story_dir),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    story = json.loads((story_dir / "story.json").read_text())
    assert story["model"] == "stage1" and story["events"]
    assert (story_dir / "mix.wav").is_file()


def test_next_stage_trains_from_the_previous_run(world: World, stage1: Path) -> None:
    out = world.root / "runs" / "stage2-from-1"
    data = [ManifestSpec(world.clips, "clips"), ManifestSpec(world.qa, "qa")]

    def cached(kind: str) -> set[Path]:
        return set((world.features / kind).rglob("*.safetensors"))

    before = {kind: cached(kind) for kind in ("latents", "t5")}
    train(world.config("2", out, data, model=str(stage1), steps=3, save_every=3))
    # VAE and T5 are frozen, so their features are found by content, not recomputed
    after = {kind: cached(kind) for kind in ("latents", "t5")}
    assert after == before and before["latents"]
    sidecar = json.loads((out / "audiostory.json").read_text())
    assert sidecar["base_model"] == str(stage1)
    assert [h["stage"] for h in sidecar["extra"]["training_history"]] == ["1", "2"]
    tokenizers = [json.loads((run / "t5_tokenizer" / "tokenizer.json").read_text()) for run in (out, stage1)]
    assert tokenizers[0]["model"] == tokenizers[1]["model"]


def test_checkpoint_adapter_merges_and_unmerges(stage1: Path) -> None:
    from peft import PeftModel

    from audiostory_cli.model import load_model, tiny_random_model
    from audiostory_cli.runtime import cpu_runtime

    checkpoint = stage1 / "checkpoints" / "step-000030"
    base = tiny_random_model()
    original_q = base.llm.model.layers[0].self_attn.q_proj.weight.detach().clone()
    trainable = load_file(str(checkpoint / "trainable.safetensors"))
    with torch.no_grad():
        base.llm.model.embed_tokens.weight.copy_(trainable["llm.base_model.model.model.embed_tokens.weight"])
    peft_model = PeftModel.from_pretrained(base.llm, str(checkpoint))
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 8]])
    with torch.no_grad():
        adapted = peft_model(ids).logits
        peft_model.merge_adapter()
        merged = peft_model(ids).logits
        peft_model.unmerge_adapter()
        unmerged = peft_model(ids).logits
        exported = load_model(str(stage1), cpu_runtime()).llm(ids).logits
    q_layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    assert (adapted - merged).abs().max() < 1e-4
    assert (adapted - unmerged).abs().max() < 1e-5
    assert (q_layer.base_layer.weight - original_q).abs().max() < 1e-6
    assert (adapted - exported).abs().max() < 1e-4
    assert (adapted - base_logits(ids)).abs().max() > 1e-3  # the adapter changes the model


def base_logits(ids: torch.Tensor) -> torch.Tensor:
    from audiostory_cli.model import tiny_random_model

    with torch.no_grad():
        return tiny_random_model().llm(ids).logits


class _Stop(Exception):
    pass


def _stop_at(step: int) -> Any:
    """An ``on_step`` callback that interrupts the run after ``step`` steps (as Ctrl-C would)."""

    def stop(report: Any) -> None:
        if report.step == step:
            raise _Stop

    return stop


def test_resume_gives_the_same_weights_bitwise(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate import Accelerator

    closed: list[bool] = []  # a run leaves its process group however it ends (a live gloo group can abort at exit)
    monkeypatch.setattr(Accelerator, "end_training", lambda self: closed.append(True))
    data = [ManifestSpec(world.stories, "stories")]
    options = {
        "steps": 4,
        "save_every": 2,
        "grad_accum": 2,
        "batch_size": 1,
        "cond_dropout": 0.3,
        "keep_checkpoints": 0,
        "schedule": "cosine",
        "warmup": 1,
    }
    straight = world.root / "runs" / "straight"
    train(world.config("1", straight, data, **options))

    resumed = world.root / "runs" / "resumed"
    with pytest.raises(_Stop):
        train(world.config("1", resumed, data, **options), on_step=_stop_at(3))
    assert closed == [True, True]
    assert not (resumed / "audiostory.json").exists()
    with pytest.raises(TrainingError, match="--resume"):
        train(world.config("1", resumed, data, **options))
    with pytest.raises(TrainingError, match="seed"):
        train(world.config("1", resumed, data, **{**options, "seed": 1}, resume=True))
    result = train(world.config("1", resumed, data, **options, resume=True))
    assert result.resumed_from == 2

    for part in ("llm", "bridge", "dit"):
        a = load_file(str(straight / f"{part}.safetensors"))
        b = load_file(str(resumed / f"{part}.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    a = load_file(str(straight / "checkpoints" / "step-000004" / "trainable.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step-000004" / "trainable.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    straight_log = (straight / "metrics.jsonl").read_text().splitlines()
    resumed_log = (resumed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in resumed_log] == [1, 2, 3, 4]
    assert [json.loads(x)["loss/loss"] for x in straight_log] == [json.loads(x)["loss/loss"] for x in resumed_log]


def test_gradient_checkpointing_gives_the_same_training(world: World) -> None:
    data = [ManifestSpec(world.clips, "clips")]
    runs = {}
    for checkpointing in (False, True):
        out = world.root / "runs" / f"checkpointing-{checkpointing}"
        train(world.config("1", out, data, steps=2, save_every=2, gradient_checkpointing=checkpointing))
        runs[checkpointing] = load_file(str(out / "dit.safetensors")) | load_file(str(out / "llm.safetensors"))
    assert all(torch.allclose(runs[False][k], runs[True][k], atol=1e-6) for k in runs[False])


def test_bad_data_and_wrong_stage_data_fail_before_training(world: World, tmp_path: Path) -> None:
    broken = tmp_path / "clips.jsonl"
    broken.write_text(world.clips.read_text() + '{"audio": "nope.wav", "caption": "x"}\n')
    with pytest.raises(TrainingError, match=r"clips\.jsonl:5: error: audio file"):
        train(world.config("1", tmp_path / "a", [ManifestSpec(broken)]))
    with pytest.raises(UsageError, match="QA manifest"):
        train(world.config("2", tmp_path / "b", [ManifestSpec(world.clips)]))
    with pytest.raises(UsageError, match="does not use QA"):
        train(world.config("1", tmp_path / "c", [ManifestSpec(world.clips), ManifestSpec(world.qa)]))
    with pytest.raises(UsageError, match="stories manifest"):
        train(world.config("3", tmp_path / "d", [ManifestSpec(world.clips)]))
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_dry_run_counts_the_papers_trainable_set() -> None:
    warm = {c.part: c for c in dry_run("1-warm")}
    assert warm["llm.lora"].trainable == 36 * 32 * (2 * (2048 + 2048) + 2 * (2048 + 256) + 3 * (2048 + 11008))
    assert warm["llm.norms"].trainable == 73 * 2048  # 36 × 2 layer norms + the final norm
    assert warm["llm.embeddings"].trainable == 152_277 * 2048  # tied with lm_head: counted once
    assert warm["bridge.semantic_projector"].trainable == 2048 * 1024 + 1024 + 1024 * 1024 + 1024
    assert warm["llm.base"].trainable == warm["dit"].trainable == warm["bridge.fusion"].trainable == 0
    assert warm["audio_resampler"].trainable == 0
    second = {c.part: c for c in dry_run("2")}
    assert second["dit"].trainable == second["dit"].total > 500_000_000
    assert second["bridge.fusion"].trainable == 4 * 1024 * 1024 + 4 * 1024
    assert second["audio_resampler"].trainable == 1280 * 2048 + 2048 + 2048 * 2048 + 2048
    assert second["audio_encoder.whisper"].trainable == second["text_encoder"].trainable == 0


def test_dry_run_matches_a_real_run(stage1: Path) -> None:
    real = {c["part"]: c["trainable"] for c in json.loads((stage1 / "train_config.json").read_text())["trainable"]}
    dry = {c.part: c.trainable for c in dry_run("1", "tiny-random")}
    for part in (
        "llm.base",
        "llm.lora",
        "llm.norms",
        "llm.embeddings",
        "bridge.semantic_projector",
        "bridge.residual_projector",
        "bridge.fusion",
        "dit",
    ):
        assert dry[part] == real[part], part


def test_ema_exports_the_moving_average_and_resumes_bitwise(world: World) -> None:
    """``ema_decay``: the model folder holds the average of the per-step weights (decay warming up as
    (1 + s) / (10 + s), capped), not the last step's; a resumed run restores the average from its checkpoint."""
    data = [ManifestSpec(world.clips, "clips")]
    options = {"steps": 4, "save_every": 1, "keep_checkpoints": 0, "ema_decay": 0.2}
    straight = world.root / "runs" / "ema-straight"
    train(world.config("1", straight, data, **options))

    average: dict[str, torch.Tensor] = {}
    for step in range(1, 5):
        weights = load_file(str(straight / "checkpoints" / f"step-{step:06d}" / "trainable.safetensors"))
        decay = 0.0 if step == 1 else min((1 + step - 1) / (10 + step - 1), 0.2)
        for key, value in weights.items():
            if key.startswith("dit."):  # the model folder's dit.safetensors keeps the prefix
                name = key
                average[name] = value.clone() if step == 1 else average[name] - (1 - decay) * (average[name] - value)
    exported = load_file(str(straight / "dit.safetensors"))
    assert average and all(torch.allclose(exported[k].float(), average[k], atol=1e-6) for k in average)
    assert not all(torch.equal(exported[k].float(), value.float()) for k, value in _last_dit(straight).items())

    resumed = world.root / "runs" / "ema-resumed"
    with pytest.raises(_Stop):
        train(world.config("1", resumed, data, **options), on_step=_stop_at(2))
    with pytest.raises(TrainingError, match="ema_decay"):
        train(world.config("1", resumed, data, **{**options, "ema_decay": 0.0}, resume=True))
    train(world.config("1", resumed, data, **options, resume=True))
    again = load_file(str(resumed / "dit.safetensors"))
    assert all(torch.equal(exported[k], again[k]) for k in exported)


def _last_dit(run: Path) -> dict[str, torch.Tensor]:
    weights = load_file(str(run / "checkpoints" / "step-000004" / "trainable.safetensors"))
    return {k: v for k, v in weights.items() if k.startswith("dit.")}


def test_ema_decay_must_be_a_fraction(world: World, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--ema-decay"):
        world.config("1", tmp_path / "run", [ManifestSpec(world.clips, "clips")], ema_decay=1.0)


def test_logit_mean_moves_the_noise_levels_the_flow_trains_on(world: World, tmp_path: Path) -> None:
    """``logit_mean`` reaches the module: σ = 1 − sigmoid(u), so a negative mean draws more high noise levels."""
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import make_runtime
    from audiostory_cli.train.stage_task import build_train_module

    means = {}
    for logit_mean in (-1.0, 0.0, 1.0):
        model = load_model("tiny-random", make_runtime("cpu"))
        config = world.config("1", tmp_path / "run", [ManifestSpec(world.clips, "clips")], logit_mean=logit_mean)
        module = build_train_module(model, config, understanding=False)
        sigma = module.sample_sigma(4000, torch.device("cpu"), torch.Generator().manual_seed(0))
        means[logit_mean] = float(sigma.mean())
    assert means[-1.0] > means[0.0] + 0.1 and means[0.0] == pytest.approx(0.5, abs=0.02)
    assert means[1.0] < means[0.0] - 0.1
    with pytest.raises(UsageError, match="--logit-std"):
        world.config("1", tmp_path / "run", [ManifestSpec(world.clips, "clips")], logit_std=0.0)
