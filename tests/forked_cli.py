"""Run `audiostory` commands in forked child processes that share one already-built `tiny-random` model.

A fresh Python with torch costs ~10 s here; a fork of the test process costs milliseconds. The child is a real
separate process (its own pid, its own file descriptors and locks, killable with SIGKILL), runs the real CLI
(`app(args)`), and only skips loading the model: ``load_for_command`` returns the parent's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@dataclass
class Child:
    pid: int
    stdout: Path
    stderr: Path
    code: int | None = None

    def wait(self, timeout: float = 120.0) -> int:
        """Exit code (or minus the signal number); kills the child after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.code is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"child {self.pid} did not finish in {timeout:g} s: {self.err()}")
            time.sleep(0.01)
        return self.code

    def kill(self) -> int:
        """SIGKILL: no cleanup of any kind runs in the child."""
        if self.code is None:
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def out(self) -> str:
        return self.stdout.read_text(encoding="utf-8", errors="replace")

    def err(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")


def fork_cli(
    args: Sequence[str],
    logs: Path,
    *,
    model: object = None,
    runtime: object = None,
    setup: Callable[[], None] | None = None,
) -> Child:
    """Start ``audiostory ARGS`` in a forked child; its stdout/stderr go to files under ``logs``.

    ``setup`` runs in the child first (e.g. to install a hook that SIGKILLs it at a chosen write).
    """
    logs.mkdir(parents=True, exist_ok=True)
    tag = f"{time.monotonic_ns()}"
    stdout, stderr = logs / f"{tag}.out", logs / f"{tag}.err"
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            fd_out = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fd_err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if setup is not None:
                setup()
            code = _run_child(list(args), model, runtime)
        except BaseException:  # noqa: B036 - report anything, then leave without pytest's clean-up
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return Child(pid, stdout, stderr)


def _run_child(args: list[str], model: object, runtime: object) -> int:
    import sys

    from audiostory_cli.cli import app, session

    if model is not None:
        session.load_for_command = lambda ref, device: (model, runtime)  # type: ignore[assignment]
    # rich consoles were made in the parent: point them at the redirected streams
    from audiostory_cli.cli import common

    common.err_console.file = sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    common.out_console.file = sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    try:
        app(args, prog_name="audiostory")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def kill_at_replace(number: int, *, after: bool, log: Path | None = None) -> Callable[[], None]:
    """A ``setup`` that SIGKILLs the child just before (or after) its ``number``-th ``os.replace``, the step that
    moves an atomic write into place; ``log`` gets one line per call (to count them in a full run)."""

    def setup() -> None:
        real = os.replace
        calls = [0]

        def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls[0] += 1
            if log is not None:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(f"{dst}\n")
            if calls[0] == number and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst, *args, **kwargs)
            if calls[0] == number and after:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace  # type: ignore[assignment]

    return setup
