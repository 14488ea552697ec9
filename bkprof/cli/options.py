"""Options shared by the commands, declared once, and the config they build."""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Optional

import typer

from bkprof.cli.errors import BadInput


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class Variant(str, Enum):
    dense = "dense"
    sparse = "sparse"
    multiscale = "multiscale"
    combined = "combined"


class Interp(str, Enum):
    learned = "learned"
    linear = "linear"
    cubic = "cubic"


DModel = Annotated[int, typer.Option("--d-model", help="Model width d (even).")]
NSeq = Annotated[int, typer.Option("--n-seq", help="Sequence length N (divisible by --downsample).")]
Experts = Annotated[int, typer.Option("--experts", help="Number of MoE experts E.")]
TopK = Annotated[int, typer.Option("--top-k", help="Experts per token (1..E).")]
Sparsity = Annotated[float, typer.Option("--sparsity", help="Fraction of G_ii positions interpolated, in [0, 1).")]
Downsample = Annotated[int, typer.Option("--downsample", help="Multi-scale factor f: N -> N/f -> N.")]
InterpOpt = Annotated[Interp, typer.Option("--interp", help="How skipped G_ii are filled.")]
Batch = Annotated[int, typer.Option("--batch", help="Sequences per batch (counts are per sequence x batch).")]
Variants = Annotated[Optional[list[Variant]], typer.Option("--variant", help="Variant to include (repeatable; default: all four).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]
def checked_file(ctx: typer.Context, param: typer.CallbackParam, value):
    """An output file's path, checked while the options are parsed: before any work starts."""
    if value is not None:
        from bkprof.report.io import check_output

        check_output(value, param.opts[0])
    return value


def checked_folder(*suffixes: str):
    """An output folder's check (see bkprof.report.io.OutputSet), run while the options are parsed."""
    def check(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is not None:
            from bkprof.report.io import OutputSet

            OutputSet(value, param.opts[0], suffixes)
        return value

    return check


Output = Annotated[Optional[str], typer.Option("--output", callback=checked_file,
                                              help="Write the report to this file (whole or not at all; folders are created).")]
Backend = Annotated[str, typer.Option("--backend", help="BK-Core backend: auto, reference, vectorized, or triton (CUDA).")]


def layer_config(**fields):
    """A LayerConfig from command options; a bad field becomes a one-line error (exit 2)."""
    from bkprof.variants.config import LayerConfig

    fields = {k: (v.value if isinstance(v, Enum) else v) for k, v in fields.items()}
    try:
        return LayerConfig(**fields)
    except ValueError as error:
        raise BadInput(str(error)) from None


def positive(name: str, value: int) -> int:
    if value < 1:
        raise BadInput(f"{name} must be a positive integer, got {value}")
    return value


def variant_names(variants: Optional[list[Variant]]) -> list[str]:
    from bkprof.variants.config import VARIANTS

    chosen = [v.value for v in variants] if variants else list(VARIANTS)
    return list(dict.fromkeys(chosen))


def checked_backend(name: str, device) -> str:
    """The BK-Core backend `name` resolves to on `device`; one line naming --backend when it cannot run there."""
    from bkprof.core import resolve_backend

    try:
        return resolve_backend(name, device).name
    except ValueError as error:
        raise BadInput(f"--backend: {error}") from None


@contextmanager
def progress_bar(total: int, description: str):
    """A transient rich progress bar on stderr (so JSON/CSV on stdout stay clean).

    Yields `update(text, advance=None, completed=None)`.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda text, advance=None, completed=None: bar.update(
            task, description=text, advance=advance, completed=completed)
