"""Time a whole story, stage by stage, on our path and on the official pipeline's structure, with the same weights.

    .venv/bin/python benchmarks/run.py --model tiny-random --duration 20
    .venv/bin/python benchmarks/run.py --model audiostory-3b-random --scale mid --duration 20 --steps 4
    .venv/bin/python benchmarks/run.py --model audiostory-3b-random --device cuda --duration 60   # on a GPU
    .venv/bin/python benchmarks/run.py --model demo --duration 20
    .venv/bin/python benchmarks/run.py --model path/to/model-folder --duration 20   # e.g. a `train demo` build

Stages: imports (a clean subprocess), model load, plan decode (tokens/s), bridge pass, DiT (per step and total),
VAE decode, mix/export; peak memory (CUDA max allocated, or process RSS on a CPU); the first progress line and
the whole process of ``audiostory tell`` (a subprocess). Our path runs once cold, then ``--repeats`` times warm
(median). ``--baseline`` (on by default) then runs the official structure (``benchmarks/baseline.py``) on the
same weights and reports baseline/ours per stage. Prints a table on stdout and writes
``<date>-<device>-<model>.json`` to ``--out`` (default ``$AUDIOSTORY_CACHE/benchmarks``, outside the checkout);
``--results-md benchmarks/RESULTS.md`` also appends a row there, for a run worth keeping.
"""

from __future__ import annotations

import time

_IMPORT_START = time.perf_counter()

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from audiostory_cli.planner.decoding import DecodeEngine  # noqa: E402
from audiostory_cli.resources import cache_dir  # noqa: E402
from audiostory_cli.runtime import make_runtime  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.baseline import place_official, run_baseline  # noqa: E402
from benchmarks.bench_models import (  # noqa: E402
    MODEL_CHOICES,
    RANDOM_FULL,
    SCALES,
    count_parameters,
    load_bench_model,
)
from benchmarks.ours import StoryCase, default_events, run_ours  # noqa: E402
from benchmarks.timing import MemoryProbe, StageClock, max_rss_bytes  # noqa: E402

_IMPORT_SECONDS = time.perf_counter() - _IMPORT_START
INFERENCE_MODULES = (
    "audiostory_cli.app.pipeline",
    "audiostory_cli.model",
    "audiostory_cli.planner.api",
    "audiostory_cli.generator.render",
    "audiostory_cli.generator.vae",
    "audiostory_cli.generator.text_encoder",
    "audiostory_cli.app.export",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default="tiny-random",
        type=model_choice,
        help=f"{', '.join(MODEL_CHOICES)}, or a model folder (e.g. one `audiostory train demo` wrote)",
    )
    p.add_argument("--scale", default="full", choices=SCALES, help="size of audiostory-3b-random (see bench_models)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default=None, help="override our path's dtype (fp32, bf16, fp16)")
    p.add_argument("--duration", type=float, default=60.0, help="story length in seconds")
    p.add_argument("--events", type=int, default=None, help="events in the story (default: about one per 10 s)")
    p.add_argument("--steps", type=int, default=50, help="Euler steps (official: 50)")
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument(
        "--canvas",
        choices=("fixed", "sized"),
        default=None,
        help="our DiT canvas (default: the model's; fixed for audiostory-3b-random, as officially)",
    )
    p.add_argument("--repeats", type=int, default=3, help="warm runs after the cold one (median)")
    p.add_argument("--baseline-repeats", type=int, default=None, help="default: --repeats")
    p.add_argument("--no-baseline", dest="baseline", action="store_false")
    p.add_argument("--offload", action="store_true", help="our path offloads the LLM before the DiT")
    p.add_argument("--static-cache", action="store_true", help="our plan decoding uses a static KV cache")
    p.add_argument(
        "--compile-decode",
        action="store_true",
        help="our plan decoding compiles its one-token step (implies --static-cache; CUDA graphs on a GPU)",
    )
    p.add_argument("--no-startup", dest="startup", action="store_false", help="skip the `tell` subprocess")
    p.add_argument("--no-imports", dest="imports", action="store_false", help="skip the import-time subprocess")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the JSON (default: $AUDIOSTORY_CACHE/benchmarks; benchmarks/results to keep it)",
    )
    p.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="append a summary row to this file (e.g. benchmarks/RESULTS.md); default: no row",
    )
    p.add_argument("--no-record", dest="record", action="store_false", help="do not append to --results-md")
    p.add_argument("--workdir", type=Path, default=None, help="where stories are written (default: a temp dir)")
    args = p.parse_args(argv)
    if args.out is None:  # results of a casual run stay out of the checkout (and out of git status)
        args.out = cache_dir() / "benchmarks"
    if args.duration <= 0 or args.steps < 1 or args.repeats < 0:
        p.error("--duration must be > 0, --steps >= 1 and --repeats >= 0")
    return args


