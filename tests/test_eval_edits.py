"""`audiostory eval --edits N`: exact-edit share, untouched audio, render cost (tiny-random renders)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.demo.eval_edits import EditEvalOptions, eval_turns, evaluate_edits, exact_edit, foley_plan
from audiostory_cli.planner.layout import ParsedPlan, PlannedEvent

runner = CliRunner()
OPTIONS = EditEvalOptions(edits=3, seed=2, steps=1)


@pytest.fixture(scope="module")
def tiny():
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import make_runtime

    runtime = make_runtime("cpu")
    return load_model("tiny-random", runtime), runtime


def oracle(options):
    """A rewrite that writes the true edited plan: every edit exact."""
    truth = {turn.instruction: turn for turn in eval_turns(options)}

    def rewrite(text, story, history, attempt):
        turn = truth[text]
        return ParsedPlan(
            reasoning="", events=[PlannedEvent(e.caption, e.story_detail, e.duration) for e in turn.edited]
        )

    return rewrite


def test_a_perfect_rewrite_scores_all_exact_and_keeps_untouched_audio(tiny, tmp_path):
    model, runtime = tiny
    report = evaluate_edits(model, runtime, OPTIONS, work_dir=tmp_path, rewrite=oracle(OPTIONS))
    summary = report.summary()
    assert summary["edits"] == 3 and summary["failed_edits"] == 0
    assert summary["exact_edit_share"] == 1.0
    assert summary["untouched_identical_share_same_inputs"] == 1.0
    assert 0 < summary["render_cost_seconds"] < 1 and 0 < summary["render_cost_events"] < 1
    assert json.loads(json.dumps(report.to_dict()))["summary"] == summary


def test_a_rewrite_that_changes_nothing_is_not_exact(tiny, tmp_path):
    model, runtime = tiny

    def unchanged(text, story, history, attempt):
        return ParsedPlan(
            reasoning="", events=[PlannedEvent(e.caption, e.story_detail, e.duration) for e in story.events]
        )

    options = EditEvalOptions(edits=2, seed=2, steps=1)
    report = evaluate_edits(model, runtime, options, work_dir=tmp_path, rewrite=unchanged)
    assert report.summary()["exact_edit_share"] == 0.0
    assert report.summary()["render_cost_events"] == 0.0  # nothing changed, nothing rendered
    turn = eval_turns(options)[0]
    assert exact_edit(turn, foley_plan(turn.story, model, 1)) is False


def test_eval_edits_command_bad_input():
    result = runner.invoke(app, ["eval", "--edits", "0", "--model", "tiny-random"])
    assert result.exit_code == 2 and "--edits 0 is out of range" in result.stderr


@pytest.mark.slow
def test_eval_edits_command_with_the_scripted_tiny_random(tmp_path):
    report = tmp_path / "edits.json"
    result = runner.invoke(
        app, ["eval", "--edits", "1", "--model", "tiny-random", "--steps", "1", "--device", "cpu", "--out", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "exact edits" in result.stdout
    assert json.loads(report.read_text())["summary"]["edits"] == 1
