"""The bkprof command line: thin commands that parse, call the library and render.

Only typer and rich load at start-up; torch, fvcore and pandas load inside the commands.
"""

from __future__ import annotations

import gc
from typing import Annotated, Optional

import typer

from bkprof import __version__
from bkprof.cli.errors import OneLineErrors

GC_THRESHOLD = 100_000  # allocations between young-generation collections (Python's default: 700)

app = typer.Typer(
    cls=OneLineErrors,
    help="FLOPs, time and memory of BK-Core sequence layers (ResNet-BK): dense, sparse G_ii, multi-scale, combined.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bkprof {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """FLOPs, time and memory of BK-Core sequence layers."""


def run() -> None:
    # Importing torch makes about a million objects; with the default thresholds the cyclic garbage
    # collector walks them over and over while importing, and once more at exit (about 1 s of
    # `bkprof flops`). Collect less often (as mypy does) and leave them out of the exit collection.
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    try:
        app()
    finally:
        gc.freeze()


# Each command lives in its own module and registers itself on `app`; importing them is cheap
# because they import torch, fvcore and pandas only inside the command functions.
from bkprof.cli import commands  # noqa: E402,F401
