"""`tell`, `render`, `regen` end to end with the tiny-random model, through the real CLI."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story import StoryFolder

runner = CliRunner()
PROMPT = "rain on a tin roof, then thunder rolls, a dog barks"
FAST = ["--model", "tiny-random", "--steps", "2", "--seed", "11"]


def tell(tmp_path, name="story", *extra, duration="6", prompt=PROMPT):
    out = tmp_path / name
    result = runner.invoke(app, ["tell", prompt, "--duration", duration, "--out", str(out), *FAST, *extra])
    return out, result


def event_bytes(folder: StoryFolder) -> dict[int, bytes]:
    story = folder.load()
    return {e.index: folder.resolve(e.file).read_bytes() for e in story.events if e.file}


def test_tell_yes_delivers_everything(tmp_path):
    out, result = tell(tmp_path, "story", "--yes", "--stems")
    assert result.exit_code == 0, result.output
    folder = StoryFolder(out)
    story = folder.load()
    assert len(story.events) == 3 and all(e.status == "rendered" for e in story.events)
    for event in story.events:
        audio, rate = sf.read(folder.resolve(event.file), always_2d=True)
        assert rate == story.sample_rate
        assert audio.shape[0] == round(story.render_length(event) * rate)
    info = sf.info(out / "mix.wav")
    assert info.samplerate == 48000 and info.frames == 6 * 48000  # the total, to the sample
    assert len(list((out / "stems").glob("*.wav"))) == 3
    for name in ("story.csv", "reaper.csv", "audacity.txt", "story.edl", "qc.json"):
        assert (out / "cues" / name).is_file()
    printed = result.stdout.split()
    assert str(out / "mix.wav") in printed and str(out / "story.json") in printed


def test_tell_json_summary(tmp_path):
    out, result = tell(tmp_path, "story", "--yes", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mix"] == str(out / "mix.wav")
    assert [e["index"] for e in summary["events"]] == [1, 2, 3]


def test_plan_only_then_render_equals_tell(tmp_path):
    out_a, result = tell(tmp_path, "a", "--yes")
    assert result.exit_code == 0, result.output
    out_b, result = tell(tmp_path, "b", "--plan-only")
    assert result.exit_code == 0, result.output
    assert not (out_b / "events").exists()
    result = runner.invoke(app, ["render", str(out_b)])
    assert result.exit_code == 0, result.output
    story_a, story_b = StoryFolder(out_a).load(), StoryFolder(out_b).load()
    for event_a, event_b in zip(story_a.events, story_b.events, strict=True):
        audio_a, _ = sf.read(out_a / event_a.file)
        audio_b, _ = sf.read(out_b / event_b.file)
        np.testing.assert_array_equal(audio_a, audio_b)  # float WAVs carry a timestamped PEAK chunk
    mix_a, _ = sf.read(out_a / "mix.wav")
    mix_b, _ = sf.read(out_b / "mix.wav")
    np.testing.assert_array_equal(mix_a, mix_b)


def test_regen_changes_only_that_event_and_keeps_the_take(tmp_path):
    out, result = tell(tmp_path, "story", "--yes")
    assert result.exit_code == 0, result.output
    folder = StoryFolder(out)
    before = event_bytes(folder)
    old_file = folder.load().event(2).file
    result = runner.invoke(app, ["regen", str(out), "2", "--seed", "7"])
    assert result.exit_code == 0, result.output
    story = folder.load()
    after = event_bytes(folder)
    assert after[1] == before[1] and after[3] == before[3]
    assert after[2] != before[2]
    event = story.event(2)
    assert event.seed == 7 and event.file != old_file
    assert event.takes == ["events/02-thunder-rolls.take1.wav"]
    assert folder.resolve(event.takes[0]).read_bytes() == before[2]
    assert (out / "plan.previous.json").is_file()


def test_regen_with_caption_rerenders_with_new_words(tmp_path):
    out, result = tell(tmp_path, "story", "--yes")
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["regen", str(out), "3", "--caption", "a heavier door slam, metallic echo"])
    assert result.exit_code == 0, result.output
    story = StoryFolder(out).load()
    assert story.event(3).caption == "a heavier door slam, metallic echo"
    assert story.event(3).file.startswith("events/03-a-heavier-door-slam")
    assert "a heavier door slam" in (out / "cues" / "story.csv").read_text()


def test_interrupted_render_resumes_with_only_missing_events(tmp_path, monkeypatch):
    import audiostory_cli.app.pipeline as pipeline

    out, result = tell(tmp_path, "story", "--plan-only")
    assert result.exit_code == 0, result.output
    real_store = pipeline._store_event
    calls = {"n": 0}

    def crash_after_two(folder, story, event, audio):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        real_store(folder, story, event, audio)

    monkeypatch.setattr(pipeline, "_store_event", crash_after_two)
    result = runner.invoke(app, ["render", str(out)])
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.output
    story = StoryFolder(out).load()  # still valid
    assert [e.status for e in story.events] == ["rendered", "rendered", "planned"]
    kept = event_bytes(StoryFolder(out))
    monkeypatch.setattr(pipeline, "_store_event", real_store)
    rendered: list[int] = []
    real_render_latents = __import__("audiostory_cli.generator.render", fromlist=["render_latents"]).render_latents

    def spy(dit, conditions, **kwargs):
        rendered.append(len(conditions))
        return real_render_latents(dit, conditions, **kwargs)

    monkeypatch.setattr("audiostory_cli.generator.render.render_latents", spy)
    result = runner.invoke(app, ["render", str(out)])
    assert result.exit_code == 0, result.output
    assert rendered == [1]  # only the missing event went through the DiT
    after = event_bytes(StoryFolder(out))
    assert after[1] == kept[1] and after[2] == kept[2]
    assert (out / "mix.wav").is_file()


def test_long_story_beyond_the_dit_window(tmp_path):
    out, result = tell(tmp_path, "long", "--yes", duration="95", prompt="a long steady rain")
    assert result.exit_code == 0, result.output
    story = StoryFolder(out).load()
    assert any(e.duration > 30 for e in story.events)  # longer than the 29.95 s window
    assert sf.info(out / "mix.wav").frames == 95 * 48000


def test_tty_flow_edit_then_render(tmp_path, monkeypatch):
    queue = tmp_path / "q.json"
    queue.write_text(json.dumps(["a distant train horn"]))
    script = tmp_path / "editor.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, pathlib, sys
        caption = json.loads(pathlib.Path({str(queue)!r}).read_text())[0]
        path = pathlib.Path(sys.argv[1])
        path.write_text(path.read_text().replace('caption = "thunder rolls"', f'caption = "{{caption}}"'))
    """)
    )
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    # answer: edit first, then render
    out = tmp_path / "story2"
    result = runner.invoke(app, ["tell", PROMPT, "--duration", "5", "--out", str(out), *FAST, "--ask"], input="e\nr\n")
    assert result.exit_code == 0, result.output
    story = StoryFolder(out).load()
    assert story.event(2).caption == "a distant train horn"
    assert all(e.status == "rendered" for e in story.events)
    assert (out / "plan.previous.json").is_file()


