"""`bkprof schedule`: the sparsity schedule's targets, FLOPs per step and in total, and the loss's measured cost."""

from __future__ import annotations

from typing import Annotated, Optional

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (FormatOpt, LayerOptions, Output, Variants, checked_device, choice_option,
                                device_option, emit_report, integer_option, non_negative, number_option, positive,
                                variant_names, with_layer_options)
from bkprof.variants import registry


def _schedules():
    from bkprof.training.schedule import SCHEDULES

    return SCHEDULES


def _loss_kinds():
    from bkprof.training.kinds import LOSS_KINDS

    return LOSS_KINDS


def _float(option: str, text: str):
    return Annotated[float, number_option(option, text)]


@app.command("schedule", cls=Command,
             help="The adaptive sparsity schedule: target and loss weight per step, FLOPs per step and "
                  "over training against a fixed sparsity (published formulas and full count), and the "
                  "sparsity loss's measured cost against a forward pass.")
@with_layer_options(batch=8, exclude=("sparsity",))
def schedule(
    initial_sparsity: _float("--initial-sparsity", "Sparsity target at step 0.") = 0.2,
    final_sparsity: _float("--final-sparsity", "Sparsity target after the warm-up (and the fixed sparsity compared against).") = 0.6,
    initial_weight: _float("--initial-weight", "Sparsity loss weight at step 0.") = 0.001,
    final_weight: _float("--final-weight", "Sparsity loss weight after the warm-up.") = 0.01,
    warmup: Annotated[int, integer_option("--warmup", "Steps from the initial to the final values.")] = 1000,
    steps: Annotated[int, integer_option("--steps", "Training steps in total.")] = 2000,
    shape: Annotated[str, choice_option("--schedule", "How the values move over the warm-up.", _schedules)] = "cosine",
    stages: Annotated[int, integer_option("--stages", "Plateaus of the step schedule.")] = 4,
    every: Annotated[Optional[int], integer_option("--every", "A table row every this many steps (default: steps/10).")] = None,
    loss: Annotated[Optional[list[str]], choice_option(
        "--loss", "Sparsity loss to time (repeatable; default: all of them).", _loss_kinds)] = None,
    delta: _float("--delta", "Huber delta of the adaptive loss.") = 0.1,
    runs: Annotated[int, integer_option("--runs", "Timed runs for the overhead (the median is reported); 0 skips it.")] = 30,
    device: Annotated[str, device_option("Where the overhead is timed: auto (cuda when there is one), cpu, cuda, ...")] = "cpu",
    layer: LayerOptions = None,
    variant: Variants = None,
    format: FormatOpt = "table",
    output: Output = None,
) -> None:
    from bkprof.training.report import ScheduleSettings

    non_negative("--warmup", warmup)
    positive("--stages", stages)
    try:
        settings = ScheduleSettings(tuple(variant_names(variant, default=registry.schedule_names())), steps, every,
                                    layer.batch, tuple(dict.fromkeys(loss or ())) or _loss_kinds(), delta, runs,
                                    str(checked_device(device)))
        from bkprof.training import AdaptiveSparsityScheduler

        scheduler = AdaptiveSparsityScheduler(initial_sparsity, final_sparsity, initial_weight, final_weight,
                                              warmup, shape, stages=stages)
    except ValueError as error:
        raise BadInput(str(error)) from None
    layer.config(sparsity=initial_sparsity)  # every target between the two ends is then valid too
    config = layer.config(sparsity=final_sparsity)
    if settings.runs:
        from bkprof.sizes import check_fits

        # the loss is timed against a train-mode step
        check_fits(settings.variants, config, settings.batch, ("train",), settings.device)

    emit_report(settings.report(scheduler, config), format, output)
