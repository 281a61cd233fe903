"""Summaries of timed runs: per-stage medians, our/baseline ratios, the printed table and the RESULTS.md row."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path
from typing import Any

from .timing import StageClock

# Table rows: (key, label). Our "events" stage (event files + story.json) is delivery work: it joins mix/export.
STAGE_ROWS = (
    ("plan", "plan decode"),
    ("bridge", "bridge pass"),
    ("dit", "DiT total"),
    ("vae", "VAE decode"),
    ("export", "mix/export"),
)
STAGE_GROUPS = {
    "plan": ("plan",),
    "bridge": ("bridge",),
    "dit": ("dit",),
    "vae": ("vae",),
    "export": ("events", "export"),
}
RESULTS_HEADER = (
    "| date | commit | device | model | story | steps | load avg | import s | load s | plan s (tok/s) | bridge s "
    "| DiT s/step | DiT s | VAE s | mix/export s | story s | cold story s | whole process s | peak mem | "
    "baseline story s | speed-up |"
)


def summarise_run(clock: StageClock, plan_tokens: int, dit_calls_per_step: int = 1) -> dict[str, Any]:
    """One run: seconds and peak bytes per table stage, DiT step times, total wall and peak.

    ``dit_step_seconds`` is one sampler step of the whole story: the median DiT call times the calls per step
    (ours: 1, every event in one batch; the official structure: one call per event).
    """
    split = clock.split()
    stages: dict[str, dict[str, float | int]] = {}
    for key, members in STAGE_GROUPS.items():
        present = [split[m] for m in members if m in split]
        stages[key] = {
            "seconds": sum(s.seconds for s in present),
            "peak_bytes": max((s.peak_bytes for s in present), default=0),
        }
    steps = clock.step_times("dit")
    return {
        "stages": stages,
        "other_seconds": sum(t.seconds for s, t in split.items() if s not in sum(STAGE_GROUPS.values(), ())),
        "dit_step_seconds": statistics.median(steps) * dit_calls_per_step if steps else None,
        "dit_steps_timed": len(steps),
        "plan_tokens": plan_tokens,
        "plan_tokens_per_second": plan_tokens / stages["plan"]["seconds"] if stages["plan"]["seconds"] else None,
        "story_seconds": clock.wall(),
        "peak_bytes": clock.peak(),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field median over runs (stage seconds, step time, story seconds); peaks are the max."""
    if not runs:
        return {}

    def med(values: list[Any]) -> Any:
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    stages = {
        key: {
            "seconds": med([r["stages"][key]["seconds"] for r in runs]),
            "peak_bytes": max(r["stages"][key]["peak_bytes"] for r in runs),
        }
        for key in STAGE_GROUPS
    }
    return {
        "stages": stages,
        "other_seconds": med([r["other_seconds"] for r in runs]),
        "dit_step_seconds": med([r["dit_step_seconds"] for r in runs]),
        "plan_tokens": runs[0]["plan_tokens"],
        "plan_tokens_per_second": med([r["plan_tokens_per_second"] for r in runs]),
        "story_seconds": med([r["story_seconds"] for r in runs]),
        "peak_bytes": max(r["peak_bytes"] for r in runs),
        "runs": len(runs),
    }


def ratio(baseline: float | None, ours: float | None) -> float | None:
    """How many times faster we are (baseline time / our time)."""
    if baseline is None or ours is None or ours <= 0:
        return None
    return baseline / ours


