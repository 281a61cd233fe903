"""benchmarks/run.py on tiny-random: every stage is timed, the JSON and RESULTS.md row are written, the baseline
has the official structure (one event at a time on the full 645-frame canvas) and plans the same text as ours.

No timing is asserted: only that the numbers exist and the structure is right.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import report, run
from benchmarks.baseline import OFFICIAL_FRAMES
from benchmarks.timing import MemoryProbe, StageClock


@pytest.fixture
def velocity_shapes(monkeypatch):
    """Every (batch, frames) the DiT is asked for, in call order."""
    from audiostory_cli.generator.dit import AudioDiT

    shapes: list[tuple[int, int]] = []
    original = AudioDiT.velocity

    def recording(self, latents, *args, **kwargs):
        shapes.append((int(latents.shape[0]), int(latents.shape[1])))
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(AudioDiT, "velocity", recording)
    return shapes


@pytest.mark.slow
def test_run_times_every_stage_and_records(tmp_path, velocity_shapes):
    results_md = tmp_path / "RESULTS.md"
    result = run.main(
        [
            "--model",
            "tiny-random",
            "--device",
            "cpu",
            "--duration",
            "4",
            "--events",
            "2",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--baseline-repeats",
            "0",
            "--no-startup",
            "--no-imports",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "json"),
            "--results-md",
            str(results_md),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    ours, base = result["ours"]["median"], result["baseline"]["median"]
    for summary in (ours, base, result["ours"]["cold"]):
        for key, _ in report.STAGE_ROWS:
            assert summary["stages"][key]["seconds"] > 0, key
        assert summary["dit_step_seconds"] > 0 and summary["peak_bytes"] > 0
        assert summary["story_seconds"] >= sum(s["seconds"] for s in summary["stages"].values())
    assert ours["plan_tokens"] == base["plan_tokens"] > 0
    assert result["baseline"]["same_plan_as_ours"]
    assert set(result["ratios"]) >= {"plan", "dit", "vae", "story", "dit_step"}
    assert result["whole_process_seconds"] > 0 and result["commit"]

    # structure: ours renders both events x CFG as one batch on the model's canvas, the official full window
    # (2 runs x 2 steps); the baseline renders each event alone (x CFG) on the full canvas (2 events x 2 steps).
    ours_calls, base_calls = velocity_shapes[:4], velocity_shapes[4:]
    assert ours_calls == [(4, OFFICIAL_FRAMES)] * 4
    assert base_calls == [(2, OFFICIAL_FRAMES)] * 4
    assert "sized canvas" not in report.results_row(result)
    sized = {**result, "case": {**result["case"], "canvas": "sized"}}
    assert "(sized canvas)" in report.results_row(sized)  # the opt-in is a separate, labelled row

    files = list((tmp_path / "json").glob("*-cpu-tiny-random-4s.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["case"]["steps"] == 2
    text = results_md.read_text()
    assert report.RESULTS_HEADER in text and text.rstrip().endswith("|")
    assert "tiny-random" in text.splitlines()[-1]
    assert (tmp_path / "work" / "ours" / "mix.wav").is_file()
    assert (tmp_path / "work" / "baseline" / "generated_audio.wav").is_file()


def test_stage_clock_splits_time_between_callbacks():
    with MemoryProbe(torch.device("cpu")) as probe:
        clock = StageClock(probe)
        with clock.section("plan"):
            clock("plan", 0, 3)
            clock("plan", 1, 3)
        with clock.section("render"):
            for step in range(1, 4):
                clock("dit", step, 3)
            clock("write", 1, 1)
        with clock.section("export", relabel={"write": "export"}):
            clock("write", 1, 1)
    split = clock.split()
    assert set(split) == {"idle", "plan", "dit", "write", "render", "export"}
    assert split["plan"].intervals == 3 and split["dit"].intervals == 3 and split["export"].intervals == 2
    assert len(clock.step_times("dit")) == 2
    assert sum(s.seconds for s in split.values()) == pytest.approx(clock.wall())
    assert all(s.peak_bytes > 0 for s in split.values())


def test_results_row_appends_under_one_header(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nnotes\n")
    report.append_results_row(path, "| a |")
    report.append_results_row(path, "| b |")
    text = path.read_text()
    assert text.count(report.RESULTS_HEADER) == 1
    assert text.splitlines()[-2:] == ["| a |", "| b |"]
    assert report.ratio(10.0, 2.0) == 5.0 and report.ratio(None, 1.0) is None


def test_run_accepts_a_model_folder_and_writes_outside_the_checkout(tmp_path):
    from audiostory_cli.model import save_model, tiny_random_model

    checkout = Path(run.__file__).resolve().parents[1]
    before = _benchmark_files(checkout)
    folder = save_model(tiny_random_model(), tmp_path / "my-build")
    result = run.main(
        [  # no --out, no --results-md: the JSON goes to the cache, nothing into the checkout
            "--model",
            str(folder),
            "--device",
            "cpu",
            "--duration",
            "4",
            "--events",
            "2",
            "--steps",
            "2",
            "--repeats",
            "0",
            "--no-baseline",
            "--no-startup",
            "--no-imports",
            "--threads",
            "1",
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    assert result["model"] == "folder-my-build"
    assert str(folder.resolve()) in result["model_notes"]
    assert result["ours"]["median"]["stages"]["dit"]["seconds"] > 0
    cache = tmp_path / "_cache" / "benchmarks"  # $AUDIOSTORY_CACHE, set by conftest
    assert len(list(cache.glob("*-cpu-folder-my-build-4s.json"))) == 1
    assert _benchmark_files(checkout) == before


def _benchmark_files(checkout: Path) -> dict[str, int]:
    """Every file under the checkout's benchmarks/ folder with its modification time (ns)."""
    return {
        str(p): p.stat().st_mtime_ns
        for p in (checkout / "benchmarks").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_run_defaults_keep_results_out_of_the_checkout():
    args = run.parse_args([])
    checkout = Path(run.__file__).resolve().parents[1]
    assert args.results_md is None
    assert not args.out.resolve().is_relative_to(checkout)
    assert run.parse_args(["--out", "benchmarks/results"]).out == Path("benchmarks/results")


def test_run_refuses_a_model_that_is_neither_known_nor_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run.parse_args(["--model", str(tmp_path / "missing")])
    assert stop.value.code == 2
    assert "neither one of tiny-random, demo" in capsys.readouterr().err
