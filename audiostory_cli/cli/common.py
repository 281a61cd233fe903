"""What every command shares: the stderr/stdout consoles and how errors become one red line."""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from ..errors import AudiostoryError
from ..fsutil import absolute as absolute  # re-exported: the commands print paths with it

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def debug_enabled() -> bool:
    return os.environ.get("AUDIOSTORY_DEBUG", "") not in ("", "0")


def report_error(message: str) -> None:
    """One red line on stderr; control characters from user input (ESC, BEL...) never reach the terminal."""
    line = " ".join("".join(" " if unicodedata.category(c) == "Cc" else c for c in str(message)).split())
    err_console.print(f"[bold red]error:[/] {line}", markup=True, highlight=False, soft_wrap=True)


class ErrorHandlingGroup(TyperGroup):
    """Turns library errors into one red line and an exit code; AUDIOSTORY_DEBUG=1 shows the traceback."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Like Typer's, but a usage error is one red line (not a boxed panel) with exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.Abort:
            report_error("aborted")
            sys.exit(1)
        except typer.TyperException as exc:  # click's UsageError/BadParameter family
            context = getattr(exc, "ctx", None)
            where = f" (see `{context.command_path} --help`)" if context is not None else ""
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            report_error(_escape(f"{message}{where}"))
            sys.exit(getattr(exc, "exit_code", 2))
        if isinstance(code, int) and code != 0:
            sys.exit(code)
        return code

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own exits and usage errors (exit 2)
            raise
        except AudiostoryError as exc:
            if debug_enabled():
                raise
            report_error(_escape(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            report_error("interrupted; finished work is kept, run the same command again to resume")
            raise typer.Exit(130) from None
        except MemoryError:
            if debug_enabled():
                raise
            report_error("out of memory; try --offload, a shorter --duration or --device cpu")
            raise typer.Exit(1) from None
        except OSError as exc:
            if debug_enabled():
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            report_error(_escape(f"{exc.strerror or exc}{where}"))
            raise typer.Exit(1) from None
        except Exception as exc:  # the last line of defence: never show a user a traceback
            if debug_enabled():
                raise
            report_error(
                _escape(
                    f"internal error: {type(exc).__name__}: {exc} (run with AUDIOSTORY_DEBUG=1 for the "
                    "traceback and please report it)"
                )
            )
            raise typer.Exit(1) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def check_report_path(out: Path | None) -> None:
    """``--out`` of an evaluation names a file (checked before any model loads)."""
    if out is not None and out.is_dir():
        raise typer.BadParameter(f"{out} is a folder; give a file path for the JSON report", param_hint="--out")


def deliver_report(data: dict[str, Any], out: Path | None, *, as_json: bool, table: Callable[[], Any]) -> None:
    """An evaluation's report: written atomically to ``--out`` when given, then JSON or a table on stdout."""
    import json

    from ..fsutil import write_json_atomic
    from .tables import print_table

    if out is not None:
        write_json_atomic(out, data)
        err_console.print(f"report written to {out}")
    if as_json:
        out_console.print_json(json.dumps(data))
    else:
        print_table(out_console, table())
