"""`audiostory train check-data FILE`: validate a training manifest line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..common import absolute, err_console, out_console


def check_data(
    manifest: Annotated[Path, typer.Argument(help="A JSONL manifest.")],
    kind: Annotated[str | None, typer.Option(help="clips, qa, stories or edits (default: detected per line).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a manifest line by line (JSON, fields, durations, audio files); exit 1 if any error."""
    from ...train.manifest import KINDS, check_manifest

    report = check_manifest(manifest, kind=kind)
    counts = {k: report.count(k) for k in KINDS}
    if as_json:
        out_console.print_json(
            json.dumps(
                {
                    "manifest": absolute(manifest),
                    "lines": report.lines,
                    "valid": counts,
                    "issues": [
                        {"line": i.source.line, "severity": i.severity, "message": i.message} for i in report.issues
                    ],
                }
            )
        )
    else:
        for issue in report.issues:
            out_console.print(str(issue), markup=False, highlight=False)
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no valid examples"
        err_console.print(
            f"{report.lines} line(s): {summary}; {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )
    if report.errors:
        raise typer.Exit(1)