def model_choice(text: str) -> str:
    """A benchmark model name, or the absolute path of an existing model folder."""
    if text in MODEL_CHOICES:
        return text
    if Path(text).is_dir():
        return str(Path(text).resolve())
    raise argparse.ArgumentTypeError(f"{text!r} is neither one of {', '.join(MODEL_CHOICES)} nor a model folder")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime = make_runtime(args.device, args.dtype)
    case = StoryCase(
        duration=args.duration,
        events=args.events or default_events(args.duration),
        steps=args.steps,
        guidance=args.guidance,
        canvas=args.canvas,
    )
    work = args.workdir or Path(tempfile.mkdtemp(prefix="audiostory-bench-"))
    log(
        f"device {runtime.describe()}, torch threads {torch.get_num_threads()}, story {case.duration:g} s in "
        f"{case.events} events, {case.steps} steps"
    )
    loaded = load_bench_model(args.model, args.scale, runtime)
    log(f"model {loaded.label} ready in {loaded.seconds:.1f} s")
    engine = DecodeEngine(static_cache=args.static_cache or args.compile_decode, compile_step=args.compile_decode)
    loaded.model.planner().reasoner.engine = engine
    sync = runtime.device.type == "cuda"
    with MemoryProbe(runtime.device) as probe:
        weights_bytes = probe.current()
        ours_runs, cold, whole = [], None, None
        for number in range(args.repeats + 1):
            clock = StageClock(probe, sync=sync)
            info = run_ours(loaded.model, runtime, case, clock, work / "ours", offload=args.offload)
            summary = report.summarise_run(clock, info.plan_tokens)
            if cold is None:
                cold, whole = summary, process_seconds()
                ours_info = info
            else:
                ours_runs.append(summary)
            log(f"ours run {number}: {summary['story_seconds']:.2f} s")
        result: dict[str, Any] = {
            "ours": {
                "cold": cold,
                "runs": ours_runs,
                "median": report.median_run(ours_runs or [cold]),
                "plan_text": ours_info.plan_text,
                "event_seconds": ours_info.event_seconds,
                "dtype": str(runtime.dtype).removeprefix("torch."),
                "offload": args.offload,
                "decode_engine": asdict(engine),
            },
        }
        if args.baseline:
            result.update(baseline_runs(loaded.model, runtime, case, probe, work, args, ours_info.plan_text))
    result.update(environment(args, runtime, loaded, case, weights_bytes))
    result["whole_process_seconds"] = whole
    result["max_rss_bytes"] = max_rss_bytes()
    if args.imports:
        result["import"] = import_time()
    if args.startup:
        result["startup"] = tell_startup(args, case, work)
    write_outputs(result, args)
    return result


def baseline_runs(
    model: Any, runtime: Any, case: StoryCase, probe: MemoryProbe, work: Path, args: argparse.Namespace, ours_plan: str
) -> dict[str, Any]:
    dtype = place_official(model, runtime.device)
    log(f"official structure in {str(dtype).removeprefix('torch.')}")
    repeats = args.repeats if args.baseline_repeats is None else args.baseline_repeats
    runs, cold, info = [], None, None
    for number in range(repeats + 1):
        clock = StageClock(probe, sync=runtime.device.type == "cuda")
        info = run_baseline(model, case, clock, work / "baseline")
        summary = report.summarise_run(clock, info.plan_tokens, dit_calls_per_step=info.events)
        if cold is None:
            cold = summary
        else:
            runs.append(summary)
        log(f"baseline run {number}: {summary['story_seconds']:.2f} s")
    assert info is not None and cold is not None
    median = report.median_run(runs or [cold])
    return {
        "baseline": {
            "cold": cold,
            "runs": runs,
            "median": median,
            "dtype": info.dtype,
            "plan_text": info.plan_text,
            "same_plan_as_ours": info.plan_text == ours_plan,
        },
    }


