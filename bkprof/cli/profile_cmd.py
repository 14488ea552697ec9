"""`bkprof profile`: time and memory of each variant on the CPU or a CUDA device."""

from __future__ import annotations

import itertools
from typing import Annotated, Optional

import typer

from bkprof._torch_helpers import torch_threads
from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (MAX_RUNS, FormatOpt, LayerOptions, Output, Variants, checked_backend, checked_device,
                                choice_option, device_option, emit_report, flag, integer_option, non_negative,
                                number_option, output_folder_option, positive, profile_modes, progress_bar,
                                variant_names, warn_if_busy, with_layer_options)
from bkprof.cli.report_cmd import HtmlOpt, write_page


MAX_THREADS = 4096
TRACE_SUFFIXES = (".json",)
PLOT_SUFFIXES = (".png",)
Modes = Annotated[Optional[list[str]], choice_option(
    "--mode", "forward (eval, no_grad) or train (forward + backward + Adam step); repeatable; default: both.", profile_modes)]


@app.command("profile", cls=Command)
@with_layer_options(batch=8)
def profile(
    device: Annotated[str, device_option()] = "auto",
    variant: Variants = None,
    mode: Modes = None,
    layer: LayerOptions = None,
    warmup: Annotated[int, integer_option("--warmup", "Untimed runs before timing each row.")] = 3,
    runs: Annotated[int, integer_option("--runs", "Timed runs per row (median, p10, p90 over these).")] = 20,
    graphs: Annotated[bool, flag("--graphs", "Also time replays of the step captured as a CUDA graph (CUDA only).")] = False,
    ops: Annotated[int, integer_option("--ops", "Show the top N operators of each row from torch.profiler.")] = 0,
    trace: Annotated[Optional[str], output_folder_option(
        "--trace", "Write a Chrome/Perfetto trace per row into this folder", TRACE_SUFFIXES)] = None,
    components: Annotated[bool, flag(
        "--components/--no-components", "Split each row by component, forward and backward: time, FLOPs, bytes, memory.")] = True,
    peak_tflops: Annotated[Optional[float], number_option(
        "--peak-tflops", "Peak FLOP/s to compare with, in TFLOP/s (default: the device's datasheet value; CPU: estimated).")] = None,
    peak_gbps: Annotated[Optional[float], number_option(
        "--peak-gbps", "Peak memory bandwidth in GB/s (default: the datasheet's; CPU: the copy bandwidth measured).")] = None,
    plot: Annotated[Optional[str], output_folder_option(
        "--plot", "Write roofline-<mode>.png (every component of every variant) into this folder", PLOT_SUFFIXES)] = None,
    peaks: Annotated[bool, flag("--peaks", "Print the table of device peaks bkprof knows, and exit.")] = False,
    threads: Annotated[Optional[int], integer_option(
        "--threads", "Torch CPU threads while measuring (default: the cores other processes leave idle, at least 1).")] = None,
    format: FormatOpt = "table",
    output: Output = None,
    html: HtmlOpt = None,
) -> None:
    """Time and memory of each variant: median/p10/p90 step time, tokens/s, achieved FLOP/s, BK-Core share, peak MiB."""
    if peaks:
        from bkprof.profile.peaks import peaks_report

        report = peaks_report()
        emit_report(report, format, output)
        write_page(report, html)
        return
    for option, value in (("--peak-tflops", peak_tflops), ("--peak-gbps", peak_gbps)):
        if value is not None and value <= 0:
            raise BadInput(f"{option} must be positive, got {value:g}")
    if plot is not None and not components:
        raise BadInput("--plot needs the component breakdown; drop --no-components")
    config = layer.config()
    settings = _settings(device, mode, layer.batch, warmup, runs, graphs, ops, components)
    names = variant_names(variant)
    with torch_threads(_threads(threads)):
        _profile(config, names, settings, format, output, trace, plot, peak_tflops, peak_gbps, html)


def _profile(config, names, settings, format, output, trace, plot, peak_tflops, peak_gbps, html) -> None:
    from dataclasses import replace

    from bkprof.profile import profile_variants
    from bkprof.profile.report import environment, profile_report
    from bkprof.report.io import output_folders
    from bkprof.sizes import check_fits

    env = environment(settings.device, checked_backend(config.backend, settings.device))
    check_fits(names, config, settings.batch, settings.modes, settings.device)
    rows_started = itertools.count()
    described = {"config": config.as_dict(), "variants": names, "modes": settings.modes, "batch": settings.batch,
                 "warmup": settings.warmup, "runs": settings.runs, "device": str(settings.device)}
    specs = [(trace, "--trace", TRACE_SUFFIXES), (plot, "--plot", PLOT_SUFFIXES)]
    with output_folders(specs, described, files=[(output, "--output")]) as (trace_folder, plot_folder):
        with progress_bar(len(names) * len(settings.modes), "profiling") as update:
            result = profile_variants(config, names, replace(settings, trace_dir=trace_folder),
                                      on_row=lambda variant, mode: update(f"profiling {variant} ({mode})",
                                                                          completed=next(rows_started)))
        report = profile_report(result, config, settings, env, peak_tflops, peak_gbps)
        if plot_folder is not None:
            from bkprof.profile.plots import write_rooflines

            write_rooflines(report.payload, plot_folder)
    emit_report(report, format, output)
    write_page(report, html)
    warn_if_busy(report.payload["rows"])
    if result.failed:
        raise typer.Exit(1)


def _threads(threads: int | None) -> int:
    """--threads, or as many as the cores other processes leave idle (never more than torch's default).
    The command owns its process, so it may set torch's thread count (the library never does)."""
    import torch

    from bkprof import machine

    if threads is not None:
        return positive("--threads", threads, MAX_THREADS)
    return min(torch.get_num_threads(), machine.default_threads())


def _settings(device: str, modes, batch: int, warmup: int, runs: int, graphs: bool, ops: int, components: bool):
    from bkprof.profile import ProfileSettings

    non_negative("--warmup", warmup, MAX_RUNS)
    positive("--runs", runs, MAX_RUNS)
    non_negative("--ops", ops)
    target = checked_device(device)
    if graphs and target.type != "cuda":
        raise BadInput("--graphs needs a CUDA device, but the profile runs on the CPU")
    chosen = tuple(dict.fromkeys(modes)) if modes else profile_modes()
    return ProfileSettings(device=target, modes=chosen, batch=batch, warmup=warmup, runs=runs, graphs=graphs,
                           ops=ops, components=components)
