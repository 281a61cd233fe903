"""`audiostory export STORY_DIR`: mix, loudness, true-peak limit, stems and cue sheets from rendered events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import err_console, out_console
from .options import ALL_CUES, CuesOpt, NoWaitOpt, lock_story, parse_cues


def export(
    story_dir: Annotated[Path, typer.Argument(help="Story folder with story.json and rendered events/.")],
    loudness: Annotated[
        str | None,
        typer.Option(help="Loudness preset: broadcast, atsc, podcast, streaming or none (default: the story's)."),
    ] = None,
    lufs: Annotated[
        float | None, typer.Option(help="Integrated loudness target in LUFS; overrides the preset's.")
    ] = None,
    true_peak: Annotated[
        float | None, typer.Option("--true-peak", help="True-peak ceiling in dBTP; overrides the preset's.")
    ] = None,
    sample_rate: Annotated[
        int | None, typer.Option("--sample-rate", help="Output sample rate in Hz (default: the preset's, 48000).")
    ] = None,
    bit_depth: Annotated[
        int | None, typer.Option("--bit-depth", help="16, 24 (PCM) or 32 (float) (default: the preset's, 24).")
    ] = None,
    stems: Annotated[
        bool, typer.Option("--stems", help="Also write one stem per event (stems sum to the mix).")
    ] = False,
    stem_groups: Annotated[
        bool,
        typer.Option(
            "--stem-groups",
            help="Also write one stem per stem group (fx, amb, ...) into stem-groups/; they sum to the mix.",
        ),
    ] = False,
    cues: CuesOpt = ALL_CUES,
    fps: Annotated[
        float, typer.Option(help="Timecode rate: 23.976, 24, 25, 29.97 (drop-frame), 30, 48, 50, 59.94, 60.")
    ] = 25.0,
    force: Annotated[bool, typer.Option("--force", help="Replace the outputs of a previous export.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of the paths.")] = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Mix the rendered events and deliver mix.wav, stems/ and cues/ (with qc.json); no model needed."""
    from ..app.export import ExportOptions, export_story
    from ..story import StoryFolder

    options = ExportOptions(
        loudness=loudness,
        lufs=lufs,
        true_peak=true_peak,
        sample_rate=sample_rate,
        bit_depth=bit_depth,
        stems=stems,
        stem_groups=stem_groups,
        cues=parse_cues(cues),
        fps=fps,
        force=force,
    )
    folder = StoryFolder(story_dir)
    with lock_story(folder, "export", no_wait=no_wait), err_console.status("exporting…") as status:

        def progress(stage: str, done: int, total: int) -> None:
            status.update(f"export: {stage} {done}/{total}")

        result = export_story(folder, options, progress)
    qc: dict[str, Any] = result.qc
    if not qc["met"]:
        from rich.markup import escape

        err_console.print(
            f"[yellow]warning:[/] target not met: {qc['integrated_lufs']} LUFS, {qc['true_peak_dbtp']} dBTP "
            f"(target {qc['target']['integrated_lufs']} LUFS ±{qc['target']['tolerance_lu']}, "
            f"{qc['target']['true_peak_dbtp']} dBTP): {escape('; '.join(qc.get('not_met_because', [])))}; "
            f"see {escape(str(result.qc_path))}"
        )
    if as_json:
        out_console.print_json(json.dumps(result.to_dict()))
        return
    for path in result.written:
        out_console.print(str(path), markup=False, highlight=False)
