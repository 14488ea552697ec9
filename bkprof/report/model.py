"""What every bkprof command produces: one JSON document and the tables a person reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMATS = ("table", "json", "csv", "markdown")


@dataclass
class Table:
    """A titled pandas DataFrame; `formats` maps a column to a format string such as "{:,.0f}"."""

    title: str
    frame: Any
    formats: dict[str, str] = field(default_factory=dict)
    caption: str = ""
    # the columns a narrow terminal keeps when all of them do not fit side by side (empty: show the
    # table as one record per row instead)
    essential: tuple[str, ...] = ()


@dataclass
class Report:
    """`payload` is the JSON document; `tables` are shown in order; `results` is the CSV table."""

    payload: dict
    tables: list[Table]
    results: Table
