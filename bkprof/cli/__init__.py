"""The bkprof command line: thin commands that parse, call the library and render.

Only typer and rich load at start-up; torch, fvcore and pandas load inside the commands.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bkprof import __version__
from bkprof.cli.errors import OneLineErrors

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
    app()


# Each command lives in its own module and registers itself on `app`; importing them is cheap
# because they import torch, fvcore and pandas only inside the command functions.
from bkprof.cli import commands  # noqa: E402,F401
