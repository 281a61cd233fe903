"""`audiostory edit`: rewrite by instruction, diff, apply, partial render, history, undo, bad input.

Most tests build a rendered story folder from synthetic audio and replace the model's rewrite by the rule-based
``demo_edit`` (what ``tiny-random`` is scripted with), so they run in seconds; rendering goes through the real
``tiny-random`` model. ``test_edit_end_to_end_with_tiny_random`` runs the model's own constrained rewrite.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from audiostory_cli.app import editing
from audiostory_cli.app.editing import (
    MAX_INSTRUCTION_CHARS,
    apply_edit,
    check_instruction,
    propose_edit,
    undo_edit,
)
from audiostory_cli.cli import app
from audiostory_cli.errors import InputError, ModelError, UsageError
from audiostory_cli.planner.editing import build_edit_instruction, demo_edit
from audiostory_cli.planner.layout import ParsedPlan, PlannedEvent, PlanParseError
from audiostory_cli.story import StoryFolder
from audiostory_cli.story.diff import diff_table
from audiostory_cli.story.history import load_history
from tests.story_factory import make_story, synth_event, write_event

runner = CliRunner()
CAPTIONS = ["rain on a tin roof", "a wooden door slams", "a car skids on wet road", "thunder rolls far away"]
DURATIONS = [2.0, 1.0, 1.5, 2.0]


def rendered_story(tmp_path, name="story", render=True) -> StoryFolder:
    story = make_story(DURATIONS, prompt="a storm: rain, a door, a skid, thunder")
    story.model = "tiny-random"
    story.settings.steps = 2
    for event, caption in zip(story.events, CAPTIONS, strict=True):
        event.caption = caption
        event.story_detail = caption
    folder = StoryFolder(tmp_path / name)
    folder.root.mkdir(parents=True)
    if render:
        for event in story.events:
            frames = round(story.render_length(event) * story.sample_rate)
            write_event(folder, story, event, synth_event("noise", frames, story.sample_rate, event.seed))
    folder.save(story)
    return folder


def demo_rewrite(text, story, history, attempt):
    events = [
        PlannedEvent(e.caption, e.story_detail, round(e.duration, 1)) for e in story.events if e.status != "source"
    ]
    return ParsedPlan(reasoning=story.reasoning, events=demo_edit(events, text))


@pytest.fixture
def scripted(monkeypatch):
    """The CLI's model rewrite replaced by the rule-based demo edit (the model still renders)."""
    calls: list[tuple[str, list[str]]] = []

    def fake(model, text, story, history, attempt, progress=None):
        calls.append((text, list(history)))
        return demo_rewrite(text, story, history, attempt)

    monkeypatch.setattr(editing, "model_rewrite", fake)
    return calls


def file_bytes(folder: StoryFolder) -> dict[str, bytes]:
    return {e.caption: folder.resolve(e.file).read_bytes() for e in folder.load().events if e.file}


# -- the library: propose, apply, undo ----------------------------------------------------------------------


def test_insert_changes_only_what_was_asked(tmp_path):
    folder = rendered_story(tmp_path)
    before = file_bytes(folder)
    proposal = propose_edit(folder, "add a siren after the skid", None, rewrite=demo_rewrite)
    assert [c.kind for c in proposal.changes] == ["kept", "kept", "kept", "added", "kept"]
    assert proposal.to_render == [4]
    story = apply_edit(folder, proposal)
    assert [e.caption for e in story.events] == [*CAPTIONS[:3], "siren", CAPTIONS[3]]
    assert story.event(4).status == "planned" and story.event(4).file is None
    assert story.event(5).seed == folder.load().event(5).seed == 104  # kept events keep seed, file and audio
    assert file_bytes(folder) == before
    assert [story.is_stale(e) for e in story.events] == [False, False, False, True, False]
    assert story.total_duration == pytest.approx(sum(DURATIONS) + 1.5)
    turns = load_history(folder)
    assert [t.instruction for t in turns] == ["add a siren after the skid"]
    assert len(turns[0].before["events"]) == 4 and len(turns[0].after["events"]) == 5
    assert (folder.root / "plan.previous.json").is_file()


