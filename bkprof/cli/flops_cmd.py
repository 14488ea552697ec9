"""`bkprof flops`: the published tables, full counts, fvcore, the op counter and the claims."""

from __future__ import annotations

from typing import Annotated

import typer

from bkprof.cli import app
from bkprof.cli.options import (Backend, Batch, DModel, Downsample, Experts, Format, FormatOpt, Interp, InterpOpt,
                                NSeq, Output, Sparsity, TopK, Variants, checked_backend, layer_config, positive,
                                variant_names)


@app.command()
def flops(
    d_model: DModel = 128,
    n_seq: NSeq = 256,
    experts: Experts = 4,
    top_k: TopK = 1,
    sparsity: Sparsity = 0.6,
    downsample: Downsample = 2,
    interp: InterpOpt = Interp.learned,
    batch: Batch = 1,
    variant: Variants = None,
    backend: Backend = "auto",
    backward: Annotated[bool, typer.Option("--backward", help="Count forward + backward (train mode).")] = False,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Add the per-component table.")] = False,
    conventions: Annotated[bool, typer.Option("--conventions", help="Print the counting conventions and exit.")] = False,
    format: FormatOpt = Format.table,
    output: Output = None,
) -> None:
    """FLOPs of each variant: published formulas, analytic count, op counter, fvcore, and the claims."""
    from bkprof.report import Report, emit

    if conventions:
        from bkprof.flops.tables import conventions_table

        table = conventions_table()
        emit(Report(payload={"conventions": table.frame.to_dict("records")}, tables=[table], results=table),
             format.value, output)
        return
    config = layer_config(d_model=d_model, n_seq=n_seq, num_experts=experts, top_k=top_k, sparsity=sparsity,
                          downsample=downsample, interp=interp, backend=backend)
    positive("batch", batch)
    checked_backend(backend, "cpu")  # FLOPs are counted on the CPU
    from bkprof.flops.report import flops_report
    from bkprof.flops.tables import flops_tables

    doc = flops_report(config, variant_names(variant), batch=batch, backward=backward)
    emit(flops_tables(doc, breakdown), format.value, output)

