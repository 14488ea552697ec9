"""`bkprof flops`: the published tables, full counts, fvcore, the op counter and the claims."""

from __future__ import annotations

from typing import Annotated

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (FormatOpt, LayerOptions, Output, Variants, checked_backend, emit_report, flag,
                                variant_names, with_layer_options)


@app.command(cls=Command)
@with_layer_options(batch=1)
def flops(
    layer: LayerOptions = None,
    variant: Variants = None,
    backward: Annotated[bool, flag("--backward", "Count forward + backward (train mode).")] = False,
    breakdown: Annotated[bool, flag("--breakdown", "Add the per-component table.")] = False,
    conventions: Annotated[bool, flag("--conventions", "Print the counting conventions and exit.")] = False,
    format: FormatOpt = "table",
    output: Output = None,
) -> None:
    """FLOPs of each variant: published formulas, analytic count, op counter, fvcore, and the claims."""
    from bkprof.report import Report

    if conventions:
        from bkprof.flops.tables import conventions_table

        table = conventions_table()
        emit_report(Report(payload={"conventions": table.frame.to_dict("records")}, tables=[table], results=table),
             format, output)
        return
    from bkprof.flops.report import FlopsSettings

    config = layer.config()
    try:
        settings = FlopsSettings(tuple(variant_names(variant)), layer.batch, backward, breakdown)
    except ValueError as error:
        raise BadInput(str(error)) from None
    checked_backend(config.backend, "cpu")  # FLOPs are counted on the CPU
    emit_report(settings.report(config), format, output)
