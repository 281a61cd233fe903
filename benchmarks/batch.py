"""Stories per hour: `audiostory batch` (imports and model load once) vs one `audiostory tell` process per story.

    .venv/bin/python benchmarks/batch.py                          # 10 jobs of 20 s, tiny-random, 50 steps, CPU
    .venv/bin/python benchmarks/batch.py --model path/to/model-folder --device cuda   # on a GPU

Both sides run the same jobs (same prompts, seeds and steps) as fresh subprocesses, one after the other: first
``audiostory batch JOBS --out DIR``, then ``audiostory tell PROMPT --yes`` once per job. Every mix is compared
(the two sides must deliver the same audio). Prints a table on stdout and writes
``benchmarks/results/<date>-<device>-<model>-batch.json`` (walls, per-job times from batch.json, load average
before and after each side, versions). Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: `python benchmarks/batch.py`
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402

PROMPTS = (
    "rain on a tin roof, then thunder rolls",
    "footsteps on gravel, a gate creaks open",
    "a busy cafe, cups clink, an espresso machine hisses",
    "wind through pines, a distant owl",
    "a car starts, drives away on a wet road",
    "waves on a pebble beach, gulls call",
    "a clock ticks, a door slams, footsteps run",
    "a campfire crackles, crickets chirp",
    "a train passes a crossing, bells ring",
    "keys jingle, a lock turns, a door opens",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-random", help="registered model or model folder")
    p.add_argument("--jobs", type=int, default=10, help="stories on each side")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per story")
    p.add_argument("--steps", type=int, default=50, help="Euler steps per event")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every subprocess")
    p.add_argument("--out", type=Path, default=None, help="folder for the JSON (default: $AUDIOSTORY_CACHE/benchmarks)")
    p.add_argument("--workdir", type=Path, default=None, help="where stories are written (default: a temp dir)")
    args = p.parse_args(argv)
    if args.out is None:  # outside the checkout unless asked, like benchmarks/run.py
        from audiostory_cli.resources import cache_dir

        args.out = cache_dir() / "benchmarks"
    if args.jobs < 1 or args.duration <= 0 or args.steps < 1:
        p.error("--jobs and --steps must be >= 1 and --duration > 0")
    return args


def jobs_lines(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        {
            "prompt": PROMPTS[n % len(PROMPTS)],
            "duration": args.duration,
            "name": f"job{n + 1:02d}",
            "seed": n + 1,
            "steps": args.steps,
        }
        for n in range(args.jobs)
    ]


def run_timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return seconds, done


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="audiostory-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    cli = [sys.executable, "-m", "audiostory_cli"]
    common = ["--model", args.model, "--device", args.device]
    lines = jobs_lines(args)
    jobs_file = work / "jobs.jsonl"
    jobs_file.write_text("".join(json.dumps(line) + "\n" for line in lines))

    log(
        f"{args.jobs} jobs of {args.duration:g} s, {args.steps} steps, model {args.model}, {args.device}, "
        f"OMP_NUM_THREADS={args.threads}; load average {load_average()}"
    )
    load_before_batch = load_average()
    batch_seconds, _ = run_timed([*cli, "batch", str(jobs_file), "--out", str(work / "batch"), *common], env)
    load_after_batch = load_average()
    log(f"batch: {batch_seconds:.1f} s")
    records = json.loads((work / "batch" / "batch.json").read_text())["jobs"]

    tell_seconds: list[float] = []
    load_before_tell = load_average()
    for line in lines:
        seconds, _ = run_timed(
            [
                *cli,
                "tell",
                line["prompt"],
                "--duration",
                str(line["duration"]),
                "--seed",
                str(line["seed"]),
                "--steps",
                str(line["steps"]),
                "--out",
                str(work / "tell" / line["name"]),
                "--yes",
                *common,
            ],
            env,
        )
        tell_seconds.append(seconds)
        log(f"tell {line['name']}: {seconds:.1f} s")
    load_after_tell = load_average()
    same = all(
        (work / "batch" / line["name"] / "mix.wav").read_bytes()
        == (work / "tell" / line["name"] / "mix.wav").read_bytes()
        for line in lines
    )

    tell_total = sum(tell_seconds)
    result = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "commit": report.git_commit(ROOT),
        "model": args.model,
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": args.threads,
        "versions": {"python": platform.python_version()},
        "case": {"jobs": args.jobs, "duration": args.duration, "steps": args.steps},
        "batch": {
            "wall_seconds": round(batch_seconds, 2),
            "stories_per_hour": round(args.jobs / batch_seconds * 3600, 1),
            "job_seconds": [r["seconds"] for r in records],
            "job_seconds_median": statistics.median(r["seconds"] for r in records),
            "load_average_before": load_before_batch,
            "load_average_after": load_after_batch,
        },
        "tell": {
            "wall_seconds": round(tell_total, 2),
            "stories_per_hour": round(args.jobs / tell_total * 3600, 1),
            "process_seconds": [round(s, 2) for s in tell_seconds],
            "process_seconds_median": round(statistics.median(tell_seconds), 2),
            "load_average_before": load_before_tell,
            "load_average_after": load_after_tell,
        },
        "speedup": round(tell_total / batch_seconds, 2),
        "same_audio": same,
    }
    print_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    model_label = Path(args.model).name if Path(args.model).is_dir() else args.model
    path = args.out / f"{stamp}-{args.device}-{model_label}-batch.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result


def print_table(result: dict[str, Any]) -> None:
    b, t = result["batch"], result["tell"]
    case = result["case"]
    rows = [
        ("", "batch (1 process)", f"tell x {case['jobs']} processes"),
        ("wall", f"{b['wall_seconds']:.1f} s", f"{t['wall_seconds']:.1f} s"),
        ("stories per hour", f"{b['stories_per_hour']:.0f}", f"{t['stories_per_hour']:.0f}"),
        (
            "per story",
            f"{b['job_seconds_median']:.1f} s (median job)",
            f"{t['process_seconds_median']:.1f} s (median process)",
        ),
        (
            "load average",
            f"{b['load_average_before'][0]:.1f} -> {b['load_average_after'][0]:.1f}",
            f"{t['load_average_before'][0]:.1f} -> {t['load_average_after'][0]:.1f}",
        ),
    ]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    print(
        f"{case['jobs']} stories of {case['duration']:g} s, {case['steps']} steps, {result['model']} on "
        f"{result['device']}"
    )
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())
    print(f"speed-up: {result['speedup']:.2f}x; same audio on both sides: {result['same_audio']}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
