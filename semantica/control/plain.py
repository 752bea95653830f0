"""What ``semctl status``, ``list`` and ``show`` draw, described once and drawn without
rich when the drawing is simple.

Each ``semctl`` is a new process, and importing rich costs about as much as the rest of
such a command. Most of what these views show is simple: short ASCII lines, tables
that fit the screen. Such a view is written here directly, exactly as rich would
draw it; anything else (text outside printable ASCII, whose width on a terminal
rich knows; a line wider than the terminal, which rich wraps or cuts with an
ellipsis; a console that rich would set up otherwise: ``FORCE_COLOR``,
``NO_COLOR``, ``TTY_COMPATIBLE``, ``TERM=dumb``, ...) is drawn by rich, from the
same description. tests/unit/test_plain.py checks that both draw the same.

A view is a list of blocks, each a :data:`Line` (one line of styled spans) or a
:class:`Table`. Every text in a block is already made printable
(:func:`semantica.control.terminal.printable`): this module never sees job data
that could drive a terminal, and rich gets it as ``Text``, never as markup.
"""

# Annotations are evaluated here, not postponed (no `from __future__ import
# annotations`): typing.NamedTuple compiles each postponed field type, about 1 ms
# of every `semctl` start for the one class here.

import os
import re
import sys
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from rich.console import RenderableType

#: A run of text in one style ("" for none): ``("FAILED", "red")``.
Span = tuple[str, str]
#: One line, or one table cell: its spans in order.
Line = list[Span]


class Table(NamedTuple):
    """A table with no lines drawn: columns two spaces apart, as rich's ``Table(box=None,
    pad_edge=False)``; or, ``grid``, rich's ``Table.grid(padding=(0, 2))`` (no header,
    the first column bold)."""

    #: Each column's header (unused for a grid) and whether its cells may not wrap.
    columns: list[tuple[str, bool]]
    rows: list[list[Line]]
    grid: bool = False
    #: Cells of the last column that keep to one line, cut with an ellipsis when narrow.
    last_one_line: bool = False
    #: The columns (by index) whose cells keep to one line so, wherever they stand.
    one_line: tuple[int, ...] = ()


Block = Line | Table

#: What rich reads from the environment to set up its console otherwise: left to rich.
_RICH_SETTINGS = (
    "FORCE_COLOR",
    "NO_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "JUPYTER_COLUMNS",
    "JUPYTER_LINES",
)
#: Text whose width is its length on every terminal (and in rich's measure).
_SIMPLE = re.compile("[ -~]*")
#: The SGR parameters of the styles the views use (rich writes the same).
_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "magenta": "35",
    "cyan": "36",
}


def show(blocks: list[Block]) -> None:
    """Print ``blocks`` to stdout for people: directly when simple, else with rich.

    Into a pipe or a file: never wrapped, without the spaces rich pads lines with.
    """
    from semantica.control.terminal import is_terminal

    terminal = is_terminal()
    lines = draw(blocks, _terminal_width() if terminal else None)
    if lines is None:
        from semantica.control.terminal import show as show_with_rich

        show_with_rich(*to_rich(blocks))
        return
    sys.stdout.write("".join(line + "\n" for line in lines))


def draw(blocks: list[Block], width: int | None) -> list[str] | None:
    """The lines of ``blocks``: coloured, for a terminal ``width`` columns wide; plain and
    without trailing spaces when ``width`` is None (a pipe, a file). None when rich
    must draw them."""
    if any(name in os.environ for name in _RICH_SETTINGS):
        return None
    if width is not None and os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return None
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            rows, wide = _table_rows(block)
        else:
            rows, wide = [[(block, "")]], _cell_len(block)
        if width is not None and wide > width:
            return None  # rich wraps it, or cuts a cell short
        for row in rows:
            if not all(_SIMPLE.fullmatch(text) for cell, _ in row for text, _ in cell):
                return None
            out.append(_join(row, width is not None))
    return out


def _table_rows(table: Table) -> tuple[list[list[tuple[Line, str]]], int]:
    """Each row's cells padded to their column's width and two spaces apart, as
    ``(spans, the cell's own style)``, the last cell not padded; and the table's width."""
    header = [] if table.grid else [[[(name, "")] for name, _ in table.columns]]
    rows = header + table.rows
    count = len(table.columns)
    widths = [max(_cell_len(row[i]) for row in rows) if rows else 0 for i in range(count)]
    drawn = []
    for r, row in enumerate(rows):
        cells: list[tuple[Line, str]] = []
        for i, cell in enumerate(row):
            style = "bold" if (r == 0 and header) or (table.grid and i == 0) else ""
            last = i == len(row) - 1
            pad = 0 if last else widths[i] - _cell_len(cell) + 2
            cells.append(([*cell, (" " * pad, "")] if pad else cell, style))
        drawn.append(cells)
    return drawn, sum(widths) + 2 * (count - 1)


def _cell_len(cell: Line | tuple[Line, str]) -> int:
    spans = cell[0] if isinstance(cell, tuple) else cell
    return sum(len(text) for text, _ in spans)


def _join(row: list[tuple[Line, str]], color: bool) -> str:
    if not color:
        return "".join(text for cell, _ in row for text, _ in cell).rstrip()
    parts = []
    for cell, cell_style in row:
        for text, style in cell:
            codes = ";".join(_SGR[word] for word in f"{cell_style} {style}".split() if word in _SGR)
            parts.append(f"\x1b[{codes}m{text}\x1b[0m" if codes and text.strip() else text)
    return "".join(parts)


def _terminal_width() -> int:
    """The terminal's width, found as rich finds it (stdin, stdout, stderr, then COLUMNS)."""
    width = 0
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        width = int(columns)
    return width or 80


def to_rich(blocks: list[Block]) -> "list[RenderableType]":
    """The same blocks as rich renderables (the spans as ``Text``, never markup)."""
    from rich.table import Table as RichTable
    from rich.text import Text

    def text(spans: Line, one_line: bool = False) -> Text:
        shown = Text.assemble(*spans)
        if one_line:
            shown.no_wrap, shown.overflow = True, "ellipsis"
        return shown

    out: list[RenderableType] = []
    for block in blocks:
        if not isinstance(block, Table):
            out.append(text(block))
            continue
        if block.grid:
            table = RichTable.grid(padding=(0, 2))
            table.add_column(style="bold")
            for _ in block.columns[1:]:
                table.add_column()
        else:
            table = RichTable(box=None, pad_edge=False)
            for name, no_wrap in block.columns:
                table.add_column(name, no_wrap=no_wrap)
        cut = {*block.one_line, *([len(block.columns) - 1] if block.last_one_line else [])}
        for row in block.rows:
            table.add_row(*(text(c, i in cut) for i, c in enumerate(row)))
        out.append(table)
    return out
