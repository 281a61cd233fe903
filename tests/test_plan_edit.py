"""Editing the plan: the TOML view, the editor loop driven by a fake editor, and `plan set`."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.errors import PlanValidationError
from audiostory_cli.story import StoryFolder
from audiostory_cli.story.edit import edit_story
from audiostory_cli.story.editview import parse_view, render_view
from tests.test_story_plan import make_story

runner = CliRunner()


def fake_editor(tmp_path, versions: list[str]) -> list[str]:
    """An 'editor' that writes the next of ``versions`` into the file it is given, one per invocation."""
    queue = tmp_path / "editor-queue.json"
    queue.write_text(json.dumps(versions))
    script = tmp_path / "fake_editor.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys, pathlib
        queue = pathlib.Path({str(queue)!r})
        versions = json.loads(queue.read_text())
        text = versions.pop(0)
        queue.write_text(json.dumps(versions))
        path = pathlib.Path(sys.argv[1])
        if text is not None:
            path.write_text(text.replace("@ORIGINAL@", path.read_text()))
    """)
    )
    return [sys.executable, str(script)]


def test_view_round_trip_without_changes_is_identity():
    story = make_story()
    assert parse_view(render_view(story), story).to_dict() == story.to_dict()


def test_view_duration_change_reflows_timeline():
    story = make_story(durations=(4.0, 3.0, 5.0))
    text = render_view(story).replace("duration = 3.0", "duration = 6.0")
    new = parse_view(text, story)
    assert [e.start for e in new.events] == [0.0, 4.0, 10.0]
    assert new.total_duration == pytest.approx(15.0)


def test_view_errors_point_at_the_line():
    story = make_story()
    text = render_view(story).replace("duration = 3.0", "duration = -3.0")
    bad_line = text.splitlines().index("duration = -3.0") + 1
    with pytest.raises(PlanValidationError) as info:
        parse_view(text, story)
    assert info.value.line == bad_line
    assert str(info.value).startswith(f"line {bad_line}:")
    with pytest.raises(PlanValidationError, match=r"line \d+: not valid TOML"):
        parse_view(text.replace('caption = "sound number 2"', "caption = sound number 2"), story)


def test_edit_loop_bad_then_fixed_keeps_previous(tmp_path):
    folder = StoryFolder(tmp_path / "story")
    story = make_story()
    folder.save(story)
    good = render_view(story).replace('"sound number 2"', '"a heavier door slam, metallic echo"')
    bad = good.replace("duration = 5.0", "duration = 0")
    editor = fake_editor(tmp_path, [bad, None])  # 2nd round: the user fixes the duration by hand (below)
    errors: list[str] = []

    def ask_retry(message: str) -> bool:
        errors.append(message)
        # the user fixes the file in the editor; emulate by writing the corrected text before the re-open
        (folder.root / "plan.edit.toml").write_text(good)
        return True

    result = edit_story(folder, story, ask_retry=ask_retry, editor=editor)
    assert result.changed
    assert len(errors) == 1 and "line" in errors[0] and "duration" in errors[0]
    assert folder.load().events[1].caption == "a heavier door slam, metallic echo"
    assert json.loads(folder.previous_path.read_text())["events"][1]["caption"] == "sound number 2"
    assert not (folder.root / "plan.edit.toml").exists()


def test_edit_given_up_keeps_text_and_plan(tmp_path):
    folder = StoryFolder(tmp_path / "story")
    story = make_story()
    folder.save(story)
    before = folder.story_path.read_text()
    bad = "@ORIGINAL@\n[[event]]\ncaption = 'extra'\n"  # no duration: invalid
    editor = fake_editor(tmp_path, [bad])
    with pytest.raises(PlanValidationError, match="kept in"):
        edit_story(folder, story, ask_retry=lambda message: False, editor=editor)
    assert folder.story_path.read_text() == before
    kept = (folder.root / "plan.edit.toml").read_text()
    assert "caption = 'extra'" in kept


def test_cli_plan_edit_non_interactive_bad_edit_exits_nonzero(tmp_path, monkeypatch):
    folder = StoryFolder(tmp_path / "story")
    folder.save(make_story())
    editor = fake_editor(tmp_path, ["prompt = 'x'\n"])  # no events at all
    monkeypatch.setenv("EDITOR", " ".join(editor))
    result = runner.invoke(app, ["plan", "edit", str(folder.root)])
    assert result.exit_code == 1
    assert result.stderr.count("no [[event]] blocks") == 1  # said once without a terminal, not twice
    assert "Traceback" not in result.output


def test_cli_plan_set_and_show(tmp_path):
    folder = StoryFolder(tmp_path / "story")
    folder.save(make_story(durations=(4.0, 3.0, 5.0)))
    result = runner.invoke(app, ["plan", "set", str(folder.root), "2", "--duration", "6", "--caption", "rain"])
    assert result.exit_code == 0, result.output
    story = folder.load()
    assert story.events[1].caption == "rain"
    assert [e.start for e in story.events] == [0.0, 4.0, 10.0]
    assert story.total_duration == pytest.approx(15.0)
    assert folder.previous_path.exists()
    shown = runner.invoke(app, ["plan", "show", str(folder.root)])
    assert shown.exit_code == 0 and "rain" in shown.stdout
    as_json = runner.invoke(app, ["plan", "show", str(folder.root), "--json"])
    assert json.loads(as_json.stdout)["events"][1]["caption"] == "rain"


def test_cli_plan_set_unknown_event_is_one_line_error(tmp_path):
    folder = StoryFolder(tmp_path / "story")
    folder.save(make_story())
    result = runner.invoke(app, ["plan", "set", str(folder.root), "9", "--seed", "1"])
    assert result.exit_code == 1
    assert "event 9 does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
