"""`audiostory doctor`: device, dtype, memory, library versions, cache and model state."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import err_console, out_console


def doctor(
    device: Annotated[str, typer.Option(help="Device to check: auto, cuda, mps or cpu.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report instead of a table.")] = False,
) -> None:
    """Print the device and dtype audiostory would use (and why), memory, versions and cached models."""
    from ..app.doctor import collect_report

    with err_console.status("checking the environment…"):
        report = collect_report(device)
    if as_json:
        out_console.print_json(json.dumps(report))
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    from .tables import print_table

    print_table(out_console, table)
