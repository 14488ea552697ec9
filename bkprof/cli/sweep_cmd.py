"""`bkprof sweep`: FLOPs (and, with --profile, time and memory) over the cartesian product of config axes."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from bkprof.cli import app
from bkprof.cli.errors import BadInput
from bkprof.cli.options import Backend, FormatOpt, Format, Output, Variants, checked_folder, positive, variant_names
from bkprof.cli.profile_cmd import Mode


class Preset(str, Enum):
    ablations = "ablations"


def _axis(option: str, example: str):
    return Annotated[Optional[str], typer.Option(option, help=f"Values: a list or start:stop:step / start:stop:xR, e.g. {example}.")]


DEFAULT_N = "256:4096:x2"
DATA_SUFFIXES = (".csv", ".json")
PLOT_SUFFIXES = (".png", ".json")


@app.command("sweep", help="FLOPs for every point of a grid of configs and variants, scaling exponents versus N, "
                           "plots; with --profile, measured time and memory. A failing point is a row with its error.")
def sweep(
    n_seq: _axis("--n-seq", "256,1024,4096 (default 256:4096:x2)") = None,
    d_model: _axis("--d-model", "64,128,256") = None,
    experts: _axis("--experts", "2,4,8") = None,
    top_k: _axis("--top-k", "1,2") = None,
    sparsity: _axis("--sparsity", "0.4:0.7:0.1") = None,
    downsample: _axis("--downsample", "2,4") = None,
    interp: Annotated[Optional[str], typer.Option("--interp", help="Interpolations, e.g. linear,cubic,learned.")] = None,
    batch: _axis("--batch", "1,8") = None,
    variants: Variants = None,
    preset: Annotated[Optional[Preset], typer.Option("--preset", help="ablations: the source's pending ablations "
                      "(sparsity 0.4-0.7, downsampling 2x/4x, interpolation linear/cubic/learned, N up to 4096); "
                      "axes given as options replace the preset's.")] = None,
    train: Annotated[bool, typer.Option("--train", help="Also count forward + backward FLOPs.")] = False,
    count: Annotated[bool, typer.Option("--count", help="Also count FLOPs while the modules run (op counter; slow at large N).")] = False,
    interp_error: Annotated[bool, typer.Option("--interp-error", help="Also measure how far interpolated G_ii fall "
                            "from the exact ones (sparse, combined; on by default with --preset ablations).")] = False,
    profile: Annotated[bool, typer.Option("--profile", help="Measure time and memory of every point.")] = False,
    device: Annotated[str, typer.Option("--device", help="With --profile: cpu, cuda, cuda:1, ...")] = "cpu",
    mode: Annotated[Mode, typer.Option("--mode", help="With --profile: forward (eval, no_grad) or train (forward + backward + Adam).")] = Mode.forward,
    warmup: Annotated[int, typer.Option("--warmup", help="With --profile: untimed runs first.")] = 3,
    runs: Annotated[int, typer.Option("--runs", help="With --profile: timed runs (the median is reported).")] = 10,
    backend: Backend = "auto",
    output_dir: Annotated[Optional[str], typer.Option("--output-dir", callback=checked_folder(*DATA_SUFFIXES), help="Save sweep.csv, sweep.json and scaling.csv here (with a manifest; the folder is replaced whole).")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", callback=checked_folder(*PLOT_SUFFIXES), help="Save PNG plots in this folder (with a manifest; the folder is replaced whole).")] = None,
    fmt: FormatOpt = Format.table,
    output: Output = None,
) -> None:
    from bkprof.report.io import output_folders
    from bkprof.sweep.cli_support import build_plan, run_with_progress, save_outputs

    given = {"n_seq": n_seq, "d_model": d_model, "num_experts": experts, "top_k": top_k, "sparsity": sparsity,
             "downsample": downsample, "interp": interp, "batch": batch}
    if not profile and (device != "cpu" or mode is not Mode.forward):
        raise BadInput("--device and --mode need --profile")
    positive("--runs", runs)
    if warmup < 0:
        raise BadInput(f"--warmup must be non-negative, got {warmup}")
    preset_name = preset.value if preset else None
    plan = build_plan(given, variant_names(variants), preset_name, backend)
    settings = {"profile": profile, "device": device, "mode": mode.value, "warmup": warmup, "runs": runs,
                "train": train, "count": count, "interp_error": interp_error or preset is Preset.ablations,
                "backend": backend, "preset": preset_name}
    specs = [(output_dir, "--output-dir", DATA_SUFFIXES), (plot, "--plot", PLOT_SUFFIXES)]
    with output_folders(specs, {"axes": plan.axes, "variants": plan.variants, **settings}) as (data_folder, plot_folder):
        report = run_with_progress(plan, settings)
        save_outputs(report, plan, data_folder, plot_folder)
    from bkprof.report import emit

    emit(report, fmt.value, output)
