"""Renderers: rich tables, JSON, CSV and Markdown from one Report."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from bkprof.report.io import write_atomic
from bkprof.report.model import FORMATS, Report, Table


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


def to_rich(table: Table):
    from rich.markup import escape  # text such as "rows[variant=dense]" is data, not rich markup
    from rich.table import Table as RichTable

    out = RichTable(title=escape(table.title), caption=escape(table.caption) if table.caption else None,
                    title_justify="left", caption_justify="left")
    for column in table.frame.columns:
        out.add_column(escape(str(column)), justify="right" if _is_numeric(table, column) else "left", overflow="fold")
    for row in _rows(table):
        out.add_row(*map(escape, row))
    return out


def to_markdown(table: Table) -> str:
    columns = [str(c) for c in table.frame.columns]
    align = ["---:" if _is_numeric(table, c) else "---" for c in table.frame.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(columns) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r.replace("|", "\\|") for r in row) + " |" for row in _rows(table)]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines) + "\n"


def render_text(report: Report, width: int = 140) -> str:
    """The rich tables as plain text (what `--format table --output FILE` writes)."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    for table in report.tables:
        console.print(to_rich(table))
    return console.export_text()


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.payload, indent=2, default=_json_default) + "\n"
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

        console = Console()
        for table in report.tables:
            console.print(to_rich(table))
        return
    print(render(report, fmt), end="")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, complex):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
