"""Edit turns as training data: the foley world's synthetic dialogues, the `edits` manifest kind, check-data,
and planner training on them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.foley.corpus import StoryOptions, make_story
from audiostory_cli.foley.edits import _TEMPLATES, OPERATIONS, dialogue, edit_turn, write_edit_turns
from audiostory_cli.train.manifest import ManifestSpec, check_manifest, load_manifests, load_story_texts

runner = CliRunner()
SHORT = StoryOptions(max_events=4, max_total=20.0)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_has_a_known_truth(operation):
    rng = np.random.default_rng(3)
    story = make_story(rng, split="train", options=SHORT)
    turn = edit_turn(rng, story, split="train", operation=operation)
    before = [e.class_name for e in story.events]
    after = [e.class_name for e in turn.edited]
    changed = [k for k, (a, b) in enumerate(zip(story.events, turn.edited, strict=False)) if a != b]
    if operation == "remove":
        assert len(after) == len(before) - 1 and all(c in before for c in after)
    elif operation == "insert":
        assert len(after) == len(before) + 1 and [c for c in after if c in before] == before
        new = next(e for e in turn.edited if e.class_name not in before)
        assert f"{new.duration:g}" in turn.instruction
    elif operation == "replace":
        assert len(after) == len(before) and len([c for c in after if c not in before]) == 1
    elif operation == "move":
        assert sorted(after) == sorted(before) and after != before
    elif operation == "duration":
        assert after == before and len(changed) == 1
        assert f"{turn.edited[changed[0]].duration:g}" in turn.instruction
    else:
        assert after == before and len(changed) == 1
        old, new = story.events[changed[0]].params, turn.edited[changed[0]].params
        name = "intensity" if operation in ("louder", "quieter") else "distance"
        sign = 1 if operation in ("louder", "farther") else -1
        assert getattr(new, name) == pytest.approx(float(np.clip(getattr(old, name) + sign * 0.3, 0, 1)))
    assert turn.edited_total == pytest.approx(sum(e.duration for e in turn.edited))


def test_dialogues_carry_their_history_and_test_wording_is_held_out():
    rng = np.random.default_rng(0)
    turns = dialogue(rng, split="train", turns=3, options=SHORT)
    assert [len(t.history) for t in turns] == [0, 1, 2]
    assert turns[2].history == (turns[0].instruction, turns[1].instruction)
    assert turns[1].story.events == turns[0].edited
    train_starts = {t.split("{")[0] for pools in _TEMPLATES.values() for t in pools[0] if t.split("{")[0]}
    rng = np.random.default_rng(1)
    for _ in range(60):
        turn = edit_turn(rng, make_story(rng, split="test", options=SHORT), split="test")
        assert not any(turn.instruction.startswith(start) for start in train_starts), turn.instruction


def test_written_turns_validate_and_train_the_planner_prompt(tmp_path):
    path = write_edit_turns(tmp_path / "edits.jsonl", split="train", n_dialogues=40, options=SHORT)
    again = write_edit_turns(tmp_path / "again.jsonl", split="train", n_dialogues=40, options=SHORT)
    assert path.read_bytes() == again.read_bytes()  # deterministic
    report = check_manifest(path)
    assert report.errors == [] and report.count("edits") == report.lines > 40
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert set(Counter(r["operation"] for r in rows)) == set(OPERATIONS)
    texts = load_story_texts(path)
    assert all(t.edit for t in texts)
    first = texts[0]
    assert "Current plan:\nEvent 1: Timestamp: 0.0s" in first.instruction
    assert f"Edit: {rows[0]['instruction']}" in first.instruction
    assert [e.caption for e in first.events] == [e["caption"] for e in rows[0]["edited"]["events"]]
    data = load_manifests([ManifestSpec(path)])
    assert len(data.edits) == len(rows) and not data.stories


def test_check_data_names_bad_edit_lines(tmp_path):
    good = {
        "story": {"prompt": "rain, then a dog", "events": [{"caption": "rain", "duration": 2.0}]},
        "instruction": "add a dog after the rain",
        "edited": {"events": [{"caption": "rain", "duration": 2.0}, {"caption": "a dog barks", "duration": 1.0}]},
    }
    lines = [
        good,
        {**good, "edited": None},
        {**good, "instruction": "x" * 4001},
        {**good, "history": ["ok", 3]},
        {**good, "edited": {"events": [{"caption": "rain"}]}},
        {**good, "story": {"prompt": "p", "events": []}},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["train", "check-data", str(path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"]["edits"] == 1
    messages = {i["line"]: i["message"] for i in report["issues"]}
    assert "edited must be an object" in messages[2]
    assert "at most 4000" in messages[3]
    assert "history must be a list" in messages[4]
    assert "missing edited.events[1].duration" in messages[5]
    assert "story.events must be a non-empty list" in messages[6]
    result = runner.invoke(app, ["train", "check-data", str(path), "--kind", "stories"])
    assert result.exit_code == 1 and "expected a stories line" in result.stdout


@pytest.mark.slow
def test_train_planner_learns_edit_turns_and_marks_the_model(tmp_path):
    from audiostory_cli.config import tiny_dims
    from audiostory_cli.demo.recipe import build_corpus_tokenizer, init_model_folder, manifest_texts
    from audiostory_cli.train.planner_text import PlannerTrainConfig, pretrain_planner

    edits = write_edit_turns(
        tmp_path / "edits.jsonl",
        split="train",
        n_dialogues=3,
        max_turns=1,
        options=StoryOptions(max_events=3, max_total=12.0),
    )
    texts = list(manifest_texts([edits]))
    first = json.loads(edits.read_text().splitlines()[0])
    assert first["story"]["prompt"] in texts and first["edited"]["events"][-1]["caption"] in texts
    tokenizer = build_corpus_tokenizer(texts, bpe_vocab=300)
    init = init_model_folder(tmp_path / "init", tokenizer, dims=tiny_dims(), seed=1)
    result = pretrain_planner(
        PlannerTrainConfig(
            model=init,
            stories=edits,
            out=tmp_path / "p",
            steps=2,
            batch_size=2,
            warmup=1,
            device="cpu",
            max_tokens=4096,
        )
    )
    sidecar = json.loads((result.out / "audiostory.json").read_text())
    assert sidecar["extra"]["trained_edits"] is True
    assert sidecar["extra"]["planner_pretraining"]["n_edits"] == 3
