"""Printing Rich tables so that identifiers stay whole: at any terminal width, and when piped.

Columns declared ``no_wrap=True`` hold identifiers (model names, event numbers, seeds, statuses): they are never
wrapped or cut. Other columns wrap at word boundaries. Without a terminal (a pipe, a file) the table is printed
as plain aligned columns at its natural width, every value whole, so it can be read back by a script.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table

if TYPE_CHECKING:
    from ..story import Story

# A word longer than this may be folded, so one long path cannot push every other column off the screen.
_LONGEST_WORD = 24


def print_table(console: Console, table: Table, *, compact: Callable[[], Table] | None = None) -> None:
    """Print ``table`` to ``console``: fitted to the terminal, else ``compact()``, else one record per row."""
    if not console.is_terminal:
        _print_plain(console, table)
        return
    for candidate in (table, compact() if compact is not None else None):
        if candidate is not None and fit_table(console, candidate, console.width):
            console.print(candidate)
            return
    console.print(_records(console, table))


def fit_table(console: Console, table: Table, width: int) -> bool:
    """Give every column a fixed width so the table fits ``width``; False when identifiers cannot fit whole."""
    ranges = [_measure(console, table, index) for index in range(len(table.columns))]
    budget = width - table._extra_width - sum(table._get_padding_width(i) for i in range(len(table.columns)))
    widths = [
        r.maximum if c.no_wrap else max(min(r.minimum, _LONGEST_WORD, r.maximum), _header(console, table, c))
        for c, r in zip(table.columns, ranges, strict=True)
    ]
    if sum(widths) > budget:
        return False
    spare = budget - sum(widths)
    growable = [i for i, c in enumerate(table.columns) if not c.no_wrap]
    while spare > 0:  # hand out the spare width one column at a time, to the text still wrapped the most
        wanting = [i for i in growable if widths[i] < ranges[i].maximum]
        if not wanting:
            break
        index = max(wanting, key=lambda i: ranges[i].maximum - widths[i])
        widths[index] += 1
        spare -= 1
    for column, column_width in zip(table.columns, widths, strict=True):
        column.width = column_width
        if not column.no_wrap:
            column.overflow = "fold"  # only a word longer than the column is folded
    table.expand = False
    return True


def _header(console: Console, table: Table, column: Column) -> int:
    """A header is never wrapped ("captio" / "n")."""
    if not table.show_header or column.header is None:
        return 0
    return Measurement.get(console, console.options.update_width(10_000), column.header).maximum


def _measure(console: Console, table: Table, index: int) -> Measurement:
    column = table.columns[index]
    cells = [column.header, *column.cells] if table.show_header else list(column.cells)
    options = console.options.update_width(10_000)
    measured = [Measurement.get(console, options, cell) for cell in cells if cell is not None]
    if not measured:
        return Measurement(1, 1)
    return Measurement(max(m.minimum for m in measured), max(m.maximum for m in measured))


def _print_plain(console: Console, table: Table) -> None:
    """Aligned columns, no box, no wrapping: the whole table at its natural width."""
    table.box = None
    table.title_justify = "left"
    table.show_edge = False
    table.pad_edge = False
    table.expand = False
    for index, column in enumerate(table.columns):
        column.width = _measure(console, table, index).maximum
        column.no_wrap = True
    total = (
        sum(c.width or 0 for c in table.columns)
        + sum(table._get_padding_width(i) for i in range(len(table.columns)))
        + table._extra_width
    )
    title_width = (
        Measurement.get(console, console.options.update_width(10_000), table.title).maximum if table.title else 0
    )
    buffer = io.StringIO()
    plain = Console(
        file=buffer,
        width=max(total, title_width, 1),
        color_system=None,
        highlight=False,
        force_terminal=False,
        legacy_windows=False,
    )
    plain.print(table, crop=False)
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
    console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True, crop=False)


def _records(console: Console, table: Table) -> Table:
    """One block per row: ``header  value`` lines, the values wrapping at word boundaries."""
    grid = Table(
        title=table.title, title_justify="left", box=box.SIMPLE_HEAD, show_header=False, show_edge=False, pad_edge=False
    )
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    cells = [list(c.cells) for c in table.columns]
    rows = max((len(c) for c in cells), default=0)
    for row in range(rows):
        for column, column_cells in zip(table.columns, cells, strict=True):
            grid.add_row(column.header, column_cells[row], end_section=column is table.columns[-1])
    return grid


def print_plan(console: Console, story: Story, *, fps: float = 25.0) -> None:
    """The plan table, in its compact layout when the terminal is too narrow for every column, then how it renders
    (bridge source, canvas, join) in plain lines."""
    from ..story.table import plan_table, render_notes

    print_table(console, plan_table(story, fps=fps), compact=lambda: plan_table(story, fps=fps, compact=True))
    for line in render_notes(story):
        console.print(line, highlight=False, markup=False)
