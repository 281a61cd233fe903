"""`audiostory batch JOBS.jsonl --out DIR` with the tiny-random model: story folders, batch.json, resume,
isolated failures, bad input, and two torchrun processes (gloo) giving the one-process audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from audiostory_cli.app.batch import Job, Launch, deal, derive_seed, launch_from_env, read_jobs
from audiostory_cli.cli import app
from audiostory_cli.story import StoryFolder

runner = CliRunner()
FAST = {"steps": 2, "duration": 3}


def write_jobs(path: Path, *lines: dict | str) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def batch(*args: str):
    return runner.invoke(app, ["batch", *args, "--model", "tiny-random", "--device", "cpu"])


def records(out: Path) -> dict[str, dict]:
    return {r["name"] or f"line{r['line']}": r for r in json.loads((out / "batch.json").read_text())["jobs"]}


def event_audio(folder: Path) -> dict[str, np.ndarray]:
    story = StoryFolder(folder).load()
    return {e.file: sf.read(folder / e.file)[0] for e in story.events}  # float WAVs carry a timestamped PEAK chunk


def test_batch_makes_ordinary_story_folders_like_tell(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"prompt": "rain, thunder", "name": "rain", "seed": 11, "stems": True, **FAST},
        {"prompt": "a dog barks, a door slams", "cues": ["story"], **FAST},
    )
    out = tmp_path / "out"
    result = batch(str(jobs), "--out", str(out))
    assert result.exit_code == 0, result.output
    found = records(out)
    assert [r["status"] for r in found.values()] == ["done", "done"]
    rain, dog = found["rain"], found["a-dog-barks-a-door"]
    assert rain["seed"] == 11 and rain["rendered"] == 2 and len(rain["stems"]) == 2 and rain["rank"] == 0
    assert dog["seed"] == derive_seed("a-dog-barks-a-door", "a dog barks, a door slams", 3.0)  # none given
    assert dog["cues"] == ["a-dog-barks-a-door/cues/story.csv"] and dog["stems"] == []
    for record in found.values():
        assert (out / record["mix"]).is_file() and (out / record["qc"]).is_file()
    assert result.stdout.split() == [str(out / rain["mix"]), str(out / dog["mix"])]

    told = tmp_path / "told"  # the same job through `tell` gives the same story and audio
    result = runner.invoke(
        app,
        [
            "tell",
            "rain, thunder",
            "--duration",
            "3",
            "--steps",
            "2",
            "--seed",
            "11",
            "--model",
            "tiny-random",
            "--stems",
            "--out",
            str(told),
            "--yes",
        ],
    )
    assert result.exit_code == 0, result.output
    assert StoryFolder(told).load().events == StoryFolder(out / "rain").load().events
    for (name, a), b in zip(event_audio(out / "rain").items(), event_audio(told).values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(sf.read(out / "rain" / "mix.wav")[0], sf.read(told / "mix.wav")[0])

    result = runner.invoke(app, ["render", str(out / "rain")])  # every command accepts the folder
    assert result.exit_code == 0, result.output
    assert "all events rendered" in result.stderr


def test_batch_loads_each_model_once_per_process(tmp_path):
    from audiostory_cli.app.batch import run_batch
    from audiostory_cli.model import load_model
    from audiostory_cli.runtime import cpu_runtime

    jobs = read_jobs(
        write_jobs(tmp_path / "jobs.jsonl", *({"prompt": f"wind {n}, birds", **FAST} for n in range(3))),
        default_model="tiny-random",
    )
    runtime, loads = cpu_runtime(), []

    def load(ref: str):
        loads.append(ref)
        return load_model(ref, runtime)

    result = run_batch(jobs, tmp_path / "out", load=load, runtime=runtime)
    assert result.failed == 0 and [r.status for r in result.records] == ["done"] * 3
    assert loads == ["tiny-random"] and result.model_loads == 1
    again = run_batch(jobs, tmp_path / "out", load=load, runtime=runtime)  # all finished: no load at all
    assert all(r.skipped for r in again.records) and loads == ["tiny-random"]


def test_batch_isolates_failures_and_resumes_with_render_semantics(tmp_path):
    out = tmp_path / "out"
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"prompt": "rain, thunder", "name": "a", **FAST},
        {"prompt": "wind, birds", "name": "b", **FAST},
        {"prompt": "a dog barks", "name": "c", **FAST},
        {"prompt": "steps", "name": "taken", **FAST},
        '{"prompt": "broken"',
    )
    (out / "taken").mkdir(parents=True)
    (out / "taken" / "notes.txt").write_text("mine")
    (out / "batch.json").write_text(json.dumps({"batch_version": 1, "jobs": []}))
    result = batch(str(jobs), "--out", str(out))
    assert result.exit_code == 1 and "Traceback" not in result.output
    found = records(out)
    assert [found[n]["status"] for n in "abc"] == ["done"] * 3
    assert found["taken"]["status"] == "failed" and "holds other files" in found["taken"]["error"]
    assert (found["line5"]["status"], found["line5"]["name"]) == ("failed", None)
    assert found["line5"]["error"].startswith("not valid JSON")
    assert (out / "taken" / "notes.txt").read_text() == "mine"  # never touched
    assert "jobs.jsonl:5" in result.stderr and "\n" not in found["taken"]["error"]

    # interrupted states: a's export never happened, one of b's events was never rendered
    (out / "a" / "mix.wav").unlink()
    (out / "a" / "cues" / "qc.json").unlink()
    b = StoryFolder(out / "b")
    story = b.load()
    kept = {n: event_audio(out / n) for n in "abc"}
    missing = story.events[1].file
    (out / "b" / missing).unlink()
    story.events[1].status, story.events[1].file = "planned", None
    b.save(story)
    unchanged = {p: p.stat().st_mtime_ns for p in out.glob("*/events/*.wav")}
    result = batch(str(jobs), "--out", str(out))
    assert result.exit_code == 1, result.output
    found = records(out)
    assert (found["a"]["status"], found["a"]["rendered"], found["a"]["skipped"]) == ("done", 0, False)
    assert (found["b"]["rendered"], found["c"]["skipped"]) == (1, True)
    assert (out / "a" / "mix.wav").is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in unchanged.items())  # finished events untouched
    for name in "abc":  # the missing one rendered again (alone, not in a batch of two: float rounding only)
        assert event_audio(out / name).keys() == kept[name].keys()
    np.testing.assert_allclose(event_audio(out / "b")[missing], kept["b"][missing], atol=1e-5)

    # a line changed after its story was made is refused, the folder kept
    write_jobs(jobs, {"prompt": "rain, thunder", "name": "a", "duration": 4, "steps": 2})
    result = batch(str(jobs), "--out", str(out))
    assert result.exit_code == 1
    assert "whose duration, seed differ from this line" in records(out)["a"]["error"]  # the seed derives from it
    result = batch(str(jobs), "--out", str(out))  # and stays refused on the next run
    assert result.exit_code == 1 and "whose duration, seed differ" in records(out)["a"]["error"]
    assert StoryFolder(out / "a").load().total_duration == 3


def test_batch_check_reports_every_bad_line_and_writes_nothing(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"prompt": "rain", **FAST},
        "not json",
        {"prompt": "rain", "duraton": 3},
        {"prompt": "rain", "duration": "3"},
        {"prompt": "wind", "duration": 3, "seed": 1.5},
        {"prompt": "wind", "duration": 3, "name": "../up"},
        {"prompt": "wind", "duration": 3, "style": "polka"},
        ["a list"],
        {"prompt": "rain", "duration": 5},
        {"prompt": "wind", "name": "RAIN", **FAST},
    )
    out = tmp_path / "out"
    result = batch(str(jobs), "--out", str(out), "--check")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[1] for line in lines] == [str(n) for n in range(2, 11)]
    text = result.stdout
    assert "not valid JSON" in text and "unknown key 'duraton' (did you mean 'duration'?)" in text
    assert '"duration" must be a number' in text and '"seed" must be a whole number' in text
    assert "not a plain folder name" in text and "unknown style 'polka'" in text and "JSON object" in text
    assert "name 'rain' is already used on line 1" in text and "name 'RAIN' is already used on line 1" in text
    assert "10 line(s): 1 valid job(s); 9 error(s); 1 to make" in result.stderr
    assert not out.exists()

    write_jobs(jobs, {"prompt": "rain", **FAST})
    result = batch(str(jobs), "--out", str(out), "--check", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["states"] == {"rain": "new"} and not out.exists()


@pytest.mark.parametrize("case", ["missing", "folder", "binary", "empty", "out-taken", "out-file", "no-out"])
def test_batch_bad_input_is_one_line(tmp_path, case):
    jobs = write_jobs(tmp_path / "jobs.jsonl", {"prompt": "rain", **FAST})
    out = tmp_path / "out"
    expected = {
        "missing": "not found",
        "folder": "is not a file",
        "binary": "not UTF-8",
        "empty": "has no jobs",
        "out-taken": "holds other files and no batch.json",
        "out-file": "is a file",
        "no-out": "give --out",
    }[case]
    if case == "missing":
        jobs = tmp_path / "nope.jsonl"
    elif case == "folder":
        jobs = tmp_path
    elif case == "binary":
        jobs.write_bytes(b'{"prompt": "\xff"}\n')
    elif case == "empty":
        jobs.write_text("\n \n")
    elif case == "out-taken":
        out.mkdir()
        (out / "mine.wav").write_bytes(b"x")
    elif case == "out-file":
        out.write_text("x")
    result = batch(str(jobs), *([] if case == "no-out" else ["--out", str(out)]))
    assert result.exit_code == (2 if case == "no-out" else 1), result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    if case == "out-taken":
        assert sorted(p.name for p in out.iterdir()) == ["mine.wav"]


def test_jobs_are_dealt_once_each_and_grouped_by_model():
    jobs = [
        Job(line=n, name=f"j{n}", prompt="p", duration=3, seed=n, model="m1" if n % 3 else "m2") for n in range(1, 11)
    ]
    for world in (1, 2, 3, 4):
        parts = [deal(jobs, Launch(rank=r, world=world)) for r in range(world)]
        assert sorted(j.line for part in parts for j in part) == list(range(1, 11))
        for part in parts:  # each process meets every model in one run of jobs: one load each
            models = [j.model for j in part]
            assert models == sorted(models, key=["m1", "m2"].index)
    assert launch_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Launch(1, 2, 1)
    assert launch_from_env({}) == Launch(0, 1, 0)
    with pytest.raises(Exception, match="does not fit"):
        launch_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_two_processes_give_the_one_process_audio(tmp_path):
    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"prompt": "rain, thunder", "name": "a", **FAST},
        {"prompt": "wind, birds", "name": "b", **FAST},
        {"prompt": "a dog barks, a door slams", "name": "c", **FAST},
        {"prompt": "bad", "duration": -1},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    cli = ["-m", "audiostory_cli", "batch", str(jobs), "--model", "tiny-random", "--device", "cpu"]
    one = subprocess.run(
        [sys.executable, *cli, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=600
    )
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *cli,
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 1 and two.returncode != 0, two.stderr[-3000:]  # the bad line fails both
    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    assert {r["rank"] for r in b.values()} == {0, 1, None}  # both processes worked; the bad line ran nowhere
    assert [r["status"] for r in b.values()] == ["done", "done", "done", "failed"]
    assert two.stderr.count("audiostory batch:") == 1 and two.stdout.count("mix.wav") == 3  # rank 0 talks
    for name in "abc":
        assert a[name]["seed"] == b[name]["seed"]
        one_audio, two_audio = event_audio(tmp_path / "one" / name), event_audio(tmp_path / "two" / name)
        assert one_audio.keys() == two_audio.keys()
        for file in one_audio:
            np.testing.assert_array_equal(one_audio[file], two_audio[file], err_msg=f"{name}/{file}")
        assert (tmp_path / "one" / name / "mix.wav").read_bytes() == (tmp_path / "two" / name / "mix.wav").read_bytes()


def test_interrupted_batch_keeps_finished_work_and_resumes(tmp_path, monkeypatch):
    from audiostory_cli.app import pipeline

    jobs = write_jobs(
        tmp_path / "jobs.jsonl",
        {"prompt": "rain, thunder", "name": "a", **FAST},
        {"prompt": "wind, birds", "name": "b", **FAST},
    )
    out = tmp_path / "out"
    real_store, stored = pipeline._store_event, []

    def interrupt_in_b(folder, story, event, audio):
        if folder.root.name == "b" and stored.count("b") == 1:
            raise KeyboardInterrupt
        stored.append(folder.root.name)
        real_store(folder, story, event, audio)

    monkeypatch.setattr(pipeline, "_store_event", interrupt_in_b)
    result = batch(str(jobs), "--out", str(out))
    assert result.exit_code == 130 and "run the same command again" in result.stderr
    found = records(out)
    assert (found["a"]["status"], found["b"]["status"]) == ("done", "pending")  # written on the way out
    monkeypatch.setattr(pipeline, "_store_event", real_store)
    result = batch(str(jobs), "--out", str(out))
    assert result.exit_code == 0, result.output
    found = records(out)
    assert (found["a"]["skipped"], found["b"]["rendered"], found["b"]["status"]) == (True, 1, "done")
