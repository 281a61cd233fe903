"""`audiostory train`: one subcommand per kind of training, each with only its own options.

`train stage N` (the paper's stages), `train planner` (planner text pretraining), `train vae` (Oobleck VAE
pretraining), `train demo` (the whole demo recipe) and `train check-data FILE`. `train --stage N ...` is the
documented alias of `train stage N ...`.
"""

from __future__ import annotations

from typing import Any

import typer

from ..common import ErrorHandlingGroup
from . import check_data, demo, planner, stage, vae


class TrainGroup(ErrorHandlingGroup):
    """The `train` group; `train --stage N ...` is read as `train stage N ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, stage_alias(args))


def stage_alias(args: list[str]) -> list[str]:
    """``[..., "--stage", "1", ...]`` (options first, as the design's examples write it) -> ``["stage", "1", ...]``.

    Only when the first argument is an option: after a subcommand name ``--stage`` is that subcommand's unknown
    option, a usage error rather than silently ignored.
    """
    if not args or not args[0].startswith("-") or args[0] in ("--help", "-h"):
        return args
    for i, arg in enumerate(args):
        if arg == "--stage" and i + 1 < len(args):
            return ["stage", args[i + 1], *args[:i], *args[i + 2 :]]
        if arg.startswith("--stage="):
            return ["stage", arg.split("=", 1)[1], *args[:i], *args[i + 1 :]]
    return args


app = typer.Typer(
    cls=TrainGroup,
    no_args_is_help=True,
    help="Fine-tune in the paper's stages, pretrain a planner or VAE, build the demo model, validate manifests.",
    epilog="`audiostory train --stage N ...` is the same as `audiostory train stage N ...`.",
)
app.command("stage", epilog=stage.SCHEMA_HELP)(stage.stage)
app.command("planner")(planner.planner)
app.command("vae")(vae.vae)
app.command("demo")(demo.demo)
app.command("check-data")(check_data.check_data)
