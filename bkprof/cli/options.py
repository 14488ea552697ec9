"""Every option the commands share, defined once: names, metavars, defaults, choices and error wording.

Layer options take their names and help from `bkprof.variants.fields`, their defaults from
`LayerConfig()` and their choices from the library's own tuples; a command gets all of them by
declaring one `layer: LayerOptions` parameter under `@with_layer_options(...)`. Bad values are one
line naming the option (exit 2), worded the same in every command:

    --runs must be a positive integer, got 0
    --warmup must be a non-negative integer, got -1
    --format 'xml': must be one of table, json, csv, markdown
"""

from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path
from contextlib import contextmanager
from typing import Annotated, Any, Callable, Optional, Sequence

import typer

from bkprof.cli.errors import BadInput, LazyText
from bkprof.report.model import FORMATS
from bkprof.sizes import MAX_RUNS, MAX_STEPS  # noqa: F401  (the commands' bounds, from the library)
from bkprof.variants import registry
from bkprof.variants.config import INTERPOLATIONS, MAX_SIZE, LayerConfig
from bkprof.variants.fields import FIELDS

LAYER = LayerConfig()


# ---- one wording for every check ----------------------------------------------------------------

def positive(option: str, value: int, at_most: int | None = None) -> int:
    if value < 1:
        raise BadInput(f"{option} must be a positive integer, got {value}")
    return _at_most(option, value, at_most)


def non_negative(option: str, value: int, at_most: int | None = None) -> int:
    if value < 0:
        raise BadInput(f"{option} must be a non-negative integer, got {value}")
    return _at_most(option, value, at_most)


def _at_most(option: str, value: int, limit: int | None) -> int:
    if limit is not None and value > limit:
        raise BadInput(f"{option} must be at most {limit:,}, got {value:,}")
    return value


