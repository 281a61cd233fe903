"""`audiostory describe IN.wav [--question TEXT]`: caption an audio file or answer a question about it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import absolute, err_console, out_console
from .options import DefaultModelOpt, DeviceOpt, JsonOpt, default_model


def describe(
    audio: Annotated[Path, typer.Argument(help="Audio file: WAV, FLAC, OGG, AIFF, MP3 (M4A and others with ffmpeg).")],
    question: Annotated[
        str | None, typer.Option("--question", "-q", help="Ask about the audio (default: describe it in detail).")
    ] = None,
    model: DefaultModelOpt = None,
    device: DeviceOpt = "auto",
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer in tokens (1 to 4096).")] = 256,
    as_json: JsonOpt = False,
) -> None:
    """Caption AUDIO, or answer --question about it (needs a model with trained audio understanding)."""
    model = default_model(model)
    err_console.print(f"[dim]audiostory describe: {audio}, model {model}[/]")
    from ..app.understand import (
        cannot_describe,
        check_max_tokens,
        check_question,
        describe_audio,
        describe_readiness,
        understanding_precheck,
    )
    from ..audio.input import read_input_audio
    from ..errors import ModelError

    check_question(question)
    check_max_tokens(max_tokens)
    source = read_input_audio(audio)
    if (missing := describe_readiness(model)) is not None:
        raise ModelError(missing)
    gap = understanding_precheck(model)
    if gap is not None:  # known from the sidecar: refuse before loading any weights
        raise ModelError(cannot_describe(gap))

    from .progress_view import RichProgress
    from .session import load_for_command

    loaded, _runtime = load_for_command(model, device)
    with RichProgress() as progress:
        result = describe_audio(source, loaded, question=question, max_new_tokens=max_tokens, progress=progress)
    if as_json:
        out_console.print_json(json.dumps({**result.to_dict(), "audio": absolute(result.audio)}))
    else:
        out_console.print(result.answer, markup=False, highlight=False)
