"""The `audiostory` command: one file per command, each a thin shell over the Python API.

Only typer and rich are imported here; each command imports torch and friends inside its function.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import batch as batch_cmd
from . import continue_ as continue_cmd
from . import describe as describe_cmd
from . import doctor, plan, regen, render, tell
from . import edit as edit_cmd
from . import eval as eval_cmd
from . import export as export_cmd
from . import models as models_cmd
from . import train as train_cmd
from .common import ErrorHandlingGroup, out_console

app = typer.Typer(
    name="audiostory",
    cls=ErrorHandlingGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Long-form narrative audio from a prompt: plan timed events, render them, deliver WAV, stems and cues.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"audiostory {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Long-form narrative audio from a prompt: plan timed events, render them, deliver WAV, stems and cues."""


app.command(name="tell")(tell.tell)
app.command(name="render")(render.render)
app.command(name="regen")(regen.regen)
app.command(name="edit")(edit_cmd.edit)
app.command(name="doctor")(doctor.doctor)
app.command(name="export")(export_cmd.export)
app.command(name="continue")(continue_cmd.continue_)
app.command(name="describe")(describe_cmd.describe)
app.command(name="eval")(eval_cmd.eval_command)
app.command(name="batch")(batch_cmd.batch)
app.add_typer(plan.app, name="plan")
app.add_typer(models_cmd.app, name="models")
app.add_typer(train_cmd.app, name="train")


def main() -> None:
    app()
