"""benchmarks/batch.py end to end on one tiny job: both sides run, deliver the same audio, and the JSON is written.

No timing is asserted. Slow (three fresh interpreters): runs with AUDIOSTORY_SLOW=1.
"""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import batch as bench


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AUDIOSTORY_SLOW") != "1", reason="slow: set AUDIOSTORY_SLOW=1")
def test_batch_benchmark_runs_both_sides(tmp_path, capsys):
    result = bench.main(
        [
            "--jobs",
            "1",
            "--duration",
            "3",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "json"),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    assert result["same_audio"] is True
    assert result["batch"]["stories_per_hour"] > 0 and len(result["tell"]["process_seconds"]) == 1
    (written,) = (tmp_path / "json").glob("*-cpu-tiny-random-batch.json")
    assert json.loads(written.read_text())["speedup"] == result["speedup"]
    assert "stories per hour" in capsys.readouterr().out


def test_batch_benchmark_jobs_are_distinct_and_seeded():
    lines = bench.jobs_lines(bench.parse_args(["--jobs", "12", "--duration", "20"]))
    assert len({line["name"] for line in lines}) == 12 and [line["seed"] for line in lines] == list(range(1, 13))
    assert all(line["duration"] == 20 and line["steps"] == 50 for line in lines)


def test_batch_benchmark_writes_outside_the_checkout_unless_asked(isolated_env):
    from pathlib import Path

    assert bench.parse_args([]).out == isolated_env / "_cache" / "benchmarks"  # $AUDIOSTORY_CACHE/benchmarks
    assert bench.parse_args(["--out", "here"]).out == Path("here")