def test_caption_change_becomes_a_take_and_undo_brings_the_audio_back(tmp_path):
    folder = rendered_story(tmp_path)
    original = folder.load()
    door = folder.resolve(original.event(2).file).read_bytes()
    proposal = propose_edit(folder, "replace the wooden door with a heavy iron door", None, rewrite=demo_rewrite)
    assert [c.kind for c in proposal.changes] == ["kept", "changed", "kept", "kept"]
    story = apply_edit(folder, proposal)
    event = story.event(2)
    assert event.caption == "a heavy iron door slams" and event.file is None
    assert event.takes == ["events/02-a-wooden-door-slams.take1.wav"]
    assert folder.resolve(event.takes[0]).read_bytes() == door
    # a render of the edited event (what `render` would write), then undo
    frames = round(story.render_length(event) * story.sample_rate)
    write_event(folder, story, event, synth_event("tones", frames, story.sample_rate, 1))
    folder.save(story)
    edited_file = event.file
    result = undo_edit(folder)
    restored = folder.load()
    assert result.instruction.startswith("replace the wooden door")
    assert [e.caption for e in restored.events] == CAPTIONS
    assert folder.resolve(restored.event(2).file).read_bytes() == door
    assert not any(restored.is_stale(e) for e in restored.events)  # no rendering needed
    assert edited_file in restored.event(2).takes  # the edited render is kept as a take, never lost
    assert load_history(folder) == []


def test_duration_and_move_edits(tmp_path):
    folder = rendered_story(tmp_path)
    proposal = propose_edit(folder, "make the door 3 seconds", None, rewrite=demo_rewrite)
    assert [c.kind for c in proposal.changes] == ["kept", "changed", "kept", "kept"]
    assert proposal.after.event(2).duration == 3.0 and proposal.after.event(3).start == 5.0
    # rain's crossfade tail into the door was the door's 1.0 s and is now 1.5 s: rain renders again too
    assert proposal.to_render == [1, 2]
    apply_edit(folder, proposal)
    proposal = propose_edit(folder, "move the thunder before the rain", None, rewrite=demo_rewrite)
    assert [e.caption for e in proposal.after.events][0] == CAPTIONS[3]
    assert "moved" in [c.kind for c in proposal.changes]


def test_each_edit_sees_the_history(tmp_path):
    folder = rendered_story(tmp_path)
    seen: list[list[str]] = []

    def rewrite(text, story, history, attempt):
        seen.append(list(history))
        return demo_rewrite(text, story, history, attempt)

    apply_edit(folder, propose_edit(folder, "remove the skid", None, rewrite=rewrite))
    apply_edit(folder, propose_edit(folder, "add a siren at the end", None, rewrite=rewrite))
    propose_edit(folder, "make the siren louder", None, rewrite=rewrite)
    assert seen == [[], ["remove the skid"], ["remove the skid", "add a siren at the end"]]
    text = build_edit_instruction("p", 6.0, folder.load().events, seen[-1], "make the siren louder")
    assert "Earlier edits, oldest first:\n1. remove the skid\n2. add a siren at the end" in text
    assert "Event 4: Timestamp: 5.0s - 6.7s. Story detail: siren Sound effect: siren" in text
    assert text.splitlines()[-2] == "Edit: make the siren louder"
    # two undos walk back two turns
    undo_edit(folder)
    undo_edit(folder)
    assert [e.caption for e in folder.load().events] == CAPTIONS
    with pytest.raises(InputError, match="no edit to undo"):
        undo_edit(folder)


def test_unparsable_output_is_retried_once_then_refused_with_the_story_untouched(tmp_path):
    folder = rendered_story(tmp_path)
    before = folder.story_path.read_bytes()
    attempts: list[int] = []

    def flaky(text, story, history, attempt):
        attempts.append(attempt)
        if attempt == 1:
            raise PlanParseError("the reasoner's output has no complete event")
        return demo_rewrite(text, story, history, attempt)

    assert propose_edit(folder, "remove the skid", None, rewrite=flaky).attempts == 2

    def broken(text, story, history, attempt):
        attempts.append(attempt)
        raise PlanParseError("the reasoner's output has no complete event")

    attempts.clear()
    with pytest.raises(ModelError, match="did not give a valid plan in 2 tries.*story is unchanged"):
        propose_edit(folder, "remove the skid", None, rewrite=broken)
    assert attempts == [1, 2]

    def invalid(text, story, history, attempt):  # parses, but an event is too short to render
        return ParsedPlan(reasoning="", events=[PlannedEvent("a blip", "", 0.1)])

    with pytest.raises(ModelError, match="duration 0.1"):
        propose_edit(folder, "make it a blip", None, rewrite=invalid)
    assert folder.story_path.read_bytes() == before
    assert not (folder.root / "edits.json").exists()


