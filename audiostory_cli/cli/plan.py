"""`audiostory plan show|edit|set`: look at and change a story's plan."""

from __future__ import annotations

import typer

from ..cli.common import ErrorHandlingGroup

app = typer.Typer(cls=ErrorHandlingGroup, no_args_is_help=True, help="Show or change a story's plan.")