def one_of(option: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise BadInput(f"{option} {value!r}: must be one of {', '.join(choices)}")
    return value


def _integer(option: str) -> Callable[[str], int]:
    def parse(text) -> int:
        if isinstance(text, int):
            return text
        try:
            value = int(text)
        except ValueError:
            raise BadInput(f"{option} {text!r}: not an integer") from None
        if abs(value) > MAX_SIZE:  # no count or size bkprof takes comes near; Python ints never overflow
            raise BadInput(f"{option} {text!r}: too large (at most 2^{MAX_SIZE.bit_length() - 1} = {MAX_SIZE:,})")
        return value

    return parse


def _number(option: str) -> Callable[[str], float]:
    def parse(text) -> float:
        if isinstance(text, (int, float)):
            return float(text)
        try:
            value = float(text)
        except ValueError:
            raise BadInput(f"{option} {text!r}: not a number") from None
        if not math.isfinite(value):
            raise BadInput(f"{option} {text!r}: not a finite number")
        return value

    return parse


def _choice(option: str, choices: Callable[[], Sequence[str]]) -> Callable[[str], str]:
    """Checked against `choices()` when parsed, so a variant registered after start-up is accepted."""
    def parse(text: str) -> str:
        return one_of(option, text, choices())

    return parse


# ---- option builders ----------------------------------------------------------------------------

def integer_option(option: str, help: str):
    return typer.Option(option, help=help, metavar="INT", parser=_integer(option))


def number_option(option: str, help: str):
    return typer.Option(option, help=help, metavar="FLOAT", parser=_number(option))


def choice_option(option: str, help: str, choices: Sequence[str] | Callable[[], Sequence[str]]):
    """`choices`: the library's tuple, or a function returning it (read when --help or the value is
    parsed, so a tuple behind a heavy import does not slow start-up and a registry stays live)."""
    listed = choices if callable(choices) else (lambda: choices)
    # the choices go in the help text, which wraps between words; as a metavar ("a|b|c") a terminal
    # too narrow for the list broke it mid-word
    listing = LazyText(lambda: f"{help} One of: {', '.join(listed())}.")
    return typer.Option(option, help=listing, metavar="NAME", parser=_choice(option, listed))



def text_option(option: str, help: str, metavar: str = "TEXT", callback=None):
    return typer.Option(option, help=help, metavar=metavar, callback=callback)


def checked_file(ctx: typer.Context, param: typer.CallbackParam, value):
    """An output file's path, checked while the options are parsed: before any work starts."""
    if value is not None:
        from bkprof.report.io import check_output

        check_output(value, param.opts[0])
    return value


def _not_a_folder(verb: str):
    def check(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is not None and Path(value).is_dir():
            raise BadInput(f"{verb}{param.opts[0]} {value}: is a folder, not a file")
        return value

    return check


# A file the command reads (or, for checked_file_path, reads or writes): a folder given there is a one-line
# error while the options are parsed; a missing file is the library's to name, with what it was for.
checked_input = _not_a_folder("cannot read ")
checked_file_path = _not_a_folder("")


def checked_folder(*suffixes: str):
    """An output folder's check (see bkprof.report.io.OutputSet), run while the options are parsed."""
    def check(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is not None:
            from bkprof.report.io import OutputSet

            OutputSet(value, param.opts[0], suffixes)
        return value

    return check


def output_folder_option(option: str, help: str, suffixes: tuple[str, ...]):
    """A folder of outputs written whole with a manifest (bkprof.report.io.OutputSet)."""
    return text_option(option, f"{help} (with a manifest; the folder is replaced whole).", "FOLDER",
                       checked_folder(*suffixes))


def flag(option: str, help: str):
    return typer.Option(option, help=help)


Variants = Annotated[Optional[list[str]], choice_option(
    "--variant", "Variant to include (repeatable; default: every registered variant).", lambda: registry.names())]
FormatOpt = Annotated[str, choice_option("--format", "Output format.", FORMATS)]
Output = Annotated[Optional[str], text_option(
    "--output", "Write the report to this file (whole or not at all; folders are created).", "FILE", checked_file)]



def _cluster_address(ctx: typer.Context, param: typer.CallbackParam, value):
    """A Ray cluster's address, Ray to reach it and its head answering, checked while the options are parsed."""
    if value is None:
        return value
    if not value.strip():
        raise BadInput(f"{param.opts[0]} '': an empty address; name a Ray cluster's head (host:port) or auto")
    from bkprof.cluster import ClusterError, check_address, import_ray

    try:
        import_ray()
        check_address(value)
    except ClusterError as error:
        raise BadInput(str(error)) from None
    return value


# Ray is imported only when this is given (bkprof.cluster); docs/cluster.md
Cluster = Annotated[Optional[str], text_option(
    "--cluster", "Run each run as a Ray task on the cluster whose head is at ADDRESS (host:port; this machine "
    "one of its nodes), or auto (the cluster RAY_ADDRESS names); this machine records and reports. Needs Ray: "
    "bkprof's cluster extra (docs/cluster.md).", "ADDRESS", _cluster_address)]


def device_option(help: str = "Where to run: auto (cuda when there is one), cpu, cuda, cuda:1, ..."):
    return text_option("--device", help, "DEVICE")


def profile_modes() -> tuple[str, ...]:
    """The profiler's modes (`bkprof.profile.MODES`)."""
    from bkprof.profile.modes import MODES

    return MODES


def variant_names(variants: Optional[list[str]], default: Sequence[str] | None = None) -> list[str]:
    """The chosen variants without repeats; none chosen: `default`, else every registered variant."""
    chosen = variants or list(registry.names() if default is None else default)
    return list(dict.fromkeys(chosen))


# ---- the layer options ---------------------------------------------------------------------------

def _layer_option(name: str):
    field = FIELDS[name]
    if name == "interp":
        return str, choice_option(field.option, field.help, INTERPOLATIONS)
    if name == "backend":
        return str, text_option(field.option, field.help, "NAME")
    kind = type(getattr(LAYER, name)) if name != "batch" else int
    build = integer_option if kind is int else number_option
    return kind, build(field.option, field.help)


class LayerOptions(dict):
    """The layer options a command was given, field -> value (LayerConfig's fields, and `batch`)."""

    @property
    def batch(self) -> int:
        return positive(FIELDS["batch"].option, self["batch"])

    def config(self, **changes: Any) -> LayerConfig:
        """A LayerConfig of these values (and `changes`); a bad field is a one-line error (exit 2)."""
        fields = {k: v for k, v in {**self, **changes}.items() if k != "batch"}
        try:
            return LayerConfig(**fields)
        except ValueError as error:
            raise BadInput(str(error)) from None


LAYER_FIELDS = ("d_model", "n_seq", "num_experts", "top_k", "sparsity", "downsample", "interp", "backend")


def with_layer_options(*, batch: int, exclude: Sequence[str] = ()):
    """Give the command every layer option, and `--batch` (default `batch`), where its `layer`
    parameter stands; the command receives them as one `LayerOptions`."""
    names = [n for n in (*LAYER_FIELDS, "batch") if n not in exclude]

    def wrap(command):
        own = inspect.signature(command, eval_str=True)
        injected = []
        for name in names:
            kind, option = _layer_option(name)
            default = batch if name == "batch" else getattr(LAYER, name)
            injected.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                              annotation=Annotated[kind, option]))
        params = []
        for p in own.parameters.values():
            if p.name == "layer":
                params += injected
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def run(**given):
            layer = LayerOptions({name: given.pop(name) for name in names})
            return command(layer=layer, **given)

        del run.__wrapped__  # typer reads the signature below, not the command's
        run.__signature__ = own.replace(parameters=params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return wrap


# ---- writing --------------------------------------------------------------------------------------

@contextmanager
def writing(path, option: str):
    """A write that fails (a full disk, say) after the path was checked is one line naming the path."""
    try:
        yield
    except OSError as error:
        where = f"{option} {path}" if path is not None else "the standard output"
        raise BadInput(f"cannot write {where}: {error.strerror or error}") from None


def emit_report(report, fmt: str, output: str | None) -> None:
    """Print `report` in `fmt`, or write it whole to `output` (bkprof.report.emit)."""
    from bkprof.report import emit

    with writing(output, "--output"):
        emit(report, fmt, output)


# ---- checks the commands share ------------------------------------------------------------------

def checked_backend(name: str, device) -> str:
    """The BK-Core backend `name` resolves to on `device`; one line naming --backend when it cannot run there."""
    from bkprof.core import resolve_backend

    try:
        return resolve_backend(name, device).name
    except ValueError as error:
        raise BadInput(f"--backend: {error}") from None


def checked_cluster_device(name: str) -> None:
    """--device with --cluster names what each task asks for; the cluster's devices are not this machine's."""
    from bkprof.cluster import ClusterError, device_kind

    try:
        device_kind(name)
    except ClusterError as error:
        raise BadInput(str(error)) from None


def checked_device(name: str):
    """The torch device `name` (auto: cuda when there is one, else cpu; cpu, cuda, cuda:1, ...);
    one line naming --device when it cannot run here."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BadInput(f"--device {name!r}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type not in ("cpu", "cuda"):
        raise BadInput(f"--device {name!r}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInput(f"--device {name!r}: no CUDA device is available (torch {torch.__version__})")
    return device


@contextmanager
def progress_bar(total: int, description: str):
    """A transient rich progress bar on stderr (so JSON/CSV on stdout stay clean).

    Yields `update(text, advance=None, completed=None, total=None)` (`total` replaces the one given).
    """
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda text, advance=None, completed=None, total=None: bar.update(
            task, description=text, advance=advance, completed=completed, total=total)


def warn_if_busy(rows: list[dict]) -> None:
    """A line on stderr when rows were timed while other processes kept the CPU busy (bkprof.machine)."""
    import textwrap

    from bkprof import machine
    from bkprof.report.render import console_width

    busy = [r["others_busy_cores"] for r in rows if machine.is_busy(r.get("others_busy_cores"))]
    if busy:
        text = (f"warning: other processes used up to {max(busy):.1f} of {machine.cores()} cores during "
                f"{len(busy)} of {len(rows)} rows (see their others_busy_cores): timings on a shared CPU can be many "
                "times slower; measure on an idle machine")
        typer.echo(textwrap.fill(text, console_width(), break_long_words=False), err=True)
