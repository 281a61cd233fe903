"""Render conditions unedited events on the tokens the reasoner wrote; only an edited plan is re-serialised."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from audiostory_cli.app.pipeline import PlanOptions, plan_story
from audiostory_cli.cli import app
from audiostory_cli.model import tiny_random_model
from audiostory_cli.story import StoryFolder
from audiostory_cli.story.plan import Story
from audiostory_cli.story.table import render_notes

runner = CliRunner()


@pytest.fixture(scope="module")
def planned():
    model = tiny_random_model()
    story = plan_story("rain on a roof, then thunder, then a dog barks", PlanOptions(total_duration=9.0, seed=3), model)
    return model, story


def test_the_plan_keeps_the_generated_tokens_and_they_survive_story_json(planned) -> None:
    _, story = planned
    assert story.generated is not None and len(story.generated.event_blocks) == len(story.events) == 3
    again = Story.from_json(story.to_json())
    assert again.generated == story.generated and again.unedited_events() == 3
    assert render_notes(again)[0] == "bridge: the reasoner's own tokens for every event (as the official inference)"


def test_unedited_events_use_the_generated_tokens_edited_ones_the_reserialised_plan(planned) -> None:
    model, story = planned
    planner = model.planner()
    generated = story.generated
    with torch.inference_mode():
        own = planner._fuse(
            *planner.reasoner.generated_states(story.instruction, generated.token_ids, generated.event_blocks)
        )
        torch.testing.assert_close(planner.bridge_story(story), own)

        edited = dataclasses.replace(story, events=[dataclasses.replace(e) for e in story.events])
        edited.events[1].caption = "a heavier thunder clap"
        assert edited.unedited_events() == 1
        reserialised = planner.bridge_tokens(edited.instruction, edited.reasoning, edited.events)
        mixed = planner.bridge_story(edited)
    torch.testing.assert_close(mixed[0], own[0])  # event 1 is as the model wrote it
    torch.testing.assert_close(mixed[1:], reserialised[1:])  # from the edit on: the plan as edited
    assert "events 1-1" in render_notes(edited)[0] and "from event 2 on" in render_notes(edited)[0]

    reasoned = dataclasses.replace(story, reasoning=story.reasoning + " More rain.")
    assert reasoned.unedited_events() == 0
    assert "every event (the plan was edited" in render_notes(reasoned)[0]


def test_plan_show_says_where_the_bridge_comes_from(tmp_path) -> None:
    out = tmp_path / "s"
    result = runner.invoke(
        app,
        [
            "tell",
            "rain, then thunder",
            "--duration",
            "5",
            "--out",
            str(out),
            "--model",
            "tiny-random",
            "--steps",
            "2",
            "--seed",
            "4",
            "--plan-only",
        ],
    )
    assert result.exit_code == 0, result.output
    assert StoryFolder(out).load().generated is not None
    result = runner.invoke(app, ["plan", "set", str(out), "1", "--caption", "a bell rings"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["plan", "show", str(out)])
    assert result.exit_code == 0, result.output
    assert "bridge: re-serialised plan for every event (the plan was edited after planning)" in result.output
    assert "canvas: fixed" in result.output


def test_a_malformed_generated_entry_is_reported_with_its_field(planned) -> None:
    from audiostory_cli.errors import PlanValidationError

    _, story = planned
    data = story.to_dict()
    data["generated"]["token_ids"] = ["x"]
    with pytest.raises(PlanValidationError, match="generated.token_ids must be a list of whole numbers"):
        Story.from_dict(data)
    notes = render_notes(story)
    assert all(len(line) <= 80 for line in notes[1:])