def ratios(ours: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    out = {key: ratio(baseline["stages"][key]["seconds"], ours["stages"][key]["seconds"]) for key in STAGE_GROUPS}
    out["dit_step"] = ratio(baseline.get("dit_step_seconds"), ours.get("dit_step_seconds"))
    out["story"] = ratio(baseline.get("story_seconds"), ours.get("story_seconds"))
    return out


def gib(n: int | None) -> str:
    return "-" if not n else f"{n / 1024**3:.2f} GiB"


def secs(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def table(result: dict[str, Any]) -> str:
    """The printed table: one row per stage, ours (median) vs the official structure, and the ratio."""
    ours, base = result["ours"]["median"], result.get("baseline", {}).get("median")
    rat = result.get("ratios", {})
    rows = [("stage", "ours", "official structure", "baseline/ours", "notes")]
    imp = result.get("import", {})
    rows.append(
        (
            "imports (subprocess)",
            secs(imp.get("seconds")),
            "",
            "",
            f"torch+transformers+diffusers+audiostory_cli; peft imported: {imp.get('peft_imported')}",
        )
    )
    rows.append(("model load", secs(result["load"]["seconds"]), "", "", result["load"]["notes"][:60]))
    for key, label in STAGE_ROWS:
        note = ""
        if key == "plan":
            note = f"{ours['plan_tokens']} tokens, {secs(ours['plan_tokens_per_second'])} tok/s"
            if base:
                note += f" (official {secs(base['plan_tokens_per_second'])} tok/s)"
        if key == "export":
            note = "ours: event WAVs, loudness, limiter, stems, cues; official: join + one WAV"
        rows.append(
            (
                label,
                secs(ours["stages"][key]["seconds"]),
                secs(base["stages"][key]["seconds"]) if base else "",
                times(rat.get(key)),
                note,
            )
        )
        if key == "dit":
            rows.append(
                (
                    "DiT per step",
                    secs(ours["dit_step_seconds"]),
                    secs(base["dit_step_seconds"]) if base else "",
                    times(rat.get("dit_step")),
                    "all events; ours: one batch of events x CFG; official: one call per event",
                )
            )
    rows.append(
        (
            "story total",
            secs(ours["story_seconds"]),
            secs(base["story_seconds"]) if base else "",
            times(rat.get("story")),
            f"median of {ours['runs']} warm run(s)",
        )
    )
    rows.append(
        ("peak memory", gib(ours["peak_bytes"]), gib(base["peak_bytes"]) if base else "", "", result["memory_kind"])
    )
    cold = result["ours"]["cold"]
    rows.append(("cold story (1st run)", secs(cold["story_seconds"]), "", "", "what one `tell` pays"))
    rows.append(
        (
            "whole process",
            secs(result.get("whole_process_seconds")),
            "",
            "",
            "process start -> imports -> load -> cold story",
        )
    )
    startup = result.get("startup")
    if startup:
        rows.append(
            (
                "`tell` first line",
                secs(startup.get("first_line_seconds")),
                "",
                "",
                f"subprocess, --model {startup['model']}",
            )
        )
        rows.append(
            (
                "`tell` whole process",
                secs(startup.get("total_seconds")),
                "",
                "",
                f"{startup['duration']:g} s story, {startup['steps']} steps, exit {startup.get('returncode')}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_row(result: dict[str, Any]) -> str:
    """One dated row for ``benchmarks/RESULTS.md``."""
    ours, base = result["ours"]["median"], result.get("baseline", {}).get("median")
    case = result["case"]
    st = ours["stages"]
    return (
        "| "
        + " | ".join(
            [
                result["date"][:10],
                result["commit"],
                result["device_name"],
                result["model"]
                + engine_note(result["ours"].get("decode_engine") or {})
                + (" (sized canvas)" if case.get("canvas") == "sized" else ""),
                f"{case['duration']:g} s / {case['events']} ev",
                str(case["steps"]),
                result["load_average"],
                secs(result.get("import", {}).get("seconds")),
                secs(result["load"]["seconds"]),
                f"{secs(st['plan']['seconds'])} ({secs(ours['plan_tokens_per_second'])})",
                secs(st["bridge"]["seconds"]),
                secs(ours["dit_step_seconds"]),
                secs(st["dit"]["seconds"]),
                secs(st["vae"]["seconds"]),
                secs(st["export"]["seconds"]),
                secs(ours["story_seconds"]),
                secs(result["ours"]["cold"]["story_seconds"]),
                secs(result.get("whole_process_seconds")),
                gib(ours["peak_bytes"]),
                secs(base["story_seconds"]) if base else "-",
                times(result.get("ratios", {}).get("story")),
            ]
        )
        + " |"
    )


def engine_note(engine: dict[str, Any]) -> str:
    if engine.get("compile_step"):
        return " (compiled decode step)"
    if engine.get("static_cache"):
        return " (static KV cache)"
    return ""


def append_results_row(path: Path, row: str) -> None:
    """Append ``row`` under the table header of ``path`` (creating the file and header if needed)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if RESULTS_HEADER not in text:
        separator = "|" + "---|" * RESULTS_HEADER.count(" | ") + "---|"
        text = (
            text.rstrip("\n")
            + "\n\n## Runs (appended by `benchmarks/run.py`)\n\n"
            + RESULTS_HEADER
            + "\n"
            + separator
            + "\n"
        )
    path.write_text(text.rstrip("\n") + "\n" + row + "\n", encoding="utf-8")


def git_commit(root: Path) -> str:
    """The checkout's short commit, ``+dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def write_json_report(result: dict[str, Any], out: Path | None, default_name: str) -> Path:
    """Write a benchmark's JSON report atomically to ``out`` (default: ``$AUDIOSTORY_CACHE/benchmarks/NAME``)."""
    import json

    from audiostory_cli.fsutil import write_text_atomic
    from audiostory_cli.resources import cache_dir

    target = out or cache_dir() / "benchmarks" / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, json.dumps(result, indent=2) + "\n")
    return target
