"""`bkprof profile`: time and memory of each variant on the CPU or a CUDA device."""

from __future__ import annotations

import itertools
from enum import Enum
from typing import Annotated, Optional

import typer

from bkprof.cli import app
from bkprof.cli.errors import BadInput
from bkprof.cli.options import (Backend, Batch, DModel, Downsample, Experts, Format, FormatOpt, Interp, InterpOpt,
                                NSeq, Output, Sparsity, TopK, Variants, checked_backend, layer_config, positive,
                                checked_folder, progress_bar, variant_names)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Mode(str, Enum):
    forward = "forward"
    train = "train"


@app.command("profile")
def profile(
    device: Annotated[Device, typer.Option("--device", help="Where to run: cpu, cuda, or auto (cuda when there is one).")] = Device.auto,
    variant: Variants = None,
    mode: Annotated[Optional[list[Mode]], typer.Option(
        "--mode", help="forward (eval, no_grad) or train (forward + backward + Adam step); repeatable; default: both.")] = None,
    d_model: DModel = 128,
    n_seq: NSeq = 256,
    experts: Experts = 4,
    top_k: TopK = 1,
    sparsity: Sparsity = 0.6,
    downsample: Downsample = 2,
    interp: InterpOpt = Interp.learned,
    batch: Batch = 8,
    backend: Backend = "auto",
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs before timing each row.")] = 3,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per row (median, p10, p90 over these).")] = 20,
    graphs: Annotated[bool, typer.Option("--graphs", help="Also time replays of the step captured as a CUDA graph (CUDA only).")] = False,
    ops: Annotated[int, typer.Option("--ops", help="Show the top N operators of each row from torch.profiler.")] = 0,
    trace: Annotated[Optional[str], typer.Option("--trace", callback=checked_folder(".json"), help="Write a Chrome/Perfetto trace per row into this folder (with a manifest; the folder is replaced whole).")] = None,
    fmt: FormatOpt = Format.table,
    output: Output = None,
) -> None:
    """Time and memory of each variant: median/p10/p90 step time, tokens/s, achieved FLOP/s, BK-Core share, peak MiB."""
    config = layer_config(d_model=d_model, n_seq=n_seq, num_experts=experts, top_k=top_k, sparsity=sparsity,
                          downsample=downsample, interp=interp, backend=backend)
    settings = _settings(device, mode, positive("--batch", batch), warmup, positive("--runs", runs), graphs, ops)
    from dataclasses import replace

    from bkprof.profile import profile_variants
    from bkprof.profile.report import environment, profile_report
    from bkprof.report import emit
    from bkprof.report.io import output_folders

    names = variant_names(variant)
    env = environment(settings.device, checked_backend(backend, settings.device))
    rows_started = itertools.count()
    described = {"config": config.as_dict(), "variants": names, "modes": settings.modes, "batch": settings.batch,
                 "warmup": settings.warmup, "runs": settings.runs, "device": str(settings.device)}
    with output_folders([(trace, "--trace", (".json",))], described) as (trace_folder,), \
            progress_bar(len(names) * len(settings.modes), "profiling") as update:
        result = profile_variants(config, names, replace(settings, trace_dir=trace_folder),
                                  on_row=lambda variant, mode: update(f"profiling {variant} ({mode})",
                                                                      completed=next(rows_started)))
    emit(profile_report(result, config, settings, env), fmt.value, output)
    if result.failed:
        raise typer.Exit(1)


def _settings(device: Device, modes, batch: int, warmup: int, runs: int, graphs: bool, ops: int):
    import torch

    from bkprof.profile import ProfileSettings

    if warmup < 0:
        raise BadInput(f"--warmup must be 0 or more, got {warmup}")
    if ops < 0:
        raise BadInput(f"--ops must be 0 or more, got {ops}")
    target = _device(device, torch)
    if graphs and target.type != "cuda":
        raise BadInput("--graphs needs a CUDA device, but the profile runs on the CPU")
    chosen = tuple(dict.fromkeys(m.value for m in modes)) if modes else ("forward", "train")
    return ProfileSettings(device=target, modes=chosen, batch=batch, warmup=warmup, runs=runs, graphs=graphs,
                           ops=ops)


def _device(device: Device, torch):
    if device is Device.cuda and not torch.cuda.is_available():
        raise BadInput(f"--device cuda: no CUDA device is available (torch {torch.__version__})")
    if device is Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device.value)