def test_bad_instructions_and_stories(tmp_path):
    with pytest.raises(UsageError, match="empty"):
        check_instruction(" \n\t\x1b ")
    with pytest.raises(UsageError, match=f"at most {MAX_INSTRUCTION_CHARS}"):
        check_instruction("x" * (MAX_INSTRUCTION_CHARS + 1))
    assert check_instruction("drop\x07 the  dog") == "drop the dog"
    folder = rendered_story(tmp_path, render=False)
    with pytest.raises(InputError, match="never rendered.*audiostory render"):
        propose_edit(folder, "remove the skid", None, rewrite=demo_rewrite)


def test_a_continued_story_keeps_its_source_event(tmp_path):
    from dataclasses import replace

    from audiostory_cli.story.plan import Event

    folder = rendered_story(tmp_path)
    story = folder.load()
    source = Event(
        index=0,
        start=0.0,
        duration=3.0,
        caption="[source] input.wav",
        story_detail="input audio",
        status="source",
        file="events/00-source.wav",
        stem="src",
    )
    events = [replace(e, start=e.start + 3.0) for e in story.events]
    continued = replace(
        story, events=[source, *events], total_duration=story.total_duration + 3.0, source="source/input.wav"
    )
    folder.save(continued)
    proposal = propose_edit(folder, "remove the skid", None, rewrite=demo_rewrite)
    after = proposal.after
    assert after.events[0] == continued.events[0]
    assert [e.index for e in after.events] == [0, 1, 2, 3] and after.event(3).caption == CAPTIONS[3]
    assert after.event(1).start == 3.0 and [c.kind for c in proposal.changes] == ["kept", "kept", "removed", "kept"]
    apply_edit(folder, proposal)
    undo_edit(folder)
    assert folder.load().to_dict() == continued.to_dict()


def test_a_story_changed_meanwhile_is_not_overwritten(tmp_path):
    folder = rendered_story(tmp_path)
    proposal = propose_edit(folder, "remove the skid", None, rewrite=demo_rewrite)
    story = folder.load()
    story.event(1).seed = 5
    folder.save(story)
    with pytest.raises(Exception, match="changed while the edit was being proposed"):
        apply_edit(folder, proposal)
    assert folder.load().event(1).seed == 5


def test_diff_table_reads_at_80_columns(tmp_path):
    folder = rendered_story(tmp_path)
    proposal = propose_edit(
        folder,
        "replace the wooden door with a heavy iron door, remove the skid, add a siren at the end",
        None,
        rewrite=demo_rewrite,
    )
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(diff_table(proposal.changes))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for word in ("changed", "removed", "added", "→", "siren", "1.50"):
        assert word in text


# -- the demo rewrite ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "captions", "durations"),
    [
        ("remove event 2", ["rain", "dog barks", "thunder"], [2.0, 1.0, 3.0]),
        ("drop the last event", ["rain", "door slams", "dog barks"], [2.0, 1.5, 1.0]),
        ("swap the dog for a cat", ["rain", "door slams", "cat barks", "thunder"], [2.0, 1.5, 1.0, 3.0]),
        (
            "add a siren before the door",
            ["rain", "siren", "door slams", "dog barks", "thunder"],
            [2.0, 1.5, 1.5, 1.0, 3.0],
        ),
        ("make event 1 4 seconds", ["rain", "door slams", "dog barks", "thunder"], [4.0, 1.5, 1.0, 3.0]),
        ("move the thunder after the rain", ["rain", "thunder", "door slams", "dog barks"], [2.0, 3.0, 1.5, 1.0]),
        ("make the dog quieter", ["rain", "door slams", "quiet, dog barks", "thunder"], [2.0, 1.5, 1.0, 3.0]),
        (
            "make the thunder farther and make the rain shorter",
            ["rain", "door slams", "dog barks", "distant, thunder"],
            [1.3, 1.5, 1.0, 3.0],
        ),
        ("sing a song", ["rain", "door slams", "dog barks", "thunder"], [2.0, 1.5, 1.0, 3.0]),
        (
            "insert a siren for 6.3 s after the barking dog",
            ["rain", "door slams", "dog barks", "siren", "thunder"],
            [2.0, 1.5, 1.0, 6.3, 3.0],
        ),
        (
            "add wind before the door, 2.5 seconds long",
            ["rain", "wind", "door slams", "dog barks", "thunder"],
            [2.0, 2.5, 1.5, 1.0, 3.0],
        ),
    ],
)
def test_demo_edit(instruction, captions, durations):
    events = [
        PlannedEvent(c, c, d)
        for c, d in zip(["rain", "door slams", "dog barks", "thunder"], [2.0, 1.5, 1.0, 3.0], strict=True)
    ]
    edited = demo_edit(events, instruction)
    assert [e.caption for e in edited] == captions
    assert [e.duration for e in edited] == durations


