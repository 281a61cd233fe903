"""`audiostory eval`: plan and audio scores on held-out foley stories, with the direct text-to-audio baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import check_report_path, deliver_report
from .options import DeviceOpt, JsonOpt, PresetOpt

if TYPE_CHECKING:
    from ..demo.eval import EvalReport


def eval_command(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Registered model (audiostory-3b, tiny-random) or a model folder.")
    ] = "audiostory-3b",
    split: Annotated[str, typer.Option(help="Foley story split: test (held-out phrasing and order), val or train.")] = (
        "test"
    ),
    stories: Annotated[int, typer.Option("--stories", "-n", help="How many stories to plan, render and score.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the story draws and the render seeds.")] = 0,
    steps: Annotated[int | None, typer.Option(help="Sampling steps per event (default 50).")] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Also score the direct text-to-audio baseline.")
    ] = True,
    max_duration: Annotated[
        float,
        typer.Option("--max-duration", help="Longest story in seconds (from 10 s up to this; demo: trained to 30)."),
    ] = 30.0,
    preset: PresetOpt = "broadcast",
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the full JSON report to this file.")] = (
        None
    ),
    edits: Annotated[
        int | None, typer.Option("--edits", help="Instead: score N edit turns (exact edits, untouched audio, cost).")
    ] = None,
) -> None:
    """Score a model on held-out foley stories: plan accuracy, rendered-event classes, seams, loudness, length."""
    from ..demo.eval import EvalOptions, check_eval_options, story_options_up_to

    if edits is not None:
        from .eval_edits import run_edit_eval

        run_edit_eval(model, edits=edits, split=split, seed=seed, steps=steps, device=device, as_json=as_json, out=out)
        return

    options = EvalOptions(
        split=split,
        stories=stories,
        seed=seed,
        steps=steps,
        baseline=baseline,
        preset=preset,
        story_options=story_options_up_to(max_duration),
    )
    check_eval_options(options)
    check_report_path(out)

    from ..demo.eval import evaluate
    from .progress_view import RichProgress
    from .session import load_for_command

    loaded, runtime = load_for_command(model, device)
    with RichProgress() as progress:
        report = evaluate(loaded, runtime, options, progress=progress)
    deliver_report(report.to_dict(), out, as_json=as_json, table=lambda: results_table(report))


def results_table(report: EvalReport) -> Any:
    """The summary as a Rich table: one row per metric, planner and baseline side by side."""
    from rich.table import Table

    summary = report.summary()
    table = Table(title=f"audiostory eval: {report.model}, {len(report.stories)} {report.options.split} stories")
    table.add_column("metric")
    table.add_column("planner (ours)", justify="right", no_wrap=True)
    table.add_column("direct baseline", justify="right", no_wrap=True)
    plan = summary["plan"]
    for label, key, unit in (
        ("event count accuracy", "event_count_accuracy", "%"),
        ("class sequence exact match", "class_sequence_exact", "%"),
        ("planned event class accuracy", "event_class_accuracy", "%"),
        ("mean relative duration error", "duration_relative_error", "%"),
    ):
        table.add_row(label, _fmt(plan[key], unit), "n/a")
    ours, base = summary["audio"]["planner"], summary["audio"].get("baseline", {})
    for label, key, unit in (
        ("rendered event class accuracy", "event_class_accuracy", "%"),
        ("rendered events heard as planned", "event_heard_as_planned", "%"),
        ("rendered class order exact", "class_order_exact", "%"),
        ("mean worst seam jump (×local step)", "seam_discontinuity_mean", "x"),
        ("loudness compliance", "loudness_compliance", "%"),
        ("true-peak compliance", "true_peak_compliance", "%"),
        ("exact total length", "length_exact", "%"),
    ):
        table.add_row(label, _fmt(ours.get(key), unit), _fmt(base.get(key), unit))
    return table


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if value != value or value in (float("inf"), float("-inf")):
        return "∞"
    return f"{100 * value:.1f} %" if unit == "%" else f"{value:.2f}"
