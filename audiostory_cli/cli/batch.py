"""`audiostory batch JOBS.jsonl --out DIR`: many stories, one model load per process, resumable, across processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import AudiostoryError, UsageError
from .common import err_console, out_console
from .options import DeviceOpt, JsonOpt, OffloadOpt

if TYPE_CHECKING:
    from ..app.batch import CheckReport, JobRecord, Launch


def batch(
    jobs: Annotated[
        Path,
        typer.Argument(
            help='JSONL file, one job a line: {"prompt": ..., "duration": 20, '
            '"name": ..., "seed": ...} with tell\'s options as keys.'
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the story folders (DIR/NAME) and batch.json; run again to resume."
        ),
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model of the jobs that name none.")] = "audiostory-3b",
    check: Annotated[bool, typer.Option("--check", help="Validate every line (and --out) and render nothing.")] = False,
    device: DeviceOpt = "auto",
    offload: OffloadOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Render every job of a JSONL file into its own story folder, loading each model once per process.

    Split between `torchrun`/`accelerate launch` processes (one GPU each); rank 0 shows progress, writes batch.json.
    """
    from ..app.batch import check_batch, launch_from_env, read_jobs

    launch = launch_from_env()
    try:
        found = read_jobs(jobs, default_model=model)
        if check:
            _report_check(check_batch(found, out), as_json=as_json, main=launch.main)
            return
        if out is None:
            raise UsageError("give --out DIR: the folder that receives one story folder per job and batch.json")
        failed = _run(found, out, launch, device=device, offload=offload, as_json=as_json)
    except AudiostoryError as exc:
        if launch.main:
            raise
        raise typer.Exit(exc.exit_code) from None  # rank 0 says it once
    if failed:
        raise typer.Exit(1)


def _run(found: Any, out: Path, launch: Launch, *, device: str, offload: bool | None, as_json: bool) -> int:
    from ..app.batch import check_out_dir, device_for, run_batch

    main = launch.main
    if launch.world == 1:
        check_out_dir(out)  # before anything is printed or imported (with several processes, rank 0 checks it)
    if main:
        bad = f", {len(found.errors)} bad line(s)" if found.errors else ""
        err_console.print(
            f"[dim]audiostory batch: {len(found.jobs)} job(s){bad} from {found.path} → {out}, "
            f"{launch.world} process(es)[/]"
        )
        for error in found.errors:
            _say_failed(f"{found.path.name}:{error.line}", error.message)
    from ..model import load_model
    from ..runtime import make_runtime
    from .progress_view import RichProgress
    from .session import wants_offload

    quiet = err_console.quiet
    err_console.quiet = quiet or not main  # one view of the whole batch, on rank 0
    try:
        runtime = make_runtime(device_for(launch, device))
        with RichProgress(enabled=main) as progress:
            if main:
                progress.console.print(f"device {runtime.describe()}")

            def load(ref: str) -> Any:
                model = load_model(ref, runtime, progress=progress)
                if main:
                    progress.console.print(f"model {model.name} loaded")
                return model

            def on_result(record: JobRecord) -> None:
                if not main:
                    return
                if record.status == "failed":
                    _say_failed(f"{found.path.name}:{record.line} ({record.name})", record.error or "")
                else:
                    what = "already done" if record.skipped else f"done in {record.seconds:.1f} s"
                    progress.console.print(f"{record.name}: {what}", markup=False, highlight=False)

            result = run_batch(
                found,
                out,
                load=load,
                runtime=runtime,
                launch=launch,
                progress=progress,
                on_result=on_result,
                offload=wants_offload(offload, runtime),
            )
    finally:
        err_console.quiet = quiet
    if main:
        _summarise(result.records, result.path, as_json=as_json)
    return result.failed


def _say_failed(where: str, message: str) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]failed:[/] {escape(where)}: {escape(message)}", soft_wrap=True)


def _summarise(records: list[JobRecord], path: Path, *, as_json: bool) -> None:
    """Other processes' failures on stderr, the delivered mixes (or batch.json with --json) on stdout."""
    for record in records:
        if record.status == "failed" and record.rank not in (None, 0):
            _say_failed(f"line {record.line} ({record.name})", record.error or "")
    done = [r for r in records if r.status == "done"]
    failed = sum(r.status == "failed" for r in records)
    skipped = sum(r.skipped for r in done)
    err_console.print(f"{len(records)} job(s): {len(done)} done ({skipped} already), {failed} failed; see {path}")
    if as_json:
        out_console.print_json(path.read_text(encoding="utf-8"))
        return
    for record in done:
        out_console.print(str(path.parent / (record.mix or "")), soft_wrap=True, markup=False, highlight=False)


def _report_check(report: CheckReport, *, as_json: bool, main: bool) -> None:
    """Like `train check-data`: one line per problem on stdout, a summary on stderr; exit 1 if any."""
    name = report.jobs.path.name
    states = list(report.states.values())
    if main and as_json:
        out_console.print_json(
            json.dumps(
                {
                    "jobs_file": str(report.jobs.path),
                    "lines": report.jobs.lines,
                    "valid": len(report.jobs.jobs),
                    "errors": [{"line": e.line, "name": e.name, "message": e.message} for e in report.errors],
                    "states": report.states,
                }
            )
        )
    elif main:
        for error in report.errors:
            out_console.print(f"{name}:{error.line}: error: {error.message}", markup=False, highlight=False)
        todo = ""
        if states:
            counts = {s: states.count(s) for s in ("new", "render", "export", "done")}
            todo = f"; {counts['new']} to make, {counts['render'] + counts['export']} to finish, {counts['done']} done"
        err_console.print(
            f"{report.jobs.lines} line(s): {len(report.jobs.jobs)} valid job(s); {len(report.errors)} error(s){todo}"
        )
    if report.errors:
        raise typer.Exit(1)