# -- the command --------------------------------------------------------------------------------------------


def test_edit_cli_renders_only_the_change_then_undo(tmp_path, scripted, monkeypatch):
    folder = rendered_story(tmp_path)
    before = file_bytes(folder)
    rendered: list[int] = []
    import audiostory_cli.generator.render as render_module

    real = render_module.render_latents

    def spy(dit, conditions, **kwargs):
        rendered.append(len(conditions))
        return real(dit, conditions, **kwargs)

    monkeypatch.setattr(render_module, "render_latents", spy)
    result = runner.invoke(app, ["edit", str(folder.root), "add a siren after the skid", "--yes"])
    assert result.exit_code == 0, result.output
    assert rendered == [1]
    assert "added" in result.stderr and "1 event to render" in result.stderr
    assert str(folder.root / "mix.wav") in result.stdout.split()
    after = file_bytes(folder)
    assert {k: after[k] for k in before} == before  # untouched events byte-identical
    assert "siren" in after and (folder.root / "cues" / "story.csv").read_text().count("siren") == 1
    history = runner.invoke(app, ["plan", "show", str(folder.root), "--history", "--json"])
    assert history.exit_code == 0, history.output
    turns = json.loads(history.stdout)
    assert [(t["turn"], t["instruction"], t["change"]) for t in turns] == [(1, "add a siren after the skid", "1 added")]
    piped = runner.invoke(app, ["plan", "show", str(folder.root), "--history"])  # no terminal: plain columns
    assert piped.exit_code == 0, piped.output
    assert not set("┃│┏━") & set(piped.stdout)
    assert piped.stdout.splitlines()[-1].split()[0] == "1" and "add a siren after the skid" in piped.stdout
    result = runner.invoke(app, ["edit", str(folder.root), "--undo"])
    assert result.exit_code == 0, result.output
    assert "undid: add a siren after the skid" in result.stderr
    assert [e.caption for e in folder.load().events] == CAPTIONS
    assert "siren" not in (folder.root / "cues" / "story.csv").read_text()  # re-delivered, no rendering
    assert rendered == [1]


