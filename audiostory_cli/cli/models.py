"""`audiostory models list|download|verify|path|convert`: the model registry, verified downloads, conversion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError, WeightsError
from .common import ErrorHandlingGroup, err_console, out_console
from .progress_view import RichProgress, byte_columns
from .tables import print_table

app = typer.Typer(
    cls=ErrorHandlingGroup,
    no_args_is_help=True,
    help="List, download, verify and convert model weights (registry: models/*.toml).",
)


@app.command("list")
def list_models_cmd(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every part: repo, revision, licence.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Registered models with kind, download size, whether revisions are pinned, licence and local status."""
    from rich.table import Table

    from ..weights.download import converted_path, model_status
    from ..weights.registry import ModelSpec, format_size, list_models

    rows: list[tuple[ModelSpec, dict[str, str]]] = []
    for spec in list_models():
        size, complete = spec.known_size()
        status = model_status(spec)
        if spec.kind == "hub" and (converted_path(spec) / "audiostory.json").is_file():
            status += ", converted"
        elif spec.kind == "hub" and status == "present":
            status += ", not converted"
        unpinned = [p.name for p in spec.parts if not p.pinned]
        revision = "—" if not spec.parts else ("pinned" if not unpinned else f"NOT pinned: {', '.join(unpinned)}")
        shown_size = format_size(size, complete) if spec.parts else "—"
        if spec.parts and not complete and spec.approx_size:
            shown_size = spec.approx_size
        rows.append(
            (
                spec,
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "size": shown_size,
                    "revision": revision,
                    "licence": spec.licence,
                    "status": status,
                },
            )
        )
    if as_json:
        out_console.print_json(
            json.dumps(
                [
                    {
                        **row,
                        "parts": [
                            {
                                "name": p.name,
                                "repo": p.repo_id,
                                "revision": p.revision,
                                "pinned": p.pinned,
                                "licence": p.licence,
                                "optional": p.optional,
                                "role": p.role,
                            }
                            for p in spec.parts
                        ],
                    }
                    for spec, row in rows
                ]
            )
        )
        return
    table = Table(title="models")
    for column in ("model", "kind", "size", "revision", "licence", "status"):
        table.add_column(column, no_wrap=column in ("model", "kind", "status"))  # identifiers stay whole
    for spec, row in rows:
        table.add_row(row["name"], row["kind"], row["size"], row["revision"], row["licence"], row["status"])
        if verbose:
            for p in spec.parts:
                pin = p.revision[:10] + ("" if p.pinned else " (branch, NOT pinned)")
                label = f"  └ {p.name}" + (" (optional)" if p.optional else "")
                table.add_row(label, p.repo_id, format_size(p.known_size, p.size_complete), pin, p.licence, "")
    print_table(out_console, table)


@app.command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. audiostory-3b.")],
    force: Annotated[bool, typer.Option("--force", help="Download every file again.")] = False,
    with_optional: Annotated[
        bool, typer.Option("--with-optional", help="Also fetch optional parts (training initialisation).")
    ] = False,
    convert: Annotated[
        bool, typer.Option("--convert/--no-convert", help="Convert to a fast model folder once downloaded.")
    ] = True,
    dtype: Annotated[str, typer.Option("--dtype", help="Converted weights: bf16, fp16 or fp32.")] = "bf16",
) -> None:
    """Download a model's files (resumable), verify sizes and sha256, convert once; print the model folder."""
    from ..weights.download import converted_path, download_model
    from ..weights.registry import get_model_spec

    spec = get_model_spec(name)
    with RichProgress(columns=byte_columns(), transient=True, unknown_totals=True) as progress:
        path = download_model(spec, progress=progress, force=force, include_optional=with_optional)
    err_console.print(f"{spec.name}: all files present and verified")
    target = converted_path(spec)
    if convert and (force or not (target / "audiostory.json").is_file()):
        from ..model import meta_parts
        from ..weights.convert import convert_model

        with RichProgress() as steps:
            path = convert_model(spec, build_parts=meta_parts, dtype=dtype, force=True, progress=steps).path
        err_console.print(f"{spec.name}: converted (LoRA merged, every key checked) into {path}")
        _print_notes(path)
    elif (target / "audiostory.json").is_file():
        path = target
    else:
        err_console.print(f"next: audiostory models convert {spec.name}")
    out_console.print(str(path), soft_wrap=True)