def test_tty_flow_quit_keeps_the_plan(tmp_path):
    out = tmp_path / "story"
    result = runner.invoke(app, ["tell", PROMPT, "--duration", "5", "--out", str(out), *FAST, "--ask"], input="q\n")
    assert result.exit_code == 0, result.output
    assert StoryFolder(out).load().events[0].status == "planned"
    assert not (out / "mix.wav").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tell", "   ", "--duration", "5"], "prompt is empty"),
        (["tell", PROMPT, "--duration", "0"], "--duration 0 is out of range; use 1 to 3600 seconds"),
        (["tell", PROMPT, "--duration", "-5"], "out of range"),
        (["tell", PROMPT, "--duration", "1e9"], "out of range"),
        (["tell", PROMPT, "--duration", "5", "--style", "polka"], "unknown --style 'polka'"),
        (["tell", PROMPT, "--duration", "5", "--preset", "loud"], "loud"),
    ],
)
def test_bad_tell_input_is_one_line(tmp_path, args, message):
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "x"), "--model", "tiny-random"])
    assert result.exit_code != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_unknown_model_is_one_line(tmp_path):
    result = runner.invoke(app, ["tell", PROMPT, "--duration", "5", "--out", str(tmp_path / "x"), "--model", "nope"])
    assert result.exit_code == 2  # a usage error, like an unknown --preset
    assert "nope" in result.stderr and "Traceback" not in result.output


def test_out_on_non_story_folder_needs_force(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["tell", PROMPT, "--duration", "5", "--out", str(busy), *FAST, "--yes"])
    assert result.exit_code == 1
    assert "not empty and is not a story folder" in result.stderr
    assert (busy / "notes.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1


def test_regen_of_missing_event_is_one_line(tmp_path):
    out, result = tell(tmp_path, "story", "--plan-only")
    assert result.exit_code == 0
    before = (out / "story.json").read_bytes()
    result = runner.invoke(app, ["regen", str(out), "9"])
    assert result.exit_code == 1
    assert "event 9 does not exist; this story has events 1..3" in result.stderr
    assert (out / "story.json").read_bytes() == before
