"""Tables at 80 and 200 columns and piped: identifiers whole, text wrapped at word boundaries."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from audiostory_cli.cli import app
from audiostory_cli.cli.tables import print_plan, print_table
from tests.story_factory import make_rendered_story

LONG = "a heavy wooden door slams shut somewhere far down the corridor, then footsteps hurry off into the rain"
SEED = 2091512345


def _story(tmp_path):
    folder = make_rendered_story(tmp_path, [4.0, 3.0, 5.0], crossfade=0.0)
    story = folder.load()
    story.events[0].caption = LONG
    story.events[1].seed = SEED
    story.events[2].stem = "amb-long-group"
    folder.save(story)
    return folder, story


def _terminal(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None, highlight=False)


def _words_whole(text: str, phrase: str) -> bool:
    tokens = set(text.replace("│", " ").replace("┃", " ").replace(",", " ").split())
    return all(word in tokens for word in phrase.replace(",", " ").split())


@pytest.mark.parametrize("width", [80, 200])
def test_plan_table_fits_the_terminal_with_identifiers_whole(tmp_path, width):
    _, story = _story(tmp_path)
    console = _terminal(width)
    print_plan(console, story)
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    for event in story.events:
        assert str(event.seed) in text  # never "209151…"
    assert "rendered" in text and "render…" not in text
    assert "amb-long-group" in text
    assert "caption" in text.split()  # the header is not folded ("captio" / "n")
    assert _words_whole(text, LONG)  # the caption wraps between words
    if width == 200:
        assert "timecode" in text and "story detail" in text  # wide enough for the full layout


def test_plan_table_piped_keeps_every_value_on_one_line(tmp_path):
    folder, story = _story(tmp_path)
    result = CliRunner().invoke(app, ["plan", "show", str(folder.root)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(LONG in line and str(SEED) not in line for line in lines)
    row = next(line for line in lines if str(SEED) in line)
    assert row.split()[0] == "2" and row.split()[-1] == "stale"  # a changed seed makes the event stale
    assert "│" not in result.stdout and all(line == line.rstrip() for line in lines)


def test_models_list_at_80_columns_and_piped():
    from audiostory_cli.cli import models as models_cmd

    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    first = next(line for line in result.stdout.splitlines() if line.startswith("audiostory-3b"))
    assert "missing" in first.split()  # the whole row on one line when piped
    console = _terminal(80)
    original = models_cmd.out_console
    models_cmd.out_console = console
    try:
        models_cmd.list_models_cmd(verbose=False, as_json=False)
    finally:
        models_cmd.out_console = original
    text = console.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "audiostory-3b" in text.split() or "│ audiostory-3b" in text
    assert "tiny-random" in text and "missing" in text


def test_a_table_too_wide_for_its_identifiers_becomes_records():
    from rich.table import Table

    table = Table(title="ids")
    for name in ("alpha", "beta", "gamma"):
        table.add_column(name, no_wrap=True)
    table.add_row("x" * 30, "y" * 30, "z" * 30)
    console = _terminal(80)
    print_table(console, table)
    text = console.file.getvalue()
    assert "x" * 30 in text and "y" * 30 in text and "z" * 30 in text
    assert max(len(line) for line in text.splitlines()) <= 80
