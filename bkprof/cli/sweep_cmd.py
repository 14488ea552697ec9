"""`bkprof sweep`: FLOPs (and, with --profile, time and memory) over the cartesian product of config axes."""

from __future__ import annotations

from typing import Annotated, Optional

from bkprof.cli import app
from bkprof.cli.errors import BadInput, Command
from bkprof.cli.options import (Cluster, FormatOpt, Output, Variants, checked_backend, checked_cluster_device,
                                checked_device, choice_option, device_option, emit_report, flag, integer_option,
                                output_folder_option, profile_modes, progress_bar, text_option, variant_names,
                                warn_if_busy)
from bkprof.sweep.axes import AXES
from bkprof.sweep.job import DATA_SUFFIXES, PLOT_SUFFIXES, PRESETS
from bkprof.variants.fields import FIELDS


def _axis(name: str, example: str):
    return Annotated[Optional[str], text_option(
        AXES[name].option, f"{FIELDS[name].help} Values: a list or start:stop:step / start:stop:xR, e.g. {example}.",
        "VALUES")]


@app.command("sweep", cls=Command,
             help="FLOPs for every point of a grid of configs and variants, scaling exponents versus N, "
                  "plots; with --profile, measured time and memory. A failing point is a row with its error.")
def sweep(
    n_seq: _axis("n_seq", "256,1024,4096 (default 256:4096:x2)") = None,
    d_model: _axis("d_model", "64,128,256") = None,
    experts: _axis("num_experts", "2,4,8") = None,
    top_k: _axis("top_k", "1,2") = None,
    sparsity: _axis("sparsity", "0.4:0.7:0.1") = None,
    downsample: _axis("downsample", "2,4") = None,
    interp: Annotated[Optional[str], text_option(
        "--interp", f"{FIELDS['interp'].help} Values: a list, e.g. linear,cubic,learned.", "VALUES")] = None,
    batch: _axis("batch", "1,8") = None,
    variant: Variants = None,
    preset: Annotated[Optional[str], choice_option("--preset", "ablations: the source's pending ablations "
                      "(sparsity 0.4-0.7, downsampling 2x/4x, interpolation linear/cubic/learned, N up to 4096); "
                      "axes given as options replace the preset's.", tuple(PRESETS))] = None,
    train: Annotated[bool, flag("--train", "Also count forward + backward FLOPs.")] = False,
    count: Annotated[bool, flag("--count", "Also count FLOPs while the modules run (op counter; slow at large N).")] = False,
    interp_error: Annotated[bool, flag("--interp-error", "Also measure how far interpolated G_ii fall "
                            "from the exact ones (sparse, combined; on by default with --preset ablations).")] = False,
    profile: Annotated[bool, flag("--profile", "Measure time and memory of every point.")] = False,
    device: Annotated[str, device_option("With --profile: where to run: auto (cuda when there is one), cpu, cuda, "
                                         "cuda:1, ...")] = "cpu",
    mode: Annotated[str, choice_option(
        "--mode", "With --profile: forward (eval, no_grad) or train (forward + backward + Adam).", profile_modes)] = "forward",
    warmup: Annotated[int, integer_option("--warmup", "With --profile: untimed runs first.")] = 3,
    runs: Annotated[int, integer_option("--runs", "With --profile: timed runs (the median is reported).")] = 10,
    backend: Annotated[str, text_option("--backend", FIELDS["backend"].help, "NAME")] = "auto",
    output_dir: Annotated[Optional[str], output_folder_option(
        "--output-dir", "Save sweep.csv, sweep.json and scaling.csv here", DATA_SUFFIXES)] = None,
    plot: Annotated[Optional[str], output_folder_option("--plot", "Save PNG plots in this folder", PLOT_SUFFIXES)] = None,
    cluster: Cluster = None,
    format: FormatOpt = "table",
    output: Output = None,
) -> None:
    from bkprof.report.io import output_folders
    from bkprof.sweep.job import SweepSettings, build_plan, run_plan, save_outputs

    given = {"n_seq": n_seq, "d_model": d_model, "num_experts": experts, "top_k": top_k, "sparsity": sparsity,
             "downsample": downsample, "interp": interp, "batch": batch}
    try:
        settings = SweepSettings(profile=profile, device=device, mode=mode, warmup=warmup, runs=runs, train=train,
                                 count=count, interp_error=interp_error or preset == "ablations", backend=backend,
                                 preset=preset)
        plan = build_plan(given, variant_names(variant), preset, backend)
    except ValueError as error:
        raise BadInput(str(error)) from None
    if cluster is not None:
        checked_cluster_device(device)
    if cluster is None or device == "cpu":  # a cluster's GPUs are not this machine's: nothing to check here
        checked_backend(backend, checked_device(device))
    folders = [(output_dir, "--output-dir", DATA_SUFFIXES), (plot, "--plot", PLOT_SUFFIXES)]
    described = {"axes": plan.axes, "variants": plan.variants, **settings.as_dict()}
    with output_folders(folders, described, files=[(output, "--output")]) as (data_folder, plot_folder):
        with progress_bar(plan.size, "sweep") as update:

            def advance(row: dict) -> None:
                where = ", ".join(f"{name}={row[name]}" for name in plan.axes)
                update(f"{row['variant']} {where}", advance=1)

            try:
                report = run_plan(plan, settings, on_row=advance, cluster=cluster)
            except ValueError as error:  # --cluster's own problems (bkprof.cluster.ClusterError)
                raise BadInput(str(error)) from None
        save_outputs(report, plan, data_folder, plot_folder)

    emit_report(report, format, output)
    warn_if_busy(report.payload["rows"])
