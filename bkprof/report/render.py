"""Renderers: rich tables, JSON, CSV and Markdown from one Report.

Tables are laid out here, not by rich: a number, percentage, ratio or status never breaks across
lines at any width. Each column gets the width of its longest unbreakable word; when the columns do
not fit side by side (with padding, then without) the table is shown as a record view, one
"field | value" block per row.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from bkprof.report.io import write_atomic
from bkprof.report.model import FORMATS, Report, Table

# Width when no terminal tells us one and COLUMNS is unset (a CI log, `> file`): the docs' width.
PIPED_WIDTH = 100
FILE_WIDTH = 140
# A word without a digit longer than this (an operator name, a metric path) may be broken;
# a word with a digit (a number, "86%;", "N=256,") never is. Record views try the short limit last.
SOFT_WORD, SHORT_SOFT_WORD = 24, 8
# The space between a number and its unit ("12.5 %", "3.2 ms") is glued, so they stay on one line.
_UNIT_SPACE = re.compile(r"(?<=\d) (?=(?:%|×|x|[mµun]?s|[KMG]i?B|FLOP/s|[KMGT]?FLOPs?)(?!\w))")
# textwrap splits on ASCII whitespace only, so a no-break space (U+00A0) glues two words: the
# tables use it between a name and its share ("refine\u00a025%") and it prints as a space.
_GLUE = "\u00a0"
_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


def cell(value, fmt: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if fmt:
        try:
            return fmt.format(value)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and "int" in str(getattr(value, "dtype", ""))):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return str(value)


def _rows(table: Table) -> list[list[str]]:
    frame = table.frame
    return [[cell(row[c], table.formats.get(c)) for c in frame.columns] for _, row in frame.iterrows()]


def _is_numeric(table: Table, column: str) -> bool:
    return str(table.frame[column].dtype).startswith(("int", "float", "Int", "Float"))


def console_width() -> int:
    """COLUMNS when set, else the width of a terminal on stdout, stderr or stdin, else PIPED_WIDTH."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        try:
            if stream is not None and stream.isatty():
                return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            continue
    return PIPED_WIDTH


# ---- layout -------------------------------------------------------------------------------------

def _words(text: str) -> list[str]:
    return [w for w in _ASCII_SPACE.split(_UNIT_SPACE.sub(_GLUE, text)) if w]


def _unbreakable(word: str, soft: int) -> int:
    """How narrow a line may be without breaking `word`: all of it if it holds a digit, else up to `soft`."""
    return len(word) if any(ch.isdigit() for ch in word) else min(len(word), soft)


@dataclass
class _Column:
    header: str
    cells: list[str]
    right: bool = False

    def natural(self) -> int:
        lines = [line for text in (self.header, *self.cells) for line in text.splitlines()]
        return max((len(line) for line in lines), default=1) or 1

    def minimum(self, soft: int) -> int:
        """The narrowest width that breaks no number and no header word."""
        body = max((_unbreakable(w, soft) for text in self.cells for w in _words(text)), default=1)
        head = max((len(w) for w in _words(self.header)), default=1)
        return max(body, head, 1)


def _widths(columns: list[_Column], width: int, pad: int, soft: int = SOFT_WORD) -> list[int] | None:
    """Column widths that fit `width`, shrinking the widest columns first; None if the minima do not fit."""
    room = width - len(columns) * (2 * pad + 1) - 1
    minima = [c.minimum(soft) for c in columns]
    if sum(minima) > room:
        return None
    widths = [max(c.natural(), m) for c, m in zip(columns, minima)]
    while sum(widths) > room:
        i = max((i for i in range(len(widths)) if widths[i] > minima[i]), key=lambda i: widths[i])
        widths[i] -= 1
    return widths


def _wrap(text: str, width: int) -> str:
    """`text` in lines of at most `width`; words are kept whole where they fit (see `_unbreakable`)."""
    lines = []
    for paragraph in text.splitlines() or [""]:
        glued = _UNIT_SPACE.sub(_GLUE, paragraph)
        wrapped = textwrap.wrap(glued, width, break_long_words=True, break_on_hyphens=False) or [""]
        lines += [line.replace(_GLUE, " ") for line in wrapped]
    return "\n".join(lines)