def environment(args: argparse.Namespace, runtime: Any, loaded: Any, case: StoryCase, weights: int) -> dict[str, Any]:
    now = _dt.datetime.now(_dt.UTC)
    device_name = platform.processor() or platform.machine()
    if runtime.device.type == "cuda":
        device_name = torch.cuda.get_device_name(runtime.device)
    elif runtime.device.type == "cpu":
        device_name = f"cpu {os.cpu_count()} cores"
    result: dict[str, Any] = {
        "ratios": {},
        "date": now.isoformat(timespec="seconds"),
        "commit": report.git_commit(ROOT),
        "device": str(runtime.device),
        "device_name": device_name,
        "runtime": runtime.describe(),
        "torch_threads": torch.get_num_threads(),
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "model": loaded.label,
        "model_notes": loaded.notes,
        "parameters": count_parameters(loaded.model),
        "load": {"seconds": loaded.seconds, "notes": loaded.notes},
        "case": {**asdict(case), "prompt": case.prompt},
        "memory_kind": "CUDA max allocated" if runtime.device.type == "cuda" else "process RSS (weights included)",
        "weights_resident_bytes": weights,
        "in_process_import_seconds": _IMPORT_SECONDS,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    return result


def process_seconds() -> float | None:
    """Seconds since this process started (psutil), i.e. what a user waits for, imports included."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except ImportError:
        return None


def import_time() -> dict[str, Any]:
    """The inference path's imports in a fresh interpreter (run twice; the second has a warm file cache)."""
    code = (
        "import sys, time; t = time.perf_counter()\n"
        + "".join(f"import {m}\n" for m in INFERENCE_MODULES)
        + "print(time.perf_counter() - t, 'peft' in sys.modules, 'torchaudio' in sys.modules)"
    )
    seconds = []
    flags: list[str] = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        value, *flags = out.stdout.split()
        seconds.append(float(value))
    return {
        "seconds": min(seconds),
        "runs": seconds,
        "peft_imported": flags[0] == "True",
        "torchaudio_imported": flags[1] == "True",
        "modules": list(INFERENCE_MODULES),
    }


def tell_startup(args: argparse.Namespace, case: StoryCase, work: Path) -> dict[str, Any]:
    """``audiostory tell`` as a user runs it: seconds to its first stderr line, and to exit."""
    model = "tiny-random" if args.model == RANDOM_FULL else args.model  # the random full stack is not a model
    out = work / "tell"
    command = [
        sys.executable,
        "-m",
        "audiostory_cli",
        "tell",
        case.prompt,
        "--duration",
        f"{case.duration:g}",
        "--model",
        model,
        "--steps",
        str(case.steps),
        "--seed",
        str(case.seed),
        "--yes",
        "--force",
        "--out",
        str(out),
        "--device",
        args.device,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    first_seconds = time.perf_counter() - start
    _, rest = proc.communicate()
    total = time.perf_counter() - start
    return {
        "model": model,
        "duration": case.duration,
        "steps": case.steps,
        "first_line_seconds": first_seconds,
        "first_line": first.decode(errors="replace").strip(),
        "total_seconds": total,
        "returncode": proc.returncode,
        "stderr_tail": rest.decode(errors="replace")[-400:],
    }


def write_outputs(result: dict[str, Any], args: argparse.Namespace) -> None:
    if "baseline" in result:
        result["ratios"] = report.ratios(result["ours"]["median"], result["baseline"]["median"])
    print(report.table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    device = result["device"].replace(":", "")
    stamp = result["date"][:19].replace(":", "")  # 2026-11-22T041353: runs never overwrite each other
    path = args.out / f"{stamp}-{device}-{result['model']}-{result['case']['duration']:g}s.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"json: {path}")
    if args.record and args.results_md is not None:
        report.append_results_row(args.results_md, report.results_row(result))
        print(f"row appended to {args.results_md}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    from audiostory_cli.errors import AudiostoryError

    try:
        main()
    except AudiostoryError as exc:  # e.g. --model demo before the demo model exists
        log(f"error: {exc}")
        sys.exit(1)
