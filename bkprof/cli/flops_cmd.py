"""`bkprof flops`: the published tables, full counts, fvcore, the op counter and the claims;
with `--model`, the count of any nn.Module."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bkprof._torch_helpers import one_thread
from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (MAX_SIZE, FormatOpt, LayerOptions, Output, Variants, checked_backend, checked_device,
                                emit_report, flag, integer_option, non_negative, text_option, variant_names,
                                with_layer_options)
from bkprof.cli.report_cmd import HtmlOpt, write_page
ModelOpt = Annotated[Optional[str], text_option(
    "--model", "Count this nn.Module instead of the variants: a factory returning it, or the module itself.",
    "PKG.MODULE:FACTORY")]
InputShapes = Annotated[Optional[list[str]], typer.Option(
    "--input-shape", help="With --model: one floating input of this shape, like 2x256x128 (repeatable: one per input).",
    metavar="SHAPE")]
InputsOpt = Annotated[Optional[str], text_option(
    "--inputs", "With --model: a callable returning the inputs (a tensor, a tuple, or a dict of keyword inputs).",
    "PKG.MODULE:CALLABLE")]
DtypeOpt = Annotated[str, text_option("--dtype", "With --model: float32, float64, float16 or bfloat16.", "DTYPE")]
ModelDevice = Annotated[str, text_option("--device", "With --model: where its tensors live (cpu, cuda, cuda:1, ...).",
                                         "DEVICE")]
Depth = Annotated[int, integer_option("--depth", "With --model: levels of submodules in the module table.")]


@app.command(cls=Command)
@with_layer_options(batch=1)
def flops(
    layer: LayerOptions = None,
    variant: Variants = None,
    backward: Annotated[bool, flag("--backward", "Count forward + backward (train mode).")] = False,
    breakdown: Annotated[bool, flag("--breakdown", "Add the per-component table.")] = False,
    conventions: Annotated[bool, flag("--conventions", "Print the counting conventions and exit.")] = False,
    model: ModelOpt = None,
    input_shape: InputShapes = None,
    inputs: InputsOpt = None,
    dtype: DtypeOpt = "float32",
    device: ModelDevice = "cpu",
    depth: Depth = 2,
    format: FormatOpt = "table",
    output: Output = None,
    html: HtmlOpt = None,
) -> None:
    """FLOPs of each variant: published formulas, analytic count, op counter, fvcore, and the claims.
    With --model: the FLOPs of your own module, by family, module and op, beside PyTorch's and fvcore's."""
    from bkprof.report import Report

    if conventions:
        from bkprof.flops.tables import conventions_table

        table = conventions_table()
        report = Report(payload={"conventions": table.frame.to_dict("records")}, tables=[table], results=table)
        emit_report(report, format, output)
        write_page(report, html)
        return
    if model is not None:
        if variant:
            raise BadInput("--variant: counts the BK-Core variants; --model counts your module: give one of them")
        report = _model_tables(model, input_shape or [], inputs, dtype, device, backward, depth)
        emit_report(report, format, output)
        write_page(report, html)
        return
    if input_shape or inputs:
        raise BadInput(f"{'--input-shape' if input_shape else '--inputs'}: the inputs of --model, which is not given")
    from bkprof.flops.report import FlopsSettings

    config = layer.config()
    try:
        settings = FlopsSettings(tuple(variant_names(variant)), layer.batch, backward, breakdown)
    except ValueError as error:
        raise BadInput(str(error)) from None
    checked_backend(config.backend, "cpu")  # FLOPs are counted on the CPU
    with one_thread():  # the CLI owns its process; the library leaves the thread count alone
        report = settings.report(config)
    emit_report(report, format, output)
    write_page(report, html)


def _model_tables(model: str, shapes: list[str], inputs: Optional[str], dtype: str, device: str, backward: bool,
                  depth: int):
    from bkprof.flops.model_report import ModelInputError, ModelSpec, model_report, parse_shape
    from bkprof.flops.model_tables import model_tables

    checked_device(device)
    for shape in shapes:  # int() of a 5000-digit size is itself an error; no size bkprof takes is above 2^40
        if any(len(part) > len(str(MAX_SIZE)) for part in shape.lower().split("x")):
            raise BadInput(f"--input-shape {shape[:40]!r}{'...' if len(shape) > 40 else ''}: a size above {MAX_SIZE:,}")
    try:
        spec = ModelSpec(model, tuple(parse_shape(s) for s in shapes), inputs, dtype, device, backward,
                         non_negative("--depth", depth))
        return model_tables(model_report(spec))  # model_report keeps torch's fake-tensor log quiet
    except ModelInputError as error:
        raise BadInput(str(error)) from None
    except SystemExit as exit:  # the user's code called sys.exit(): that is not a module to count
        raise BadInput(f"--model {model!r}: its code called sys.exit({exit.code!r}) instead of returning a module") from None
