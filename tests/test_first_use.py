"""What a new user tripped over (reports from first use): each test reproduces one through the real CLI."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.story import StoryFolder

runner = CliRunner()
PROMPT = "rain on a tin roof, then thunder rolls, a dog barks"
FAST = ["--model", "tiny-random", "--steps", "2", "--seed", "11"]


def tell(tmp_path, name="story", *extra, duration="6"):
    out = tmp_path / name
    result = runner.invoke(app, ["tell", PROMPT, "--duration", duration, "--out", str(out), *FAST, *extra])
    assert result.exit_code == 0, result.output
    return out


def test_render_restores_a_missing_event_with_its_stored_seed(tmp_path):
    out = tell(tmp_path, "story", "--yes")
    folder = StoryFolder(out)
    event = folder.load().event(2)
    before, _ = sf.read(folder.resolve(event.file))
    folder.resolve(event.file).unlink()
    result = runner.invoke(app, ["render", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 of 3 events to render" in result.stderr
    restored = folder.load().event(2)
    assert restored.seed == event.seed and restored.file == event.file
    after, _ = sf.read(folder.resolve(restored.file))
    np.testing.assert_allclose(after, before, atol=1e-5)  # the same seed: the same sound (batch of 1 vs 3)


def test_render_with_nothing_to_do_delivers_without_loading_a_model(tmp_path, monkeypatch):
    out = tell(tmp_path, "story", "--yes")
    (out / "mix.wav").unlink()

    def no_model(*args, **kwargs):
        raise AssertionError("render loaded a model with nothing to render")

    monkeypatch.setattr("audiostory_cli.cli.session.load_for_command", no_model)
    result = runner.invoke(app, ["render", str(out)])
    assert result.exit_code == 0, result.output
    assert "all events rendered" in result.stderr and (out / "mix.wav").is_file()


def _clip_manifest(tmp_path, lines):
    import json

    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "a.wav"), (0.1 * rng.standard_normal(16_000)).astype(np.float32), 16_000)
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_check_data_rejects_what_training_rejects_and_names_the_line(tmp_path):
    import pytest

    from audiostory_cli.errors import TrainingError
    from audiostory_cli.train.manifest import ManifestSpec, load_manifests

    path = _clip_manifest(
        tmp_path,
        [{"audio": "a.wav", "caption": "a dog barks"}, {"audio": "a.wav", "caption": "a click", "duration": 0.01}],
    )
    result = runner.invoke(app, ["train", "check-data", str(path)])
    assert result.exit_code == 1
    assert "data.jsonl:2: error: duration 0.01 s is shorter than 0.5 s" in result.stdout
    with pytest.raises(TrainingError, match=r"data\.jsonl:2: error: duration 0\.01 s"):
        load_manifests([ManifestSpec(path)])


def test_check_data_reports_every_problem_of_a_line(tmp_path):
    path = _clip_manifest(
        tmp_path,
        [
            {"audio": "missing.wav", "caption": "", "duration": -1},
            {
                "instruction": "a story",
                "events": [
                    {"caption": "", "duration": 0.1, "audio": "a.wav"},
                    {"duration": "long", "audio": "nope.wav"},
                ],
            },
        ],
    )
    result = runner.invoke(app, ["train", "check-data", str(path), "--json"])
    assert result.exit_code == 1
    import json

    issues = json.loads(result.stdout)["issues"]
    first = [i["message"] for i in issues if i["line"] == 1]
    assert any("caption is empty" in m for m in first) and any("duration must be positive" in m for m in first)
    assert any("missing.wav not found" in m for m in first)
    second = [i["message"] for i in issues if i["line"] == 2]
    assert any("events[1].caption is empty" in m for m in second)
    assert any("events[1].duration 0.1 s is shorter" in m for m in second)
    assert any("events[2].duration must be a number" in m for m in second)
    assert any("missing 'events[2].caption'" in m for m in second)
    assert any("nope.wav not found" in m for m in second)


def test_export_qc_reports_real_gain_and_why_an_impossible_target_was_missed(tmp_path):
    import json

    from tests.story_factory import make_rendered_story

    folder = make_rendered_story(tmp_path, [3.0, 3.0], kind="noise")
    result = runner.invoke(app, ["export", str(folder.root), "--lufs", "-6", "--true-peak", "-1"])
    assert result.exit_code == 0, result.output
    qc = json.loads((folder.cues_dir / "qc.json").read_text())
    processing = qc["processing"]
    plain_gain = -6 - processing["input_lufs"]
    assert processing["static_gain_db"] <= plain_gain + 20.05  # not 484 dB (input_lufs is rounded)
    assert 0 < processing["max_limiter_reduction_db"] < 40
    assert qc["met"] is False and qc["checks"]["integrated"] is False
    assert qc["true_peak_dbtp"] <= -1.0
    [reason] = qc["not_met_because"]
    assert "-6 LUFS cannot be reached under a -1 dBTP ceiling" in reason and "lower --lufs" in reason
    assert "cannot be reached" in " ".join(result.stderr.split())


def _no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("audiostory_cli.cli.session.load_for_command", refuse)


def test_export_refuses_sample_rate_zero(tmp_path):
    from tests.story_factory import make_rendered_story

    folder = make_rendered_story(tmp_path, [2.0])
    result = runner.invoke(app, ["export", str(folder.root), "--sample-rate", "0"])
    assert result.exit_code == 2 and "--sample-rate 0 is not supported" in result.stderr
    assert not folder.mix_path.exists()


def test_render_and_regen_check_cues_before_any_work(tmp_path, monkeypatch):
    from tests.story_factory import make_rendered_story

    folder = make_rendered_story(tmp_path, [2.0, 2.0])
    story = folder.load()
    story.events[0].seed = 5  # stale: render would have work to do
    folder.save(story)
    _no_model(monkeypatch)
    result = runner.invoke(app, ["render", str(folder.root), "--cues", "story,protools"])
    assert result.exit_code == 2 and "unknown cue format 'protools'" in result.stderr
    before = folder.story_path.read_text()
    result = runner.invoke(app, ["regen", str(folder.root), "2", "--cues", "protools"])
    assert result.exit_code == 2 and "unknown cue format 'protools'" in result.stderr
    assert folder.story_path.read_text() == before  # the plan was not changed


def _input_wav(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "in.wav"
    sf.write(str(path), (0.1 * rng.standard_normal((44_100 * 3, 2))).astype(np.float32), 44_100)
    return path


def test_continue_checks_cues_before_loading_and_removes_its_folder_on_failure(tmp_path, monkeypatch):
    from audiostory_cli.errors import ModelError

    wav, out = _input_wav(tmp_path), tmp_path / "after"
    _no_model(monkeypatch)
    args = ["continue", str(wav), "birds return", "--duration", "6", "--model", "tiny-random", "--out", str(out)]
    result = runner.invoke(app, [*args, "--cues", "protools"])
    assert result.exit_code == 2 and "unknown cue format" in result.stderr and not out.exists()

    def fail(*a, **k):
        raise ModelError("cannot load the model")

    monkeypatch.setattr("audiostory_cli.cli.session.load_for_command", fail)
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "cannot load the model" in result.stderr
    assert not out.exists()  # as `tell` does


def test_eval_refuses_a_max_duration_below_the_shortest_story(monkeypatch):
    _no_model(monkeypatch)
    result = runner.invoke(app, ["eval", "--model", "tiny-random", "--max-duration", "5"])
    assert result.exit_code == 2 and "--max-duration 5 is out of range; use 10 to" in result.stderr


def _all_commands():
    import click
    import typer

    root = typer.main.get_command(app)
    stack = [(root.name, root)]
    while stack:
        name, command = stack.pop()
        yield name, command
        if isinstance(command, click.Group):
            stack += [(f"{name} {n}", c) for n, c in command.commands.items()]


def test_no_help_text_loses_brackets_to_markup():
    from rich.markup import render

    for name, command in _all_commands():
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            assert render(text).plain == text.replace("\\[", "["), f"{name}: markup eats part of {text!r}"
    result = runner.invoke(app, ["tell", "--help"], terminal_width=200)
    assert "[r]ender/[e]dit/[q]uit" in " ".join(result.stdout.split())


def test_describe_does_not_suggest_tiny_random(tmp_path, monkeypatch, models_dir):
    _no_model(monkeypatch)  # models_dir: no bundled demo to fall back on
    result = runner.invoke(app, ["describe", str(_input_wav(tmp_path))])
    assert result.exit_code == 1
    assert "audiostory models download audiostory-3b" in result.stderr
    assert "--model tiny-random" not in result.stderr


def test_device_cuda_without_a_gpu_says_no_gpu_was_found(monkeypatch):
    import pytest
    import torch

    from audiostory_cli.errors import DeviceError
    from audiostory_cli.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(DeviceError, match="no CUDA GPU was found") as caught:
        resolve_device("cuda")
    assert "install a CUDA build" not in str(caught.value)
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError, match="install a CUDA build of torch"):
        resolve_device("cuda")


def _paths_in(summary):
    for key in ("story", "mix", "qc", "new_part"):
        if summary.get(key):
            yield summary[key]
    for key in ("stems", "cues", "removed"):
        yield from summary.get(key, [])
    for event in summary.get("events", []):
        if event.get("file"):
            yield event["file"]


def test_continue_only_new_prints_the_mix_too_says_the_part_is_not_normalised_and_json_paths_are_absolute(
    tmp_path, monkeypatch
):
    import json
    import os

    monkeypatch.chdir(tmp_path)
    _input_wav(tmp_path)
    result = runner.invoke(
        app,
        [
            "continue",
            "in.wav",
            "rain, then thunder",
            "-d",
            "3",
            "--out",
            "after",
            "--model",
            "tiny-random",
            "--steps",
            "2",
            "--seed",
            "3",
            "--only-new",
        ],
    )
    assert result.exit_code == 0, result.output
    printed = result.stdout.split()
    assert os.path.join("after", "mix.wav") in printed and os.path.join("after", "continuation.wav") in printed
    assert "not normalised on its own" in " ".join(result.stderr.split())
    for args in (["render", "after", "--json"], ["export", "after", "--force", "--stems", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        paths = list(_paths_in(json.loads(result.stdout)))
        assert len(paths) >= 4 and all(os.path.isabs(p) for p in paths), paths


def test_stem_groups_have_their_own_folder_and_each_folder_sums_to_the_mix(tmp_path):
    from tests.story_factory import make_rendered_story

    folder = make_rendered_story(tmp_path, [2.0, 2.0, 2.0], stems=["fx", "amb", "fx"], crossfade=0.5)
    result = runner.invoke(
        app, ["export", str(folder.root), "--stems", "--stem-groups", "--sample-rate", "48000", "--bit-depth", "32"]
    )
    assert result.exit_code == 0, result.output
    mix, _ = sf.read(str(folder.mix_path), always_2d=True)
    event_files = sorted(folder.stems_dir.glob("*.wav"))
    group_files = sorted(folder.stem_groups_dir.glob("*.wav"))
    assert [p.name[:3] for p in event_files] == ["01-", "02-", "03-"]
    assert [p.name for p in group_files] == ["amb.wav", "fx.wav"]
    for files in (event_files, group_files):
        total = sum(sf.read(str(p), always_2d=True)[0] for p in files)
        assert np.max(np.abs(total - mix)) < 1e-4  # each folder alone sums to the mix, not twice it
    shown = runner.invoke(app, ["plan", "show", str(folder.root)]).stdout.splitlines()
    assert shown[1].split()[-3:] == ["group", "seed", "status"]
    notes = ("bridge:", "canvas:", "join:")  # how the plan renders, printed under the table
    rows = [line.split() for line in shown[2:] if line.strip() and not line.startswith(notes)]
    assert [row[-3] for row in rows] == ["fx", "amb", "fx"]  # each event's group, before its seed and status


def test_an_old_take_keeps_its_own_caption_and_the_instruction_is_a_sentence(tmp_path):
    out = tell(tmp_path, "story", "--yes")
    folder = StoryFolder(out)
    story = folder.load()
    assert story.instruction.endswith("a dog barks. The total duration is 6.0 seconds.")
    old = story.event(3).file
    result = runner.invoke(app, ["regen", str(out), "3", "--caption", "a heavier door slam"])
    assert result.exit_code == 0, result.output
    event = folder.load().event(3)
    assert event.file.startswith("events/03-a-heavier-door-slam")
    assert event.takes == [old.rsplit(".s", 1)[0] + ".take1.wav"]  # "03-a-dog-barks.take1.wav", the old words


def test_an_empty_story_json_is_a_damaged_file_not_a_version_problem(tmp_path):
    folder = StoryFolder(tmp_path / "story")
    folder.root.mkdir()
    folder.story_path.write_text("{}")
    result = runner.invoke(app, ["plan", "show", str(folder.root)])
    assert result.exit_code == 1
    assert "story.json is damaged" in result.stderr and "schema_version is" not in result.stderr


def test_a_garbage_mp3_is_one_clean_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(7).bytes(20_000))
    done = subprocess.run(
        [sys.executable, "-m", "audiostory_cli", "describe", str(path), "--model", "tiny-random"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot read input audio") and "not a valid MP3 file" in lines[-1]
    assert "does not exist" not in done.stderr and "libmpg123" not in done.stderr
    assert len(lines) == 2  # the "audiostory describe: ..." header, then the error


def test_accented_prompts_keep_their_letters_in_folder_names():
    from pathlib import Path

    from audiostory_cli.app.pipeline import default_out_dir
    from audiostory_cli.story.plan import event_slug

    assert default_out_dir("un café sous la pluie, puis l'orage") == Path("un-cafe-sous-la-pluie")
    assert event_slug("Straße bei Nacht") == "strasse-bei-nacht"


def test_exit_codes_are_2_for_usage_errors_and_1_for_everything_else(tmp_path):
    from tests.story_factory import make_rendered_story

    folder = make_rendered_story(tmp_path, [2.0])
    usage = [
        ["tell", "rain", "-d", "5", "--model", "nope", "--out", str(tmp_path / "a")],
        ["tell", "rain", "-d", "5", "--preset", "nope", "--out", str(tmp_path / "b")],
        ["export", str(folder.root), "--loudness", "nope"],
        ["models", "verify", "nope"],
        ["models", "path", "nope"],
        ["models", "verify", "tiny-random"],
        ["models", "path", "tiny-random"],
        ["render", str(folder.root), "--model", "nope"],
    ]
    for args in usage:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
    for args in (["render", str(tmp_path / "missing")], ["describe", str(tmp_path / "missing.wav")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)


def test_describe_checks_max_tokens_before_the_model(tmp_path, monkeypatch):
    _no_model(monkeypatch)
    result = runner.invoke(app, ["describe", str(_input_wav(tmp_path)), "--model", "tiny-random", "--max-tokens", "0"])
    assert result.exit_code == 2 and "--max-tokens 0 is out of range" in result.stderr