def test_edit_cli_plan_only_then_render(tmp_path, scripted):
    folder = rendered_story(tmp_path)
    result = runner.invoke(app, ["edit", str(folder.root), "replace the dog with a cat", "--plan-only"])
    assert result.exit_code == 0, result.output
    assert "no changes" in result.stderr  # the story has no dog: nothing to do, nothing written
    assert not (folder.root / "edits.json").exists()
    result = runner.invoke(app, ["edit", str(folder.root), "make the thunder 3 seconds", "--plan-only"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(folder.story_path)]
    story = folder.load()
    assert [e.index for e in story.events if story.is_stale(e)] == [4]
    result = runner.invoke(app, ["render", str(folder.root)])
    assert result.exit_code == 0, result.output
    story = folder.load()
    assert not any(story.is_stale(e) for e in story.events)


def test_edit_cli_terminal_quit_and_apply(tmp_path, scripted, monkeypatch):
    import audiostory_cli.cli.edit as edit_cli

    folder = rendered_story(tmp_path)
    monkeypatch.setattr(edit_cli, "is_interactive", lambda: True)
    before = folder.story_path.read_bytes()
    result = runner.invoke(app, ["edit", str(folder.root), "remove the skid"], input="x\nq\n")
    assert result.exit_code == 0, result.output
    assert "please answer a, e or q" in result.stderr and "not applied" in result.stderr
    assert folder.story_path.read_bytes() == before
    result = runner.invoke(app, ["edit", str(folder.root), "remove the skid", "--plan-only"], input="a\n")
    assert result.exit_code == 0, result.output
    assert len(folder.load().events) == 3


def test_edit_cli_ctrl_c_keeps_the_applied_plan_and_render_finishes(tmp_path, scripted, monkeypatch):
    import audiostory_cli.app.pipeline as pipeline

    folder = rendered_story(tmp_path)
    real_store = pipeline._store_event
    calls = {"n": 0}

    def interrupt_second(folder_, story, event, audio):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        real_store(folder_, story, event, audio)

    monkeypatch.setattr(pipeline, "_store_event", interrupt_second)
    result = runner.invoke(app, ["edit", str(folder.root), "add a siren at the start, add a bell at the end", "--yes"])
    assert result.exit_code == 130
    assert "audiostory render" in result.stderr and "Traceback" not in result.output
    story = folder.load()
    assert [e.caption for e in story.events] == ["siren", *CAPTIONS, "bell"]
    # siren, the thunder (its tail now crossfades into the bell) and the bell: one finished, two left
    assert [story.is_stale(e) for e in story.events] == [False, False, False, False, True, True]
    monkeypatch.setattr(pipeline, "_store_event", real_store)
    result = runner.invoke(app, ["render", str(folder.root)])
    assert result.exit_code == 0, result.output
    story = folder.load()
    assert not any(story.is_stale(e) for e in story.events)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["   "], 2, "the instruction is empty"),
        (["x" * 4001], 2, "at most 4000"),
        ([], 2, "say what to change"),
        (["drop it", "--undo"], 2, "not both"),
        (["--undo"], 1, "no edit to undo"),
    ],
)
def test_bad_edit_input_is_one_line(tmp_path, args, code, message):
    folder = rendered_story(tmp_path)
    result = runner.invoke(app, ["edit", str(folder.root), *args])
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_edit_of_a_never_rendered_story_is_one_line(tmp_path):
    folder = rendered_story(tmp_path, render=False)
    result = runner.invoke(app, ["edit", str(folder.root), "remove the skid"])
    assert result.exit_code == 1
    assert "never rendered" in result.stderr and "Traceback" not in result.output


def test_edit_end_to_end_with_tiny_random(tmp_path):
    """The model's own constrained rewrite (scripted tiny-random), the diff, a partial render and the history."""
    out = tmp_path / "told"
    result = runner.invoke(
        app,
        [
            "tell",
            "rain on a tin roof, then thunder rolls, a dog barks",
            "--duration",
            "6",
            "--out",
            str(out),
            "--model",
            "tiny-random",
            "--steps",
            "2",
            "--seed",
            "11",
            "--yes",
        ],
    )
    assert result.exit_code == 0, result.output
    folder = StoryFolder(out)
    before = file_bytes(folder)
    result = runner.invoke(app, ["edit", str(out), "replace the dog with a cat", "--yes"])
    assert result.exit_code == 0, result.output
    assert "a dog barks → a cat barks" in result.stderr
    after = file_bytes(folder)
    assert after["rain on a tin roof"] == before["rain on a tin roof"]
    assert after["thunder rolls"] == before["thunder rolls"]
    story = folder.load()
    assert story.event(3).caption == "a cat barks" and story.event(3).seed == 13
    assert story.event(3).takes == ["events/03-a-dog-barks.take1.wav"]
    result = runner.invoke(app, ["plan", "show", str(out), "--history"])
    assert result.exit_code == 0 and "replace the dog with a cat" in result.stdout


def test_edit_cli_terminal_edit_then_apply(tmp_path, scripted, monkeypatch):
    import sys
    import textwrap

    import audiostory_cli.cli.edit as edit_cli

    folder = rendered_story(tmp_path)
    monkeypatch.setattr(edit_cli, "is_interactive", lambda: True)
    script = tmp_path / "editor.py"
    script.write_text(
        textwrap.dedent("""
        import pathlib, sys
        path = pathlib.Path(sys.argv[1])
        path.write_text(path.read_text().replace('caption = "siren"', 'caption = "a fire engine siren"'))
    """)
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    result = runner.invoke(app, ["edit", str(folder.root), "add a siren at the end", "--plan-only"], input="e\na\n")
    assert result.exit_code == 0, result.output
    assert "a fire engine siren" in result.stderr  # the table is shown again after the hand edit
    story = folder.load()
    assert story.events[-1].caption == "a fire engine siren"
    assert not (folder.root / "edit.proposal.toml").exists() and not (folder.root / "plan.edit.toml").exists()
    assert load_history(folder)[0].after["events"][-1]["caption"] == "a fire engine siren"
