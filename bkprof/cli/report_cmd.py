"""`bkprof report`: one self-contained HTML page from any mix of bkprof JSON documents; and `--html FILE`,
the same page written by a command from its own document."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import checked_file, text_option, writing

HtmlOpt = Annotated[Optional[str], text_option(
    "--html", "Also write this run as one self-contained HTML page (as `bkprof report` does).", "FILE", checked_file)]
Inputs = Annotated[list[Path], typer.Argument(
    help="JSON documents of bkprof flops, flops --model, profile, validate, sweep, check, or a check --history "
         "file, in the order the page shows them.", metavar="INPUT", show_default=False)]
PageOutput = Annotated[str, text_option(
    "--output", "The HTML file to write (whole or not at all; folders are created).", "FILE", checked_file)]
TitleOpt = Annotated[str, text_option("--title", "The page's title.", "TEXT")]


@app.command("report", cls=Command)
def report(
    inputs: Inputs,
    output: PageOutput = "report.html",
    title: TitleOpt = "bkprof report",
) -> None:
    """One HTML page (no network, figures inline) from bkprof JSON documents: a section for each."""
    from bkprof.report.html import ReportInputError, read_documents, write_html

    try:
        documents = read_documents(inputs)  # every input read and recognised before anything is written
    except ReportInputError as error:
        raise BadInput(str(error)) from None
    with writing(output, "--output"):
        write_html(documents, output, title)


def write_page(report, html: Optional[str]) -> None:
    """`--html FILE` of a command: its report's document as the page `bkprof report` makes of it."""
    if html is None:
        return
    from bkprof.report.html import write_html

    with writing(html, "--html"):
        write_html([report.payload], html)
