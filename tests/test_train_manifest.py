"""Training data without a model: manifest validation, token sequences and their loss classes, batch order,
options. Fast (no torch model is built)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.errors import TrainingError, UsageError
from audiostory_cli.train.config import TrainConfig, differences
from audiostory_cli.train.manifest import (
    ClipRecord,
    ManifestSpec,
    StoryRecord,
    check_manifest,
    load_manifests,
    storyline_of,
)
from audiostory_cli.train.stages import LOSS_PRESETS, resolve_loss_weights

SR = 16_000


def _wav(path: Path, seconds: float, channels: int = 1) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sf.write(str(path), (0.1 * rng.standard_normal((int(seconds * SR), channels))).astype(np.float32), SR)
    return path.name


def _manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_errors_name_their_line(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "broken.wav").write_text("not audio", encoding="utf-8")
    lines = [
        json.dumps({"audio": "a.wav", "caption": "a dog barks"}),  # 1 ok
        '{"audio": "a.wav", "caption": ',  # 2 invalid JSON
        json.dumps({"audio": "a.wav"}),  # 3 no caption
        json.dumps({"audio": "missing.wav", "caption": "rain"}),  # 4 missing file
        json.dumps({"audio": "broken.wav", "caption": "rain"}),  # 5 unreadable
        json.dumps({"audio": "a.wav", "caption": "rain <|gen|> falls"}),  # 6 special token
        json.dumps(
            {"instruction": "a story", "events": [{"caption": "rain", "duration": -1, "audio": "a.wav"}]}
        ),  # 7 bad duration
        json.dumps(
            {"instruction": "a story", "events": [{"caption": "rain", "duration": 3.0, "audio": "a.wav"}]}
        ),  # 8 audio too short
        json.dumps({"audio": "a.wav", "question": "What is it?"}),  # 9 QA without answer
        "[1, 2]",  # 10 not an object
    ]
    report = check_manifest(_manifest(tmp_path, lines))
    by_line = {issue.source.line: issue.message for issue in report.errors}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "not valid JSON" in by_line[2]
    assert "missing 'caption'" in by_line[3]
    assert "not found" in by_line[4]
    assert "unreadable" in by_line[5]
    assert "<|gen|>" in by_line[6]
    assert "events[1].duration" in by_line[7] and "positive" in by_line[7]
    assert "goes past its end" in by_line[8]
    assert "answer" in by_line[9]
    assert len(report.records) == 1 and isinstance(report.records[0], ClipRecord)
    assert str(report.errors[0]).startswith("data.jsonl:2: error:")

    with pytest.raises(TrainingError, match=r"data\.jsonl:2: error: not valid JSON"):
        load_manifests([ManifestSpec(report.path)])


def test_check_data_command_reports_lines_and_exit_code(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 1.0)
    path = _manifest(
        tmp_path,
        [json.dumps({"audio": "a.wav", "caption": "rain"}), json.dumps({"audio": "nope.wav", "caption": "rain"})],
    )
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "check-data", str(path)])
    assert bad.exit_code == 1
    assert "data.jsonl:2: error: audio file" in bad.stdout
    as_json = runner.invoke(app, ["train", "check-data", str(path), "--json"])
    report = json.loads(as_json.stdout)
    assert report["valid"]["clips"] == 1 and report["issues"][0]["line"] == 2

    path.write_text(json.dumps({"audio": "a.wav", "caption": "rain"}) + "\n", encoding="utf-8")
    assert runner.invoke(app, ["train", "check-data", str(path)]).exit_code == 0
    wrong_kind = runner.invoke(app, ["train", "check-data", str(path), "--kind", "qa"])
    assert wrong_kind.exit_code == 1 and "expected a qa line" in wrong_kind.stdout


def test_story_with_one_long_audio_and_event_times(tmp_path: Path) -> None:
    _wav(tmp_path / "long.wav", 3.0, channels=2)
    reasoning = (
        "The storyline is mainly about a storm.\nEvent 1: Timestamp: 0.0s - 1.0s. Story detail: rain. "
        "Sound effect: rain\nEvent 2: Timestamp: 1.0s - 2.5s. Sound effect: thunder"
    )
    line = {
        "instruction": "A storm. The total duration is 2.5 seconds.",
        "reasoning": reasoning,
        "audio": "long.wav",
        "events": [
            {"caption": "rain on a roof", "story_detail": "Rain begins.", "duration": 1.0},
            {"caption": "thunder rumbles", "duration": 1.5, "start": 1.4},
        ],
    }
    report = check_manifest(_manifest(tmp_path, [json.dumps(line)]))
    assert not report.issues
    story = report.records[0]
    assert isinstance(story, StoryRecord)
    assert story.storyline == "The storyline is mainly about a storm."
    assert [(e.audio.start, e.audio.duration) for e in story.events] == [(0.0, 1.0), (1.4, 1.5)]
    assert storyline_of("no event lines here") == "no event lines here"


def test_long_clip_is_cut_with_a_warning(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 2.0)
    report = check_manifest(
        _manifest(tmp_path, [json.dumps({"audio": "a.wav", "caption": "wind"})]), max_event_seconds=1.5
    )
    assert not report.errors and len(report.warnings) == 1 and "only the first 1.5 s" in report.warnings[0].message
    clip = report.records[0]
    assert isinstance(clip, ClipRecord) and clip.audio.duration == 1.5


def test_plan_sequence_loss_classes() -> None:
    from audiostory_cli.planner.layout import PlannedEvent
    from audiostory_cli.planner.tokens import build_tiny_tokenizer, resolve_special_token_ids
    from audiostory_cli.train.sequences import (
        BOUNDARY,
        NOT_TARGET,
        PLAN_TEXT,
        REASONING,
        SCOPE_CLASSES,
        plan_sequence,
        qa_sequence,
    )

    tokenizer = build_tiny_tokenizer()
    special = resolve_special_token_ids(tokenizer)
    events = [PlannedEvent("rain falls", "It rains.", 1.5), PlannedEvent("a dog barks", "", 2.0)]
    seq = plan_sequence(tokenizer, special, "A storm. The total duration is 3.5 seconds.", "A storm.", events, 8, 2)
    ids, classes = seq.ids, seq.classes
    assert all(c == NOT_TARGET for c in classes[: seq.prompt_len])
    for i, token in enumerate(ids):
        if i < seq.prompt_len:
            continue
        if special.is_t5_placeholder(token) or special.is_aud_placeholder(token):
            assert classes[i] == NOT_TARGET and classes[i + 1] == NOT_TARGET  # next placeholder or the closer
        if token in (
            special.gen_open,
            special.timestamp_open,
            special.t5_open,
            special.aud_open,
            special.gen_close,
            special.im_end,
            special.think_close,
        ):
            assert classes[i] == BOUNDARY
        if token in (special.t5_close, special.aud_close):
            assert classes[i] == NOT_TARGET
    think = ids.index(special.think_close)
    assert set(classes[seq.prompt_len : think]) == {REASONING}
    assert PLAN_TEXT in classes[think:]
    assert sum(1 for t in ids if t == special.gen_open) == 2
    assert SCOPE_CLASSES["boundary"] < SCOPE_CLASSES["plan"] < SCOPE_CLASSES["full"]

    qa = qa_sequence(tokenizer, special, "What do you hear?", "A dog barks.", 4)
    assert len(qa.audio_positions) == 4
    assert all(special.is_aud_placeholder(qa.ids[p]) for p in qa.audio_positions)
    assert qa.classes[-1] == BOUNDARY and qa.ids[-1] == special.im_end
    assert all(c == NOT_TARGET for c in qa.classes[: qa.prompt_len])


def test_batch_order_is_deterministic_and_split_by_rank() -> None:
    from audiostory_cli.train.data import BatchOrder, micro_batch_kind

    order = BatchOrder(10, seed=3, stream=1)
    assert order.indices(4, 3) == BatchOrder(10, seed=3, stream=1).indices(4, 3)
    epoch = [i for b in range(5) for i in order.indices(b, 2)]
    assert sorted(epoch) == list(range(10))
    ranks = [order.indices(0, 2, world=2, rank=r) for r in (0, 1)]
    assert ranks[0] + ranks[1] == order.indices(0, 4)
    kinds = [micro_batch_kind(m, (2, 1), True) for m in range(6)]
    assert kinds == [("gen", 0), ("gen", 1), ("und", 0), ("gen", 2), ("gen", 3), ("und", 1)]
    assert micro_batch_kind(5, (2, 1), False) == ("gen", 5)


def test_options_are_validated_early(tmp_path: Path) -> None:
    assert resolve_loss_weights("paper") == LOSS_PRESETS["paper"]
    assert resolve_loss_weights("appendix", flow=0.5).flow == 0.5
    with pytest.raises(UsageError, match="--loss-weights"):
        resolve_loss_weights("nope")
    with pytest.raises(UsageError, match="--stage"):
        TrainConfig(stage="4", data=(), out=tmp_path)
    with pytest.raises(UsageError, match="--lr-llm"):
        TrainConfig(stage="1", data=(), out=tmp_path, lr_llm=0.0)
    config = TrainConfig(stage="2", data=(), out=tmp_path)
    assert config.effective_lm_scope == "plan"
    changed = differences(config.to_dict(), TrainConfig(stage="2", data=(), out=tmp_path, steps=5, seed=1).to_dict())
    assert changed == ["seed: 0 -> 1"]


def test_lr_schedule() -> None:
    from audiostory_cli.train.engine import lr_factor

    factors = [lr_factor(s, warmup=2, total=10, schedule="cosine", min_ratio=0.1) for s in range(11)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0
    assert factors[10] == pytest.approx(0.1) and all(a >= b for a, b in zip(factors[2:], factors[3:], strict=False))
    assert lr_factor(5, warmup=0, total=10, schedule="linear", min_ratio=0.0) == pytest.approx(0.5)
