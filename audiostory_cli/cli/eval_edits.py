"""`audiostory eval --edits N`: the edit scores (the story scores are in `eval.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import check_report_path, deliver_report

if TYPE_CHECKING:
    from ..demo.eval_edits import EditEvalReport


def run_edit_eval(
    model: str, *, edits: int, split: str, seed: int, steps: int | None, device: str, as_json: bool, out: Path | None
) -> None:
    from ..demo.eval_edits import EditEvalOptions, check_edit_eval_options, evaluate_edits
    from .progress_view import RichProgress
    from .session import load_for_command

    options = EditEvalOptions(edits=edits, split=split, seed=seed, steps=steps)
    check_edit_eval_options(options)
    check_report_path(out)
    loaded, runtime = load_for_command(model, device)
    with RichProgress() as progress:
        report = evaluate_edits(loaded, runtime, options, progress=progress)
    deliver_report(report.to_dict(), out, as_json=as_json, table=lambda: edit_results_table(report))


def edit_results_table(report: EditEvalReport) -> Any:
    from rich.table import Table

    summary = report.summary()
    table = Table(title=f"audiostory eval --edits: {report.model}, {summary['edits']} {report.options.split} edits")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, key in (
        ("exact edits", "exact_edit_share"),
        ("untouched events byte-identical (same render inputs)", "untouched_identical_share_same_inputs"),
        ("untouched events byte-identical (all)", "untouched_identical_share"),
        ("render cost vs re-telling (audio seconds)", "render_cost_seconds"),
        ("render cost vs re-telling (events)", "render_cost_events"),
    ):
        value = summary[key]
        table.add_row(label, "n/a" if value is None else f"{100 * value:.1f} %")
    table.add_row("edits without a valid plan", str(summary["failed_edits"]))
    for operation, share in summary["exact_by_operation"].items():
        table.add_row(f"  exact: {operation}", f"{100 * share:.1f} %")
    return table
