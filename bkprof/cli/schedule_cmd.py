"""`bkprof schedule`: the sparsity schedule's targets, FLOPs per step and in total, and the loss's measured cost."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from bkprof.cli import app
from bkprof.cli.errors import BadInput
from bkprof.cli.options import (Backend, Batch, Downsample, DModel, Experts, Format, FormatOpt, Interp, InterpOpt,
                                NSeq, Output, TopK, Variants, layer_config, positive, variant_names)


class Schedule(str, Enum):
    linear = "linear"
    cosine = "cosine"
    step = "step"


class LossKind(str, Enum):
    l2 = "l2"
    l1 = "l1"
    kl = "kl"
    adaptive = "adaptive"


def _float(option: str, text: str):
    return Annotated[float, typer.Option(option, help=text)]


@app.command("schedule", help="The adaptive sparsity schedule: target and loss weight per step, FLOPs per step and "
                              "over training against a fixed sparsity (published formulas and full count), and the "
                              "sparsity loss's measured cost against a forward pass.")
def schedule(
    initial_sparsity: _float("--initial-sparsity", "Sparsity target at step 0.") = 0.2,
    final_sparsity: _float("--final-sparsity", "Sparsity target after the warm-up (and the fixed sparsity compared against).") = 0.6,
    initial_weight: _float("--initial-weight", "Sparsity loss weight at step 0.") = 0.001,
    final_weight: _float("--final-weight", "Sparsity loss weight after the warm-up.") = 0.01,
    warmup: Annotated[int, typer.Option("--warmup", help="Steps from the initial to the final values.")] = 1000,
    steps: Annotated[int, typer.Option("--steps", help="Training steps in total.")] = 2000,
    shape: Annotated[Schedule, typer.Option("--schedule", help="How the values move over the warm-up.")] = Schedule.cosine,
    stages: Annotated[int, typer.Option("--stages", help="Plateaus of the step schedule.")] = 4,
    every: Annotated[Optional[int], typer.Option("--every", help="A table row every this many steps (default: steps/10).")] = None,
    loss: Annotated[Optional[list[LossKind]], typer.Option("--loss", help="Sparsity loss to time (repeatable; default: all four).")] = None,
    delta: _float("--delta", "Huber delta of the adaptive loss.") = 0.1,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs for the overhead (the median is reported); 0 skips it.")] = 30,
    device: Annotated[str, typer.Option("--device", help="Where the overhead is timed: cpu, cuda, ...")] = "cpu",
    d_model: DModel = 128,
    n_seq: NSeq = 256,
    experts: Experts = 4,
    top_k: TopK = 1,
    downsample: Downsample = 2,
    interp: InterpOpt = Interp.learned,
    batch: Batch = 8,
    variant: Variants = None,
    backend: Backend = "auto",
    fmt: FormatOpt = Format.table,
    output: Output = None,
) -> None:
    from bkprof.training.report import schedule_report

    variants = variant_names(variant) if variant else ["sparse", "combined"]
    if set(variants) - {"sparse", "combined"}:
        raise BadInput(f"--variant: the sparsity schedule applies to sparse and combined, got {', '.join(variants)}")
    positive("--batch", batch)
    positive("--steps", steps)
    every = positive("--every", every) if every is not None else max(1, steps // 10)
    if runs < 0 or stages < 1 or warmup < 0:
        raise BadInput(f"need --runs >= 0, --stages >= 1, --warmup >= 0; got {runs}, {stages}, {warmup}")

    def config_at(sparsity: float):
        return layer_config(d_model=d_model, n_seq=n_seq, num_experts=experts, top_k=top_k, sparsity=sparsity,
                            downsample=downsample, interp=interp, backend=backend)

    config_at(initial_sparsity)  # every target between the two ends is then valid too
    config = config_at(final_sparsity)
    try:
        from bkprof.training import AdaptiveSparsityScheduler

        scheduler = AdaptiveSparsityScheduler(initial_sparsity, final_sparsity, initial_weight, final_weight,
                                              warmup, shape.value, stages=stages)
    except ValueError as error:
        raise BadInput(str(error)) from None
    from bkprof.sweep.cli_support import checked_device

    checked_device(device)
    kinds = [k.value for k in loss] if loss else [k.value for k in LossKind]
    report = schedule_report(scheduler, steps, variants, config, batch=batch, every=every, kinds=kinds,
                             delta=delta, runs=runs, device=device)
    from bkprof.report import emit

    emit(report, fmt.value, output)