@app.command("verify")
def verify_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name or a model folder path.")],
    with_optional: Annotated[bool, typer.Option("--with-optional", help="Also check optional parts.")] = False,
) -> None:
    """Hash every file and compare with the registry (or the sidecar of a model folder)."""
    from rich.table import Table

    from ..weights.checkpoint import verify_model_folder
    from ..weights.download import verify_model
    from ..weights.registry import resolve_model_ref

    ref = resolve_model_ref(model)
    with RichProgress(columns=byte_columns(), transient=True, unknown_totals=True) as progress:
        if isinstance(ref, Path):
            checks = verify_model_folder(ref)
        elif ref.kind == "hub":
            checks = verify_model(ref, include_optional=with_optional, progress=progress)
        else:
            raise UsageError(f"{ref.name} is {ref.kind}: it has no files to verify")
    table = Table(title=f"verify {model}")
    for column in ("part", "file", "status", "detail"):
        table.add_column(column, no_wrap=column in ("part", "status"))
    for c in checks:
        style = "green" if c.status == "ok" else ("yellow" if c.status == "unverified" else "red")
        table.add_row(c.part, c.path, f"[{style}]{c.status}[/]", c.detail)
    print_table(out_console, table)
    if not isinstance(ref, Path):
        for part in ref.parts:
            if not part.pinned:
                err_console.print(
                    f"note: part {part.name} ({part.repo_id}) follows {part.revision!r}; it is not "
                    "pinned to a commit, so its content can change upstream",
                    markup=False,
                )
    bad = [c for c in checks if not c.ok]
    if bad:
        raise WeightsError(
            f"{len(bad)} of {len(checks)} file(s) failed: "
            + ", ".join(f"{c.part}/{c.path} ({c.status})" for c in bad[:5])
            + (
                "; run `audiostory models download` to fetch or repair them"
                if not isinstance(ref, Path)
                else "; convert the model again"
            )
        )


@app.command("path")
def path_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name or a model folder path.")],
    converted: Annotated[bool, typer.Option("--converted", help="The converted model folder instead.")] = False,
) -> None:
    """Print where a model's files are (downloads, or with --converted the model folder inference loads)."""
    from ..weights.download import converted_path, model_path
    from ..weights.registry import resolve_model_ref

    ref = resolve_model_ref(model)
    if isinstance(ref, Path):
        out_console.print(str(ref), soft_wrap=True)
        return
    path = converted_path(ref) if converted and ref.kind == "hub" else model_path(ref)
    out_console.print(str(path), soft_wrap=True)


@app.command("convert")
def convert_cmd(
    name: Annotated[str | None, typer.Argument(help="A downloaded registered model (e.g. audiostory-3b).")] = None,
    source: Annotated[
        list[Path] | None,
        typer.Option("--source", help="Source folder (repeat): AudioStory, Qwen, TangoFlux, flan-T5, Whisper."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output model folder.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="bf16, fp16 or fp32 (VAE and T5 never fp16).")] = "bf16",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output folder.")] = False,
) -> None:
    """Write our model folder once: LoRA merged, strict key check, tokenizer, sidecar with source hashes."""
    from ..model import meta_parts
    from ..weights.convert import classify_sources, convert_official, sources_from_download
    from ..weights.download import converted_path
    from ..weights.registry import get_model_spec

    if source:
        if name is not None:
            raise UsageError("give either a model NAME or --source folders, not both")
        if out is None:
            raise UsageError("--source needs --out DIR for the converted model folder")
        sources = classify_sources(list(source))
        target = out
        label = "audiostory-3b"
    else:
        if name is None:
            raise UsageError("give a downloaded model NAME (e.g. audiostory-3b) or --source folders with --out")
        spec = get_model_spec(name)
        from ..weights.download import model_status

        if spec.kind != "hub" or model_status(spec) != "present":
            raise UsageError(f"{name} is not a fully downloaded hub model; run `audiostory models download {name}`")
        sources = sources_from_download(spec)
        target = out or converted_path(spec)
        label = spec.name

    with RichProgress() as progress:
        meta = convert_official(
            sources, target, build_parts=meta_parts, dtype=dtype, force=force, name=label, progress=progress
        )
    err_console.print(f"converted {label}: {', '.join(meta.parts)} ({meta.dtype})")
    _print_notes(meta.path)
    out_console.print(str(meta.path), soft_wrap=True)


def _print_notes(folder: Path) -> None:
    """The conversion's notes (LoRA merged, parts dropped and why), from the folder's sidecar, on stderr."""
    from ..weights.checkpoint import read_sidecar

    for note in read_sidecar(folder).extra.get("notes", []):
        err_console.print(f"note: {note}", highlight=False)