def _rich_table(columns: list[_Column], widths: list[int], pad: int, *, title, caption, show_header=True,
                sections: int = 0):
    """A rich table with fixed, pre-wrapped columns; `sections` > 0 draws a rule after every that many rows."""
    from rich.markup import escape  # text such as "rows[variant=dense]" is data, not rich markup
    from rich.table import Table as RichTable

    out = RichTable(title=escape(title), caption=escape(caption) if caption else None, title_justify="left",
                    caption_justify="left", padding=(0, pad), show_header=show_header)
    for column, width in zip(columns, widths):
        out.add_column(escape(_wrap(column.header, width)), justify="right" if column.right else "left",
                       width=width, no_wrap=True, overflow="fold")
    n_rows = len(columns[0].cells) if columns else 0
    for r in range(n_rows):
        last_of_section = sections > 0 and (r + 1) % sections == 0 and r + 1 < n_rows
        out.add_row(*(escape(_wrap(c.cells[r], w)) for c, w in zip(columns, widths)), end_section=last_of_section)
    return out


def _record_columns(names, rows: list[list[str]]) -> list[_Column]:
    """One "field | value" pair per cell, row after row."""
    fields, values = [], []
    for row in rows:
        fields += [str(c) for c in names]
        values += row
    return [_Column("", fields), _Column("", values)]  # no header: the fields name the values


def to_rich(table: Table, width: int = FILE_WIDTH):
    """`table` laid out for `width` columns: side by side if it fits, else one record per row."""
    rows = _rows(table)
    columns = [_Column(str(c), [row[i] for row in rows], _is_numeric(table, c))
               for i, c in enumerate(table.frame.columns)]
    for pad in (1, 0):
        widths = _widths(columns, width, pad)
        if widths is not None:
            return _rich_table(columns, widths, pad, title=table.title, caption=table.caption)
    compact = _essential_layout(table, columns, width)
    if compact is not None:
        return compact
    records = _record_columns(table.frame.columns, rows)
    # the last layout breaks every word but numbers; narrower than a number, numbers break too
    layouts = [(pad, soft) for soft in (SOFT_WORD, SHORT_SOFT_WORD, 1) for pad in (1, 0)]
    for pad, soft in layouts:
        widths = _widths(records, width, pad, soft=soft)
        if widths is not None:
            break
    else:
        pad, field = 0, max(1, (width - 3) // 3)
        widths = [field, max(1, width - 3 - field)]
    return _rich_table(records, widths, pad, title=table.title, caption=table.caption, show_header=False,
                       sections=len(table.frame.columns))


def _essential_layout(table: Table, columns: list[_Column], width: int):
    """The table's essential columns side by side, its caption saying what was left out and how wide
    a terminal shows everything; None when it has none or they do not fit either."""
    kept = [c for c in columns if c.header in table.essential]
    if not kept or len(kept) == len(columns):
        return None
    for pad in (1, 0):
        widths = _widths(kept, width, pad)
        if widths is not None:
            left_out = ", ".join(c.header for c in columns if c not in kept)
            full = sum(max(c.natural(), c.minimum(SOFT_WORD)) for c in columns) + len(columns) + 1
            caption = (f"{table.caption} " if table.caption else "") + (
                f"Left out at this width: {left_out} (all columns from {full} columns, or with --format "
                "markdown, csv or json).")
            return _rich_table(kept, widths, pad, title=table.title, caption=caption)
    return None


# ---- formats ------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    columns = [str(c) for c in table.frame.columns]
    align = ["---:" if _is_numeric(table, c) else "---" for c in table.frame.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r.replace("|", "\\|").replace(_GLUE, " ") for r in row) + " |" for row in _rows(table)]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines) + "\n"


def _print_tables(report: Report, console, width: int) -> None:
    for table in report.tables:
        console.print(to_rich(table, width))


def render_text(report: Report, width: int = FILE_WIDTH) -> str:
    """The rich tables as plain text (what `--format table --output FILE` writes)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    _print_tables(report, console, width)
    return console.export_text()


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        from bkprof.report.records import finite_json

        return finite_json(report.payload, default=_json_default) + "\n"
    if fmt == "csv":
        return report.results.frame.to_csv(index=False)
    if fmt == "markdown":
        return "\n".join(to_markdown(t) for t in report.tables)
    if fmt == "table":
        return render_text(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def emit(report: Report, fmt: str, output: str | Path | None = None) -> None:
    """Print `report` in `fmt`, or write it whole to `output`."""
    if output is not None:
        write_atomic(output, render(report, fmt))
        return
    if fmt == "table":
        from rich.console import Console

        width = console_width()
        _print_tables(report, Console(width=width), width)
        return
    print(render(report, fmt), end="")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, complex):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
